"""The records besides versions: stage changes (``stage/{kind}/{stage}/{n}``),
pruned marks (``pruned/{kind}/{version}``) and gc run refs (``refs/cpv/gc/*``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from cpv_core.domain.versions import Version
from cpv_core.errors import GitError, ValidationError
from cpv_core.plugin.protocols import PushRejected, RejectReason, StageEvent, VersionRecord
from cpv_core.trust import visible
from cpv_plugins.git.refs import (
    BRANCH,
    GC_PREFIX,
    GC_RUN_RE,
    PRUNED_RE,
    REF_FORMAT,
    STAGE_RE,
    decode_message,
    encode_message,
    iter_ref_objects,
    parse_ident,
    parse_object,
    stage_event_from,
)
from cpv_plugins.git.repository import GitRepository

logger = logging.getLogger("cpv.git")


class RecordRefs(GitRepository):
    """Stage records, pruned marks and gc run refs."""

    # -- retention -------------------------------------------------------------------------
    def mark_pruned(self, kind: str, records: Sequence[VersionRecord], note: str) -> None:
        """One annotated tag ``pruned/{kind}/{version}`` per version, on its commit,
        published in one atomic push (a marker someone else already pushed is kept)."""
        self._ensure_identity()
        already = self.pruned_versions(kind)
        names = []
        for record in records:
            if record.version in already:
                continue
            name = f"pruned/{kind}/{record.version}"
            if PRUNED_RE.fullmatch(f"refs/tags/{name}") is None:
                raise ValidationError(f"cannot mark {kind} {visible(record.version)} as pruned", fix="report this with `cpv -v`")
            self._tag(name, record.commit, encode_message(note, {"action": "pruned"}))
            names.append(name)
        if not names:
            return
        try:
            self._push([f"refs/tags/{n}:refs/tags/{n}" for n in names], atomic=True)
        except PushRejected as exc:
            if exc.reason is not RejectReason.EXISTS:
                self._run("remove the unpublished markers", "tag", "--delete", "--end-of-options", *names)
                raise
            self._run("remove the local markers", "tag", "--delete", "--end-of-options", *names)
            self.fetch()  # someone marked them meanwhile: theirs stand

    def unmark_pruned(self, kind: str, versions: Sequence[str]) -> None:
        """Remove the ``pruned/{kind}/{version}`` markers of ``versions`` (a gc that found
        them holding a stage after marking them spared their content)."""
        names = [f"pruned/{kind}/{v}" for v in versions if Version.is_valid(v)]
        if not names:
            return
        self._push([f":refs/tags/{n}" for n in names], atomic=True)
        self._run("remove the local markers", "tag", "--delete", "--end-of-options", *names)

    # -- gc runs (refs/cpv/gc/*): what lets an upload or a promotion tell that a gc overlapped it
    def gc_runs(self) -> dict[str, tuple[bool, float]]:
        """Every gc run the remote records: run id -> (still running, start time).
        Read from the remote itself (one ``ls-remote``); refs of other shapes are ignored."""
        out = str(
            self._run(
                "list gc runs", "ls-remote", "--end-of-options", "origin", f"{GC_PREFIX}*", fix="check the network and `cpv validate`"
            )
        )
        runs: dict[str, tuple[bool, float]] = {}
        for line in out.splitlines():
            match = GC_RUN_RE.fullmatch(line.partition("\t")[2])
            if match is None:
                continue
            running = match.group("state") == "running"
            # a run both running and done (killed between its two pushes is impossible: one atomic push) counts as done
            if match.group("run") not in runs or not running:
                runs[match.group("run")] = (running, float(match.group("start")))
        return runs

    def begin_gc(self) -> str:
        """Publish ``refs/cpv/gc/running/{now}-{nonce}`` on the remote branch's commit; returns the run id."""
        run = f"{int(time.time())}-{os.urandom(4).hex()}"
        self._push([f"{self._run_anchor()}:{GC_PREFIX}running/{run}"], atomic=True)
        return run

    def end_gc(self, run: str) -> None:
        """Replace the run's ``running`` ref by a ``done`` one (one atomic push), then drop
        finished runs older than a week (apart, and only where they still are: another gc
        ending at the same moment may be dropping them too, which must not fail this one)."""
        self._push([f":{GC_PREFIX}running/{run}", f"{self._run_anchor()}:{GC_PREFIX}done/{run}"], atomic=True)
        old = [r for r, (running, start) in self.gc_runs().items() if not running and start < time.time() - 7 * 86400]
        if old:
            try:
                self._push([f":{GC_PREFIX}done/{r}" for r in old], atomic=False)
            except (GitError, PushRejected) as exc:
                logger.info("old gc run records were not dropped this time (%s)", exc)

    def _run_anchor(self) -> str:
        """The commit a gc run ref points at (any commit the remote has: its branch's tip)."""
        commit = self._ref_oid(f"refs/remotes/origin/{BRANCH}^{{commit}}") or self.head()
        if not commit:
            raise GitError("the repository has no commit to record a gc run on", fix="upload a version first, then run gc")
        return commit

    def delete_versions(self, kind: str, records: Sequence[VersionRecord]) -> None:
        """Remove the version tags on the remote (one atomic push of deletions, each
        under a lease on the tag's current object, so a replaced tag is never removed),
        then locally."""
        if not records:
            return
        leases = [f"--force-with-lease={r.ref}:{self._ref_oid(r.ref)}" for r in records]
        self._push([f":{r.ref}" for r in records], atomic=True, options=leases)
        self._run(
            "delete the local version tags", "tag", "--delete", "--end-of-options", *(r.ref.removeprefix("refs/tags/") for r in records)
        )

    def pruned_versions(self, kind: str) -> dict[str, str]:
        out = self._run(
            "list pruned versions", "for-each-ref", f"--format={REF_FORMAT}", f"refs/tags/pruned/{kind}/", stdout_as_string=False
        )
        pruned = {}
        for ref, otype, _, _, raw in iter_ref_objects(bytes(out)):
            match = PRUNED_RE.fullmatch(ref)
            if match is None or otype != "tag" or match.group("kind") != kind or not Version.is_valid(match.group("version")):
                continue
            headers, _ = parse_object(raw)
            pruned[match.group("version")] = parse_ident(headers.get("tagger", ""))[1]
        return pruned

    # -- stages --------------------------------------------------------------------------
    def list_stage_events(self, kind: str) -> list[StageEvent]:
        out = self._run("list stage changes", "for-each-ref", f"--format={REF_FORMAT}", f"refs/tags/stage/{kind}/", stdout_as_string=False)
        events = []
        for ref, otype, _, _, raw in iter_ref_objects(bytes(out)):
            match = STAGE_RE.fullmatch(ref)
            if match is None or otype != "tag" or match.group("kind") != kind:
                continue  # not written by cpv: a plain git tag in this namespace is ignored
            headers, contents = parse_object(raw)
            author, date = parse_ident(headers.get("tagger", ""))
            message, metadata = decode_message(contents, ref.removeprefix("refs/tags/"))
            event = stage_event_from(kind, match.group("stage"), int(match.group("n")), ref, metadata)
            if event is None:
                logger.warning("ignoring stage record %s: its metadata is not what cpv writes", visible(ref.removeprefix("refs/tags/")))
                continue
            events.append(StageEvent(**{**event.__dict__, "author": author.strip(), "date": date, "message": message}))
        events.sort(key=lambda e: (e.stage, e.number))
        return events

    def record_stage_event(
        self, kind: str, stage: str, number: int, version: str | None, commit: str, message: str, forced: Sequence[str]
    ) -> StageEvent:
        self._ensure_identity()
        name = f"stage/{kind}/{stage}/{number}"
        ref = f"refs/tags/{name}"
        if STAGE_RE.fullmatch(ref) is None:
            raise ValidationError(
                f"stage {visible(stage)} of {kind} cannot be written as a tag cpv can read back", fix="use a stage name such as prod"
            )
        metadata = {"action": "promote" if version else "demote", "version": version, "forced": list(forced)}
        self._tag(name, commit, encode_message(message, {k: v for k, v in metadata.items() if v}))
        try:
            self._push([f"{ref}:{ref}"], atomic=True)
        except BaseException:
            self._run("remove the unpublished stage record", "tag", "--delete", "--end-of-options", name)
            raise
        recorded = [e for e in self.list_stage_events(kind) if e.ref == ref]
        if not recorded:
            raise GitError(f"stage record {name} was published but cannot be read back", fix="run `cpv -v` and report the output")
        return recorded[0]

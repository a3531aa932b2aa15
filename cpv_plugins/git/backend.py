"""Versioning backend ``git-tags``: the model's git repository, versions as annotated tags.

Tag naming scheme: ``{kind}/v{major}.{minor}`` (``model/v1.3``, ``data/v0.4``,
``checkpoint/v1.0``), so model and data keep separate version sequences in one
repository. The tag message is the user's message followed by one line
``cpv-metadata: {json}`` (metrics, hash, size, lineage), so listing versions
with their metrics reads refs only, with no checkout.

Publishing is one ``git push --atomic`` of full refspecs; a tag the remote
already has is reported as :class:`PushRejected` and never forced.

The backend is assembled from the modules of :mod:`cpv_plugins.git`; this module
is also what the old path ``cpv_plugins.git.backend`` names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cpv_core import hookimpl
from cpv_core.domain.backoff import Backoff
from cpv_core.domain.records import clean_metadata
from cpv_core.domain.versions import MAX_COMPONENT, Version
from cpv_core.errors import GitError, ValidationError
from cpv_core.plugin.bases import VersioningBackendBase
from cpv_core.plugin.protocols import PushRejected, RejectReason, VersioningBackendInfo, VersionRecord
from cpv_plugins.git.branch import BranchRepository
from cpv_plugins.git.marks import RecordRefs
from cpv_plugins.git.refs import (
    ATOMIC_FOLLOWERS,
    BRANCH,
    GC_PREFIX,
    GC_RUN_RE,
    IDENT_RE,
    LATEST_PREFIX,
    MAX_FORCED_RULES,
    METADATA_PREFIX,
    PRUNED_RE,
    RACE_MARKERS,
    REF_FORMAT,
    SEEN_PREFIX,
    STAGE_RE,
    TAG_RE,
    classify_rejection,
    decode_message,
    encode_message,
    iter_ref_objects,
    parse_cat_file_batch,
    parse_ident,
    parse_object,
    parse_push_porcelain,
    stage_event_from,
)

logger = logging.getLogger("cpv.git")

#: publishing the branch while other members move it: fetch, replay, push again
BRANCH_PUSH_BACKOFF = Backoff(attempts=40, budget=120.0)

__all__ = [
    "BRANCH_PUSH_BACKOFF",
    "GitTagsVersioning",
    "cpv_versioning_backends",
    "ATOMIC_FOLLOWERS",
    "BRANCH",
    "GC_PREFIX",
    "GC_RUN_RE",
    "IDENT_RE",
    "LATEST_PREFIX",
    "MAX_FORCED_RULES",
    "METADATA_PREFIX",
    "PRUNED_RE",
    "RACE_MARKERS",
    "REF_FORMAT",
    "SEEN_PREFIX",
    "STAGE_RE",
    "TAG_RE",
    "classify_rejection",
    "decode_message",
    "encode_message",
    "iter_ref_objects",
    "parse_cat_file_batch",
    "parse_ident",
    "parse_object",
    "parse_push_porcelain",
    "stage_event_from",
]


class GitTagsVersioning(BranchRepository, RecordRefs, VersioningBackendBase):
    """The ``git-tags`` versioning backend: the repository (:mod:`~cpv_plugins.git.repository`),
    its branch (:mod:`~cpv_plugins.git.branch`), its other records
    (:mod:`~cpv_plugins.git.marks`) and, here, versions and their publication."""

    name = "git-tags"

    def sync_branch(self) -> bool:
        if not self._remote_branch_exists():
            return False
        remote = f"refs/remotes/origin/{BRANCH}"
        head = self.head()
        target = str(self._run("read the remote branch", "rev-parse", "--verify", "--quiet", remote)).strip()
        if head == target or self._is_ancestor(remote, "HEAD"):
            return False  # nothing new there (local commits are pushed by the next upload or tag)
        self._check_incoming()
        if self._is_ancestor("HEAD", remote):
            self._run("fast-forward to the remote branch", "merge", "--ff-only", "--quiet", remote)
        else:
            self.push_branch()  # both moved: replay the local commits on top and publish them
        return True

    def push_branch(self) -> None:
        reason, tried = "", 0
        for attempt in BRANCH_PUSH_BACKOFF.rounds():
            if attempt:  # after the wait, so the view the push is built on is fresh
                logger.info("the remote branch moved; replaying local commits on top of it")
                self.fetch()
                self._rebase_on_remote()
            tried = attempt + 1
            try:
                self._push([self._branch_refspec()], atomic=False)
                return
            except PushRejected as exc:
                if exc.reason not in {RejectReason.NON_FAST_FORWARD, RejectReason.RACE}:
                    raise GitError(
                        f"the remote refused branch {BRANCH} ({exc.summary})",
                        fix="fetch and resolve with git in the workspace, then run the command again",
                    ) from None
                reason = exc.summary
        raise GitError(
            f"the remote refused branch {BRANCH} ({reason}) {tried} times: other members kept moving it (heavy contention)",
            fix="run the command again: this change was not published, and stored bytes are not sent twice",
        )

    # -- versions --------------------------------------------------------------------
    def _records(self, pattern: str) -> list[VersionRecord]:
        """The versions among the tags under ``pattern`` (a prefix ending in ``/``, or one
        tag's ref), oldest first, read from :meth:`ref_listing`."""
        records = [record for record in map(self._record_from, self.ref_listing(pattern)) if record is not None]
        records.sort(key=lambda r: Version.parse(r.version))
        return records

    def _record_from(self, row: tuple[str, str, str, str, bytes]) -> VersionRecord | None:
        """The version a listed ref records (None: not a version tag)."""
        ref, otype, obj, peeled, raw = row
        parsed = self.parse_tag(ref)
        if parsed is None:
            return None
        kind, version = parsed
        headers, contents = parse_object(raw)
        if otype == "tag":
            author, date = parse_ident(headers.get("tagger", ""))
            message, metadata = decode_message(contents, ref.removeprefix("refs/tags/"))
        else:  # a lightweight tag: the commit's date, no metadata
            author, date = parse_ident(headers.get("committer", ""))
            message, metadata = "", {}
        return VersionRecord(
            kind=kind,
            version=str(version),
            ref=ref,
            commit=peeled or obj,
            author=author.strip(),
            date=date,
            message=message,
            metadata=clean_metadata(metadata, ref.removeprefix("refs/tags/")),
        )

    def _read_back(self, ref: str) -> VersionRecord | None:
        """The tag cpv just wrote at ``ref``, read in this process (the ref file, then
        the object through the long-lived ``cat-file``): no ``for-each-ref`` after a tag."""
        from git.refs.reference import Reference

        try:
            target = Reference(self.repo, ref).object
            stream = self.repo.odb.stream(target.binsha)
        except (ValueError, OSError):
            return None
        raw, otype = bytes(stream.read()), stream.type.decode()
        peeled = parse_object(raw)[0].get("object", "") if otype == "tag" else ""
        return self._record_from((ref, otype, target.hexsha, peeled, raw))

    def list_versions(self, kind: str) -> list[VersionRecord]:
        return self._records(f"refs/tags/{kind}/")

    def get_version(self, kind: str, version: Version) -> VersionRecord | None:
        found = self._records(f"refs/tags/{self.tag_name(kind, version)}")
        return found[0] if found else None

    def create_version(self, kind: str, version: Version, message: str, metadata: Mapping[str, Any], rev: str = "HEAD") -> VersionRecord:
        self._ensure_identity()
        name = self.tag_name(kind, version)
        if self.parse_tag(name) != (kind, version):
            raise ValidationError(
                f"version {version} of {kind} cannot be written as a tag cpv can read back",
                fix=f"use versions up to v{MAX_COMPONENT}.{MAX_COMPONENT}",
            )
        marker = self._unpublished_marker()  # until published or fetched: the next tag fetches first
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        self._tag(name, rev, encode_message(message, metadata))
        record = self._read_back(f"refs/tags/{name}")
        if record is None:
            self.delete_local_version(kind, version)
            raise GitError(f"tag {name} was created but cannot be read back", fix="run `cpv -v` and report the output")
        return record

    def delete_local_version(self, kind: str, version: Version) -> None:
        name = self.tag_name(kind, version)
        if self.get_version(kind, version) is not None:
            self._run(f"delete local tag {name}", "tag", "-d", name)

    def publish(self, records: Sequence[VersionRecord], *, with_branch: bool = False) -> None:
        """Push the tags (and the branch when asked or unpublished) in one atomic push,
        moving ``refs/cpv/lease/KIND`` to each new tag under a lease on the value
        last seen: if anyone published a version of that kind since, the server
        refuses the whole push (reason ``"stale"``) and the caller fetches and retries.
        A host that refuses the cpv refs themselves gets plain tag pushes from then on
        (and cpv fetches before every tag there)."""
        refspecs = [f"{r.ref}:{r.ref}" for r in records]
        if with_branch or not self.is_published():
            refspecs.insert(0, self._branch_refspec())
        leases: list[str] = []
        if not self._no_lease_marker().exists():
            for r in records:
                seen = self._ref_oid(f"{SEEN_PREFIX}{r.kind}")
                refspecs.append(f"{r.ref}:{LATEST_PREFIX}{r.kind}")
                leases.append(f"--force-with-lease={LATEST_PREFIX}{r.kind}:{seen}")
        try:
            self._push(refspecs, atomic=True, options=leases)
        except PushRejected as exc:
            # a hook or policy that may refuse refs outside heads/ and tags/: try once more without them
            if leases and exc.reason not in RejectReason.retryable() and any(ref.startswith(LATEST_PREFIX) for ref in exc.rejected):
                logger.info("the remote refuses %s refs (%s); publishing tags alone from now on", LATEST_PREFIX, exc.summary)
                self._no_lease_marker().parent.mkdir(parents=True, exist_ok=True)
                self._no_lease_marker().touch()
                raise PushRejected(exc.rejected, RejectReason.RACE, exc.detail) from None  # fetch and try again, without the lease
            raise
        self._unpublished_marker().unlink(missing_ok=True)
        for r in records:
            if leases:
                self._run("record the published version", "update-ref", f"{SEEN_PREFIX}{r.kind}", r.ref)

    def publishes_conditionally(self) -> bool:
        """True unless this host refused the lease refs, a version created here was
        never published (a fetch must reconcile it first), or the workspace has
        versions but has never seen a lease (it was last fetched by an older cpv)."""
        if self._no_lease_marker().exists() or self._unpublished_marker().exists():
            return False
        # refs sort by name, so the first is a lease ref if there is one, else a tag
        if self._scopes:  # in a read scope: from its one listing of tags and lease refs
            first = min((row[0] for row in self.ref_listing("refs/")), default="")
        else:
            first = str(self._run("list version refs", "for-each-ref", "--count=1", "--format=%(refname)", SEEN_PREFIX, "refs/tags/"))
        return not first.strip() or first.startswith(SEEN_PREFIX)


@hookimpl
def cpv_versioning_backends() -> list[VersioningBackendInfo]:
    """The git-tags versioning backend."""
    return [VersioningBackendInfo("git-tags", GitTagsVersioning, "git commits; versions as annotated tags kind/vX.Y")]

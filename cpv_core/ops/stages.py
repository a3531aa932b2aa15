"""Stages: which version holds ``dev``, ``staging``, ``prod`` ... of a kind.

Every change is a new record kept by the versioning backend (git-tags:
``stage/model/prod/3``), never a rewrite, published atomically: two members
changing a stage at once end with one winner, and the other is told who won.
Promotions follow the rules committed in the model's repository
(:mod:`cpv_core.domain.stage_rules`); ``force`` overrides them, and the override is
recorded with the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from cpv_core.domain.records import validate_message
from cpv_core.domain.stage_rules import RULES_FILE, StageRules, check_stage_name, parse_rules
from cpv_core.errors import CheckpointNotFoundError, GitError, ValidationError, VersionExistsError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.protocols import PushRejected, RejectReason, StageEvent, VersionRecord
from cpv_core.trust import visible
from cpv_core.workspace import announce as emit_events
from cpv_core.workspace.gc_fence import Fence
from cpv_core.workspace.history import current_stages, fetch_versions, numbered_events, require_content

if TYPE_CHECKING:
    from cpv_core.domain.kinds import KindSpec
    from cpv_core.workspace.workspace import Workspace


class StageSubject(Protocol):
    """What stages need of a manager: model, data and combined managers all qualify."""

    @property
    def ws(self) -> Workspace: ...

    @property
    def spec(self) -> KindSpec: ...

    def find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord: ...

    def echo(self, line: str) -> None: ...

    def plan(self, lines: list[str]) -> list[str]: ...

    def hint(self, *, cli: str, python: str) -> str: ...


def read_rules(mgr: StageSubject, rev: str = "HEAD") -> StageRules:
    """The stage rules committed at ``rev`` (none: any stage, no conditions)."""
    raw = mgr.ws.versioning.read_file(rev, RULES_FILE)
    return parse_rules(raw, RULES_FILE) if raw else StageRules()


def stage_events(mgr: StageSubject, *, fetch: bool) -> list[StageEvent]:
    """Every stage change of this kind (fetched first when ``fetch``; offline: the known ones)."""
    mgr.ws.require_initialized()
    mgr.ws.repair()
    if fetch:
        fetch_versions(mgr.ws, required=False)
    return mgr.ws.versioning.list_stage_events(mgr.spec.kind)


@contextmanager
def stage_change_view(mgr: StageSubject, *, dry_run: bool) -> Iterator[None]:
    """Hold the workspace lock over a stage change, decided against the remote's
    current view (fetched first; a dry run fetches nothing)."""
    mgr.ws.require_initialized()
    with mgr.ws.lock():
        if not dry_run:
            fetch_versions(mgr.ws, required=True)
        yield


def promote(mgr: StageSubject, selector: str, stage: str, message: str | None, *, force: bool, dry_run: bool) -> StageEvent | None:
    """Put the version ``selector`` names into ``stage``, under the rules (``force``:
    override them; the override is recorded). Returns the new record; None on a dry
    run or when the version already holds the stage."""
    stage, message = check_stage_name(stage), validate_message(message)
    ws, kind = mgr.ws, mgr.spec.kind
    with stage_change_view(mgr, dry_run=dry_run):
        record = mgr.find(selector, fetch=False)
        require_content(ws, kind, record)  # a version gc removed cannot hold a stage
        rules = read_rules(mgr)
        rules.check_stage(stage)
        events = ws.versioning.list_stage_events(kind)
        holder = current_stages(events).get(stage)
        if holder is not None and holder.version == record.version:
            mgr.echo(f"{kind} {record.version} already holds {stage}; nothing changed")
            return None
        held = sorted({e.stage for e in numbered_events(events) if e.version == record.version})  # a stray record proves nothing
        problems = rules.violations(stage, record.metadata.get("metrics") or {}, held)
        if problems and not force:
            raise ValidationError(
                f"cannot promote {kind} {record.version} to {stage}: " + "; ".join(problems),
                fix=f"promote a version that meets the rules ({RULES_FILE}), or "
                + mgr.hint(cli="pass --force", python="pass force=True")
                + " to override them (the override is recorded)",
            )
        return change_stage(mgr, events, stage, record, message, problems, dry_run=dry_run)


def demote(mgr: StageSubject, stage: str, message: str | None, *, dry_run: bool) -> StageEvent | None:
    """Empty ``stage`` (its version keeps every other stage it holds)."""
    stage, message = check_stage_name(stage), validate_message(message)
    ws, kind = mgr.ws, mgr.spec.kind
    with stage_change_view(mgr, dry_run=dry_run):
        events = ws.versioning.list_stage_events(kind)
        holder = current_stages(events).get(stage)
        if holder is None:
            raise CheckpointNotFoundError(f"no {kind} version holds {stage}", fix=f"see `cpv {kind} stages`")
        record = mgr.find(holder.version, fetch=False)
        return change_stage(mgr, events, stage, record, message, [], dry_run=dry_run, demote=True)


def change_stage(
    mgr: StageSubject,
    events: Sequence[StageEvent],
    stage: str,
    record: VersionRecord,
    message: str | None,
    forced: Sequence[str],
    *,
    dry_run: bool,
    demote: bool = False,
) -> StageEvent | None:
    """Publish the stage's next record; when someone else took that number first,
    say who won (the stage is theirs: nothing is retried over them)."""
    ws, kind = mgr.ws, mgr.spec.kind
    number = next_stage_number(events, stage)
    what = f"remove {kind} {record.version} from {stage}" if demote else f"promote {kind} {record.version} to {stage}"
    if dry_run:
        mgr.plan([f"{what} (stage record {number}) and push it" + (f", overriding: {'; '.join(forced)}" if forced else "")])
        return None
    fence = None if demote else Fence(ws)  # a gc running now may be pruning this version: see gc_fence
    try:
        event = ws.versioning.record_stage_event(
            kind, stage, number, None if demote else record.version, record.commit, message or "", forced
        )
    except PushRejected as exc:
        raise lost_stage_race(mgr, stage, number, exc) from None
    previous = current_stages(events).get(stage)
    if fence is not None and fence.overlapped():
        settle_promotion_after_gc(mgr, stage, record, previous)
    mgr.echo(f"{'removed' if demote else 'promoted'} {kind} {record.version} {'from' if demote else 'to'} {stage}")
    if forced:
        mgr.echo(f"rules overridden (recorded): {'; '.join(forced)}")
    emit_events.stage_changed(ws, event, previous.version if previous else None)
    return event


def next_stage_number(events: Sequence[StageEvent], stage: str) -> int:
    """The number of ``stage``'s next record: one past the last of its unbroken run
    1, 2, 3 ... (records after a gap were not numbered by cpv: see
    :func:`~cpv_core.workspace.history.numbered_events`)."""
    return sum(1 for e in numbered_events(events) if e.stage == stage) + 1


def lost_stage_race(mgr: StageSubject, stage: str, number: int, exc: PushRejected) -> Exception:
    """The one error for a stage record the remote refused: who took that number first
    (whatever route the refusal took: taken, locked, or a hook), else why it was refused."""
    ws, kind = mgr.ws, mgr.spec.kind
    fetch_versions(ws, required=True)
    winner = next((e for e in ws.versioning.list_stage_events(kind) if e.stage == stage and e.number == number), None)
    if winner is not None:
        who = f"{visible(winner.author)} " + (f"promoted {winner.version} to" if winner.version else "emptied")
        return VersionExistsError(
            f"{who} {stage} first, at the same moment; your change was not made",
            fix=f"see `cpv {kind} stages`, then run the command again if you still want it",
        )
    if exc.reason in {RejectReason.EXISTS, RejectReason.RACE, RejectReason.STALE}:
        return VersionExistsError(
            f"someone changed {stage} at the same moment; your change was not made",
            fix=f"see `cpv {kind} stages`, then run the command again if you still want it",
        )
    return GitError(
        f"the remote refused the change of {stage} ({visible(exc.summary)}); your change was not made",
        fix="ask whoever administers the repository why it refuses tags under stage/ (a server hook?)",
    )


def settle_promotion_after_gc(mgr: StageSubject, stage: str, record: VersionRecord, previous: StageEvent | None) -> None:
    """A gc overlapped this promotion: if it pruned the version after all (it read the
    stages before the promotion landed), give the stage back to its previous holder and
    say so; otherwise the gc saw the promotion and kept the version's bytes."""
    ws, kind = mgr.ws, mgr.spec.kind
    fetch_versions(ws, required=True)
    pruned = ws.versioning.pruned_versions(kind).get(record.version)
    if pruned is None:
        return
    events = ws.versioning.list_stage_events(kind)
    ws.versioning.record_stage_event(
        kind,
        stage,
        next_stage_number(events, stage),
        previous.version if previous else None,
        mgr.find(previous.version, fetch=False).commit if previous and previous.version else record.commit,
        f"undo the promotion of {record.version}: cpv gc removed its content meanwhile",
        [],
    )
    raise CheckpointNotFoundError(
        f"cpv gc removed the content of {kind} {record.version} while it was promoted to {stage}; "
        + (f"{stage} is back to {previous.version}" if previous else f"{stage} is empty again"),
        fix=f"promote a version that was kept (`cpv {kind} list` marks pruned ones)",
    )


def set_rules(mgr: StageSubject, raw: bytes, *, dry_run: bool) -> StageRules:
    """Check stage rules, then commit them as ``.cpv/stages.json`` and push."""
    rules = parse_rules(raw, "the rules file")
    commit_rules_file(mgr, RULES_FILE, rules.to_dict(), "stage rules", dry_run=dry_run)
    return rules


def commit_rules_file(mgr: StageSubject, rel: str, rules: dict[str, Any], what: str, *, dry_run: bool) -> None:
    """Write checked ``rules`` as the committed JSON file ``rel``, commit and push (a kill
    between the write and the commit is rolled back by the next command)."""
    ws = mgr.ws
    ws.require_initialized()
    if dry_run:
        mgr.plan([f"write {rel}, commit and push"])
        return
    with ws.lock():
        path = ws.target_path_of(rel)
        # journaled: a kill between the write and the commit is rolled back by the next
        # command, not left as a modified tracked file that blocks a later pull
        ws.begin_change(what, [], [rel])
        try:
            atomic_write_bytes(path, json.dumps(rules, indent=2, sort_keys=True).encode() + b"\n")
            crash_point("stage-rules.written")
            if ws.versioning.changed_files([rel]) or ws.versioning.read_file("HEAD", rel) is None:
                ws.versioning.commit([rel], f"Set {what}")
        except BaseException:
            ws.rollback_change()
            raise
        ws.end_change()
        ws.versioning.push_branch()
    mgr.echo(f"{what} set in {rel}")

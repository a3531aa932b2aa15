"""Reverting: restore one or more targets to recorded versions in ONE new commit,
all or nothing (a journal and a hard-link backup put everything back after a
failure or a kill)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cpv_core.domain.artifacts import CheckpointMetadata
from cpv_core.domain.metrics import METRICS_FILE, make_record
from cpv_core.errors import ValidationError, WorkspaceDirtyError
from cpv_core.faults import crash_point
from cpv_core.ops.inspection import metadata_for
from cpv_core.paths import remove_path
from cpv_core.plugin.protocols import VersionRecord
from cpv_core.workspace.meta import META_FILE
from cpv_core.workspace.workspace import Workspace

if TYPE_CHECKING:
    from cpv_core.ops.target import Target

logger = logging.getLogger("cpv")


def already_at(m: Target, record: VersionRecord) -> bool:
    """Whether ``m``'s target is committed and present exactly as ``record`` has it."""
    info = m.pointer_info("HEAD")
    return (
        info is not None
        and m.target == m.target_at(record.ref)
        and info.digest == record.metadata.get("digest")
        and m.ws.storage.status([m.target]).get(m.target) == "unchanged"
        and not m.ws.versioning.changed_files([m.ws.storage.pointer_path(m.target)])
    )


def revert_targets(ws: Workspace, pairs: list[tuple[Target, VersionRecord]], message: str, *, force: bool, dry_run: bool) -> None:
    """Restore each manager's target to its record's version in ONE new commit.

    Refuses on uncommitted changes unless ``force``; with force the
    overwritten content is stored in the local cache first (recoverable by
    the hash logged in metrics.log as ``saved_digest``).
    """
    if all(already_at(m, record) for m, record in pairs):
        pairs[0][0].echo(
            ", ".join(f"{m.target} is already at {m.spec.kind} {record.version}" for m, record in pairs)
            + "; nothing to revert, nothing committed"
        )
        if not dry_run:
            ws.versioning.push_branch()  # a revert killed after its commit is published now
        return
    dirty = {m.spec.kind: m.require_clean_target("revert", force) for m, _ in pairs}
    moves = {m.spec.kind: (m.target, m.target_at(record.ref)) for m, record in pairs}
    for m, _ in pairs:
        check_move_free(m, *moves[m.spec.kind], force=force)
    if dry_run:
        for m, record in pairs:
            now, then = moves[m.spec.kind]
            where = f" (the {m.spec.kind} becomes {then} again)" if then != now else ""
            m.plan([f"restore {now} to {m.spec.kind} {record.version} ({record.commit[:10]}){where}"])
        pairs[0][0].plan([f"commit '{message}' and push"])
        return
    saved = {}
    for m, _ in pairs:
        if dirty[m.spec.kind]:
            (saved[m.spec.kind],) = ws.storage.track([m.target])
            logger.warning("saved uncommitted %s (%s) in the local cache before reverting", m.target, saved[m.spec.kind].digest)
    targets = list(dict.fromkeys(rel for pair in moves.values() for rel in pair))
    pointers = [ws.storage.pointer_path(rel) for rel in targets]
    moved = any(now != then for now, then in moves.values())
    # all targets and pointers change, or none: a journal and a hard-link
    # backup let a failure here, or a kill, put everything back
    ws.begin_change("revert", targets, [*pointers, META_FILE] if moved else pointers)
    try:
        for m, record in pairs:
            now, then = moves[m.spec.kind]
            ws.versioning.restore(record.ref, [ws.storage.pointer_path(then)])
            if now != then:  # the version lived elsewhere: the current path leaves the workspace
                ws.target_path_of(ws.storage.pointer_path(now)).unlink(missing_ok=True)
                remove_path(ws.target_path_of(now))
                ws.set_file(m.spec.kind, then)
        crash_point("revert.pointers-restored")
        ws.storage.checkout([then for _, then in moves.values()])  # verified before anything is replaced
        crash_point("revert.content-placed")
        for m, record in pairs:
            m.append_metrics(
                make_record(
                    m.spec.kind,
                    "revert",
                    dict(record.metadata.get("metrics") or {}),
                    reverted_to=record.version,
                    digest=record.metadata.get("digest"),
                    saved_digest=saved[m.spec.kind].digest if m.spec.kind in saved else None,
                )
            )
        committed = [p for p in pointers if (ws.path / p).exists()] + ws.in_head([p for p in pointers if not (ws.path / p).exists()])
        ws.versioning.commit([*committed, *([META_FILE] if moved else []), METRICS_FILE], message)
    except BaseException:
        ws.rollback_change()
        raise
    ws.end_change()
    for m, _ in pairs:
        info = m.pointer_info("HEAD")
        if info is not None:
            ws.set_content_base(m.target, info.digest)
    crash_point("revert.committed")
    ws.versioning.push_branch()
    pairs[0][0].echo(message.lower().replace("revert", "reverted", 1))


def check_move_free(m: Target, now: str, then: str, *, force: bool) -> None:
    """A revert to a version that lived at another path must not overwrite a file
    the user keeps there (e.g. a model.bin left behind with changes never uploaded)."""
    path = m.ws.target_path_of(then)
    if then != now and (path.exists() or path.is_symlink()) and not force:
        raise WorkspaceDirtyError(
            f"cannot revert: {m.spec.kind} version's path {then} exists in the workspace and is not the current {m.spec.kind} ({now})",
            fix=f"move it away, or {m.hint(cli='pass --force', python='pass force=True')} to replace it",
        )


def revert(mgr: Target, tag: str, **kwargs: Any) -> CheckpointMetadata:
    dry_run, force = mgr.options(kwargs)
    if tag is None:
        raise ValidationError("revert needs a version", fix="pass e.g. tag='v0.1'")
    record = mgr.find(tag, fetch=not dry_run)
    mgr.require_content(record)
    with mgr.ws.lock():
        revert_targets(mgr.ws, [(mgr, record)], f"Revert {mgr.spec.kind} to {record.version}", force=force, dry_run=dry_run)
    return metadata_for(mgr, record)

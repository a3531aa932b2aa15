"""Reverting: restore one or more targets to recorded versions in ONE new commit,
all or nothing (a journal and a hard-link backup put everything back after a
failure or a kill)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .artifacts import CheckpointMetadata
from .backends import VersionRecord
from .errors import ValidationError
from .faults import crash_point
from .metrics import METRICS_FILE, make_record
from .workspace import Workspace

if TYPE_CHECKING:
    from .manager import CheckpointManager

logger = logging.getLogger("cpv")


def already_at(m: CheckpointManager, record: VersionRecord) -> bool:
    """Whether ``m``'s target is committed and present exactly as ``record`` has it."""
    info = m.pointer_info("HEAD")
    return (
        info is not None
        and info.digest == record.metadata.get("digest")
        and m.ws.storage.status([m.target]).get(m.target) == "unchanged"
        and not m.ws.versioning.changed_files([m.ws.storage.pointer_path(m.target)])
    )


def revert_targets(
    ws: Workspace, pairs: list[tuple[CheckpointManager, VersionRecord]], message: str, *, force: bool, dry_run: bool
) -> None:
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
    if dry_run:
        for m, record in pairs:
            m.plan([f"restore {m.target} to {m.spec.kind} {record.version} ({record.commit[:10]})"])
        pairs[0][0].plan([f"commit '{message}' and push"])
        return
    saved = {}
    for m, _ in pairs:
        if dirty[m.spec.kind]:
            (saved[m.spec.kind],) = ws.storage.track([m.target])
            logger.warning("saved uncommitted %s (%s) in the local cache before reverting", m.target, saved[m.spec.kind].digest)
    pointers = [ws.storage.pointer_path(m.target) for m, _ in pairs]
    targets = [m.target for m, _ in pairs]
    # all targets and pointers change, or none: a journal and a hard-link
    # backup let a failure here, or a kill, put everything back
    ws.begin_revert(targets, pointers)
    try:
        for (_, record), pointer in zip(pairs, pointers):
            ws.versioning.restore(record.ref, [pointer])
        crash_point("revert.pointers-restored")
        ws.storage.checkout(targets)  # verified against the restored pointers before anything is replaced
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
        ws.versioning.commit([*pointers, METRICS_FILE], message)
    except BaseException:
        ws.rollback_revert()
        raise
    ws.end_revert()
    for m, _ in pairs:
        info = m.pointer_info("HEAD")
        if info is not None:
            ws.set_content_base(m.target, info.digest)
    crash_point("revert.committed")
    ws.versioning.push_branch()
    pairs[0][0].echo(message.lower().replace("revert", "reverted", 1))


def revert(mgr: CheckpointManager, tag: str, **kwargs: Any) -> CheckpointMetadata:
    dry_run, force = mgr.options(kwargs)
    if tag is None:
        raise ValidationError("revert needs a version", fix="pass e.g. tag='v0.1'")
    record = mgr.find(tag, fetch=not dry_run)
    with mgr.ws.lock():
        revert_targets(mgr.ws, [(mgr, record)], f"Revert {mgr.spec.kind} to {record.version}", force=force, dry_run=dry_run)
    return mgr.metadata_for(record)

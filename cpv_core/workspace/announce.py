"""What a workspace announces: the lifecycle events (:mod:`cpv_core.plugin.events`)
built from a workspace's records, and sent once the remote state is final.

The event records and their delivery live on the plugin floor; building them
needs the workspace (its storage for a source URL, its remote, its history),
so that half lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cpv_core.domain.event_records import PublishedVersion, StageChange, UploadFinished
from cpv_core.domain.kinds import VERSION_KINDS
from cpv_core.plugin.events import emit
from cpv_core.workspace.history import current_stages, fetch_versions

if TYPE_CHECKING:
    from cpv_core.domain.artifacts import UploadResult
    from cpv_core.plugin.protocols import StageEvent, VersionRecord
    from cpv_core.workspace.workspace import Workspace

logger = logging.getLogger("cpv.events")


def published_version(ws: Workspace, record: VersionRecord) -> PublishedVersion:
    """The event data of a version of ``ws``."""
    meta = record.metadata
    digest = str(meta.get("digest") or "")
    return PublishedVersion(
        team=ws.team,
        model=ws.model,
        kind=record.kind,
        version=record.version,
        commit=record.commit,
        author=record.author,
        date=record.date,
        message=record.message,
        metrics=dict(meta.get("metrics") or {}),
        digest=digest,
        size=int(meta.get("size") or 0),
        path=str(meta.get("path") or ""),
        source_uri=source_uri(ws, digest),
        remote=ws.hosting.remote_url(),
        metadata=dict(meta),
    )


def version_published(ws: Workspace, records: Sequence[VersionRecord]) -> None:
    """Tell the listeners about versions that are now on the remote."""
    for record in records:
        emit("cpv_version_published", ws.config, plugins=ws.plugins, record=published_version(ws, record))


def published_versions(ws: Workspace) -> list[PublishedVersion]:
    """Every version of every kind the remote holds, oldest first per kind (for a
    listener plugin's catch-up command, e.g. ``cpv mlflow-sync``)."""
    fetch_versions(ws, required=True)
    return [published_version(ws, r) for kind in VERSION_KINDS for r in ws.versioning.list_versions(kind)]


def stage_holders(ws: Workspace) -> list[StageChange]:
    """Every stage's current holder, as the stage change that made it so."""
    out = []
    for kind in VERSION_KINDS:
        for event in current_stages(ws.versioning.list_stage_events(kind)).values():
            out.append(stage_change(ws, event, None))
    return out


def source_uri(ws: Workspace, digest: str) -> str:
    """The storage backend's URL of ``digest``; empty when there is none or the
    digest (read from the repository) is not a valid object id."""
    if not digest:
        return ""
    try:
        return str(ws.storage.object_url(digest))
    except Exception as exc:  # noqa: BLE001 - an event must never fail a publish that happened
        logger.info("no source URL for %r: %s", digest, exc)
        return ""


def stage_changed(ws: Workspace, event: StageEvent, previous: str | None) -> None:
    """Tell the listeners that ``event`` is now on the remote."""
    emit("cpv_stage_changed", ws.config, plugins=ws.plugins, change=stage_change(ws, event, previous))


def stage_change(ws: Workspace, event: StageEvent, previous: str | None) -> StageChange:
    """The event data of a stage record of ``ws``."""
    return StageChange(
        team=ws.team,
        model=ws.model,
        kind=event.kind,
        stage=event.stage,
        version=event.version,
        previous=previous,
        author=event.author,
        date=event.date,
        message=event.message,
        forced=tuple(event.forced),
    )


def upload_finished(ws: Workspace, result: UploadResult, path: str, seconds: float) -> None:
    """Tell the listeners that an upload's commit is on the remote (``path``: where the
    target is now, relative to the workspace)."""
    upload = UploadFinished(
        team=ws.team,
        model=ws.model,
        kind=result.kind,
        path=path,
        commit=result.commit,
        digest=result.digest,
        size=result.size,
        nfiles=result.nfiles,
        metrics=result.metrics,
        changed=result.changed,
        seconds=round(seconds, 3),
    )
    emit("cpv_upload_finished", ws.config, plugins=ws.plugins, upload=upload)

"""Finding versions: fetch the remote's tags, then look a version up by name."""

from __future__ import annotations

import logging

from .backends import VersionRecord
from .errors import CheckpointNotFoundError, GitError
from .versions import Version
from .workspace import Workspace

logger = logging.getLogger("cpv")


def parse_tag_arg(tag: str | None) -> Version | None:
    """The version a user named (``"v1.2"``), or None for "the latest"."""
    return None if tag is None else Version.parse(tag)


def fetch_versions(ws: Workspace, *, required: bool) -> None:
    """Fetch the remote's branch and tags; offline, warn (or raise when ``required``)."""
    try:
        ws.versioning.fetch()
    except GitError as exc:
        if required:
            raise
        logger.warning("could not reach the remote (%s); showing local versions only", exc.message)


def find_version(ws: Workspace, kind: str, tag: str | None, *, fetch: bool, create_hint: str) -> VersionRecord:
    """Version ``tag`` of ``kind`` (default: the latest), fetching first when it
    is not known locally; :class:`CheckpointNotFoundError` listing what exists."""
    wanted = parse_tag_arg(tag)
    ws.require_initialized()
    ws.repair()
    records = ws.versioning.list_versions(kind)
    if fetch and (not records or (wanted and not any(r.version == str(wanted) for r in records))):
        fetch_versions(ws, required=False)
        records = ws.versioning.list_versions(kind)
    if not records:
        raise CheckpointNotFoundError(f"{ws.team}/{ws.model} has no {kind} versions yet", fix=create_hint)
    if wanted is None:
        return records[-1]
    for record in records:
        if record.version == str(wanted):
            return record
    raise CheckpointNotFoundError(
        f"{kind} version {wanted} does not exist for {ws.team}/{ws.model}",
        fix=f"choose one of: {', '.join(r.version for r in records[-10:])}",
    )

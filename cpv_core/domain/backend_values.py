"""The values backends hand the core: what a track wrote, what a transfer moved,
a version, a stage change, a stored object, an incomplete upload. Plain frozen
data (re-exported by :mod:`cpv_core.plugin.protocols`, where backends meet them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: how a storage backend may lay out large files (``cpv init --layout``): whole files in
#: DVC's format (``dvc pull`` reads them), or chunks per tensor (stores what changed)
STORAGE_LAYOUTS = ("dvc", "tensors")
#: the config key that chooses the layout of models created from now on
LAYOUT_KEY = "storage_layout"


@dataclass(frozen=True)
class TrackedArtifact:
    """A file or directory under storage control.

    :param path: path relative to the workspace (``"model.bin"``, ``"data"``).
    :param digest: content hash as the backend names it (``"md5:..."``).
    :param size: total bytes.
    :param nfiles: number of files (1 for a single file).
    :param pointer: pointer file relative to the workspace, to be committed.
    """

    path: str
    digest: str
    size: int
    nfiles: int = 1
    pointer: str | None = None


@dataclass(frozen=True)
class TransferStats:
    """What a push or fetch moved."""

    transferred: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass(frozen=True)
class VersionRecord:
    """One version as the versioning backend stores it (e.g. an annotated tag).

    :param kind: the namespace (``"model"``, ``"data"``, ``"checkpoint"``).
    :param version: the short form, ``"v1.3"``.
    :param ref: the backend's own name (``"refs/tags/model/v1.3"``).
    :param commit: the commit the version points at.
    :param author: who created the version.
    :param date: ISO-8601 creation time.
    :param message: the user's message.
    :param metadata: structured metadata stored with the version
        (metrics, hash, size, lineage ...).
    """

    kind: str
    version: str
    ref: str
    commit: str
    author: str = ""
    date: str = ""
    message: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    """One object in a storage remote (what ``cpv gc`` and ``cpv du`` work on).

    :param oid: the object's id (``"ab12…"``, ``"ab12….dir"``).
    :param size: bytes.
    :param modified: POSIX time it was written (objects younger than the grace
        period are never deleted: a teammate's upload may be in flight).
    """

    oid: str
    size: int
    modified: float


@dataclass(frozen=True)
class IncompleteUpload:
    """A multipart upload a store still holds parts of, never completed nor aborted
    (what a killed upload leaves; ``cpv gc`` aborts those older than its grace).

    :param key: the object key it was writing.
    :param upload_id: the store's id for it.
    :param started: POSIX time it was started.
    :param size: bytes of the parts stored so far (billed until it is aborted).
    """

    key: str
    upload_id: str
    started: float
    size: int


@dataclass(frozen=True)
class StageEvent:
    """One change of a stage (``prod``, ``staging``): a version promoted to it,
    or the stage emptied (a demotion, ``version`` None). Events are never
    rewritten: the current holder of a stage is its newest event.

    :param kind: ``"model"``, ``"data"`` or ``"checkpoint"``.
    :param stage: the stage's name.
    :param number: 1 for the stage's first event, then 2, 3 ...
    :param version: the version promoted, or None for a demotion.
    :param ref: the backend's own name (``"refs/tags/stage/model/prod/3"``).
    :param author: who made the change; ``date``: when (ISO-8601).
    :param message: the user's message.
    :param forced: the stage rules this change overrode (``--force``), as text.
    """

    kind: str
    stage: str
    number: int
    version: str | None
    ref: str
    author: str = ""
    date: str = ""
    message: str = ""
    forced: tuple[str, ...] = ()

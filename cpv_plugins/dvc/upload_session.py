"""What one upload carries from hashing to sending: the explicit state a
:meth:`~cpv_plugins.dvc.engine.DvcStorage.track_for_push` hands to the
:meth:`~cpv_plugins.dvc.engine.DvcStorage.push` that follows it (each track
starts a new one)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cpv_core.plugin.sources import TreeScan
from cpv_plugins.dvc.chunking import ChunkManifest
from cpv_plugins.dvc.early_uploads import EarlyUploads
from cpv_plugins.dvc.part_digests import PartDigests


@dataclass
class UploadSession:
    """State of one track-then-push.

    :param fresh: objects this track wrote into the cache from the user's files (known good).
    :param sources: objects without a cache copy: the workspace file each was hashed
        from, and its stat then (checked again before and after it is sent).
    :param previous: a directory's manifest id before this track replaced it.
    :param part_digests: part digests of the large files this track hashed.
    :param early: large files being sent while the rest is hashed, if asked.
    :param early_sent: bytes the early sends stored (reported by the push).
    :param started: when the track began (the push's rate is timed from then).
    :param unread: directories some of whose files were known from their stat and not read,
        with the scan that vouched for them: the push finds there any such file it must send.
    :param unread_index: built from ``unread`` when first needed: ``{md5: path to read}``.
    :param cached: objects this track wrote into the cache, and their sizes (the push
        need not look at them again).
    :param manifests: the manifests this track built, ``{object id: {relpath: md5}}`` (the
        push need not read them back).
    :param indexes: the tensor indexes of the safetensors files this track hashed whole, by MD5.
    """

    fresh: set[str] = field(default_factory=set)
    sources: dict[str, tuple[str | Path, os.stat_result]] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)
    part_digests: dict[str, PartDigests] = field(default_factory=dict)
    early: EarlyUploads | None = None
    early_sent: int = 0
    started: float = 0.0
    unread: dict[str, TreeScan] = field(default_factory=dict)
    unread_index: dict[str, str] | None = None
    manifests: dict[str, dict[str, str]] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    indexes: dict[str, ChunkManifest] = field(default_factory=dict)

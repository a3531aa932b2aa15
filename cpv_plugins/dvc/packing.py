"""Packing a file's new chunks (the tensor layout): which chunks a stored pack already
holds, which go into the pack being written (sealed into the cache at about 64 MiB, one
object the push sends), and which are stored again rather than borrowed from a pack this
file barely uses."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from cpv_core.errors import DVCError
from cpv_core.faults import crash_point
from cpv_plugins.dvc.chunking import ChunkManifest

#: a pack is sealed once it holds this many bytes
PACK_BYTES = 64 * 1024 * 1024
#: a stored pack is reused by a new version only if it lends at least this share of its bytes
REUSE_MIN_SHARE = 0.5


class PackSink(Protocol):
    """Where sealed packs go (the engine's cache, :class:`~cpv_plugins.dvc.chunked_store.ChunkedStore`)."""

    def objects_dir(self) -> Path:
        """A directory on the cache's file system for the pack being written."""
        ...

    def cached_path(self, oid: str) -> Path:
        """Where object ``oid`` goes in the cache."""
        ...

    def kept_fresh(self, oid: str, size: int) -> None:
        """Object ``oid`` was just written into the cache from the user's file."""
        ...


class Packer:
    """Where each chunk of a file being tracked is stored: in a pack the store already holds
    (``known``: chunk sha256 -> (pack md5, pack size, offset)), earlier in this file, or appended
    to the pack being written (sealed into the cache at :data:`PACK_BYTES`).

    A stored pack is reused only where this file uses at least :data:`REUSE_MIN_SHARE` of its
    bytes; otherwise the few chunks it would lend are stored again (read again from the file):
    a new version must not keep a mostly dead pack alive for one shared chunk (a header that
    did not change, a bias), or gc could never free an old checkpoint's bytes."""

    def __init__(self, store: PackSink, known: dict[str, tuple[str, int, int]], reread: Callable[[int, int], bytes]) -> None:
        self.store = store
        self.known = known
        self.reread = reread
        #: per chunk: sha256, length, its pack (``(md5, size)`` of a stored one, or the number of a new one), offset
        self.entries: list[tuple[str, int, tuple[str, int] | int, int]] = []
        self.new: dict[str, tuple[int, int]] = {}
        self.sealed: dict[int, tuple[str, int]] = {}
        self._at = 0  # the next chunk's offset in the file
        self._borrowed: dict[str, int] = {}  # file offset of the first use of each chunk taken from a stored pack
        self._number = 0
        self._file: BinaryIO | None = None
        self._tmp = ""
        self._digest = hashlib.md5()
        self._size = 0

    def add(self, digest: str, data: bytes) -> None:
        """Place one chunk (called in file order)."""
        at, self._at = self._at, self._at + len(data)
        if digest in self.new:
            number, offset = self.new[digest]
            self.entries.append((digest, len(data), number, offset))
        elif digest in self.known:
            pack, size, offset = self.known[digest]
            self._borrowed.setdefault(digest, at)
            self.entries.append((digest, len(data), (pack, size), offset))
        else:
            self.entries.append((digest, len(data), *self._append(digest, data)))

    def _append(self, digest: str, data: bytes) -> tuple[int, int]:
        if self._file is None:
            fd, self._tmp = tempfile.mkstemp(prefix=".cpv-", suffix=".tmp", dir=self.store.objects_dir())
            self._file = os.fdopen(fd, "wb")
            self._digest = hashlib.md5()
            self._size = 0
        self._file.write(data)
        self._digest.update(data)
        place = (self._number, self._size)
        self.new[digest] = place
        self._size += len(data)
        crash_point("upload.chunk-cut")
        if self._size >= PACK_BYTES:
            self._seal()
        return place

    def _seal(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        oid = self._digest.hexdigest()
        os.chmod(self._tmp, 0o444)
        final = self.store.cached_path(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, final)
        self.sealed[self._number] = (oid, self._size)
        self._number += 1
        self.store.kept_fresh(oid, self._size)

    def abandon(self) -> None:
        """Drop the pack being written (the track failed)."""
        if self._file is not None:
            self._file.close()
            os.unlink(self._tmp)
            self._file = None

    def _return_thin_borrowings(self) -> None:
        """Store again the chunks borrowed from packs this file barely uses (see the class)."""
        used: dict[tuple[str, int], int] = {}
        for _, length, ref, _ in {e[0]: e for e in self.entries if not isinstance(e[2], int)}.values():
            assert not isinstance(ref, int)
            used[ref] = used.get(ref, 0) + length
        thin = {pack for pack, nbytes in used.items() if nbytes < REUSE_MIN_SHARE * pack[1]}
        for i, (digest, length, ref, _) in enumerate(self.entries):
            if isinstance(ref, int) or ref not in thin:
                continue
            if digest not in self.new:
                data = self.reread(self._borrowed[digest], length)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise DVCError("the file changed while it was read", fix="upload again once it is written")
                self._append(digest, data)
            self.entries[i] = (digest, length, *self.new[digest])

    def manifest(self, md5: str, size: int) -> ChunkManifest:
        """Seal the open pack; the manifest of the file, its packs numbered in first use."""
        self._return_thin_borrowings()
        if self._file is not None:
            self._seal()
        packs: list[tuple[str, int]] = []
        index: dict[str, int] = {}
        chunks = []
        for digest, length, ref, offset in self.entries:
            pack = self.sealed[ref] if isinstance(ref, int) else ref
            if pack[0] not in index:
                index[pack[0]] = len(packs)
                packs.append(pack)
            chunks.append((digest, length, index[pack[0]], offset))
        return ChunkManifest(md5, size, tuple(packs), tuple(chunks))

"""The tensor layout in the engine: a large file stored as chunks (see
:mod:`cpv_plugins.dvc.chunking`), its chunk manifest read back and checked, chunks read
from the cache or the store (each checked against its MD5), and byte ranges of a
stored file served from only the chunks that hold them."""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cpv_core.errors import DVCError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.trust import MAX_MANIFEST_BYTES, MAX_POINTER_BYTES, open_regular
from cpv_plugins.dvc.cache import CacheStore
from cpv_plugins.dvc.chunking import ChunkManifest, parse_manifest
from cpv_plugins.dvc.layout import object_relpath, parse_pointer, pointer_chunk_manifest

logger = logging.getLogger("cpv.storage")

_REUPLOAD = "the stored copy is damaged: re-upload that version from a machine that still has it"


class ChunkRanges:
    """Byte ranges of one chunked file, each served from the chunks that hold it (fetched
    in parallel, each checked against its MD5 before a byte of it is used)."""

    def __init__(self, manifest: ChunkManifest, fetch: Callable[[int], bytes], workers: int) -> None:
        self.manifest = manifest
        self.size = manifest.size
        self._offsets = manifest.offsets()
        self._fetch = fetch
        self._workers = max(1, workers)
        #: bytes fetched so far (what a lazy read cost)
        self.fetched = 0

    def chunk_span(self, start: int, end: int) -> range:
        """Indexes of the chunks that hold bytes ``[start, end)``."""
        if not 0 <= start <= end <= self.size:
            raise DVCError(f"bytes {start}-{end} are outside the file's {self.size}", fix=_REUPLOAD)
        if start == end:
            return range(0)
        first = bisect.bisect_right(self._offsets, start) - 1
        last = bisect.bisect_left(self._offsets, end) - 1
        return range(first, last + 1)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file."""
        return b"".join(self.read_many([(start, end)]))

    def read_many(self, spans: Iterable[tuple[int, int]]) -> list[bytes]:
        """Several ranges at once (their chunks fetched in one parallel pass)."""
        spans = list(spans)
        needed = sorted({i for s, e in spans for i in self.chunk_span(s, e)})
        with ThreadPoolExecutor(max_workers=min(self._workers, max(1, len(needed)))) as pool:
            got = dict(zip(needed, pool.map(self._fetch, needed), strict=True))
        self.fetched += sum(len(b) for b in got.values())
        out = []
        for s, e in spans:
            idx = self.chunk_span(s, e)
            if not idx:
                out.append(b"")
                continue
            joined = b"".join(got[i] for i in idx)
            base = self._offsets[idx[0]]
            out.append(joined[s - base : e - base])
        return out


class ChunkedStore(CacheStore):
    """Reads and writes the tensor layout's chunks and manifests."""

    def chunk_manifest_oid(self, pointer: bytes, info: TrackedArtifact) -> str | None:
        """The chunk manifest a file's pointer names, or None (stored whole, or a directory)."""
        where = info.pointer or self.pointer_path(info.path)
        out = parse_pointer(pointer, where)
        return pointer_chunk_manifest(out, where) if out else None

    def objects(self, path: str) -> list[str]:
        """Object ids of a tracked path; for a chunked file its chunk manifest and chunks."""
        chunked = self.workspace_chunk_manifest(path)
        if chunked is None:
            return super().objects(path)
        return [chunked[0], *chunked[1].distinct()]

    def workspace_chunk_manifest(self, path: str) -> tuple[str, ChunkManifest] | None:
        """The chunk manifest (id and content) the workspace's pointer of ``path`` names, if any."""
        try:
            with open_regular(self.path / self.pointer_path(path)) as handle:
                raw = handle.read(MAX_POINTER_BYTES + 1)
        except OSError:
            return None
        out = parse_pointer(raw, self.pointer_path(path))
        moid = pointer_chunk_manifest(out, self.pointer_path(path)) if out else None
        if moid is None or out is None:
            return None
        return moid, self.load_chunk_manifest(moid, str(out.get("md5")), int(out.get("size") or 0), path)

    def load_chunk_manifest(self, moid: str, md5: str, size: int, where: str) -> ChunkManifest:
        """The checked chunk manifest ``moid`` of a file with ``md5`` and ``size``: from the
        cache when its copy matches its name (a damaged one is evicted), else from the store."""
        if self._has_cached(moid):
            with open_regular(self._cached(moid)) as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
            if hashlib.md5(raw).hexdigest() == moid:
                return parse_manifest(raw, md5, size, where)
            logger.warning("the cached chunk manifest %s is damaged; fetching it again", moid)
            self._evict(moid)
        try:
            with self.remote(f"read the chunk manifest of {where}"):
                raw = self.transport.read(moid)
        except FileNotFoundError:
            raise DVCError(f"the chunk manifest {moid} of {where} is missing on {self.describe_remote()}", fix=_REUPLOAD) from None
        if hashlib.md5(raw).hexdigest() != moid:
            raise DVCError(
                f"the chunk manifest {moid} of {where} on {self.describe_remote()} does not match its hash; nothing was placed",
                fix=_REUPLOAD,
            )
        manifest = parse_manifest(raw, md5, size, where)
        self._keep_manifest(moid, raw)
        return manifest

    def chunk_bytes(self, manifest: ChunkManifest, index: int, where: str) -> bytes:
        """Chunk ``index`` of ``manifest``, checked: from the cache when it holds a good copy,
        else from the store. A chunk whose bytes are not its MD5 is refused naming it."""
        oid, length = manifest.chunks[index]
        if self._cached_size(oid) == length:
            with open_regular(self._cached(oid)) as handle:
                data = handle.read(length + 1)
            if hashlib.md5(data).hexdigest() == oid:
                return data
            logger.warning("the cached chunk %s is damaged; fetching it from %s", oid, self.describe_remote())
            self._evict(oid)
        try:
            data = self.transport.read(oid)
        except FileNotFoundError:
            raise DVCError(
                f"{where}: chunk {index + 1} of {len(manifest.chunks)} (object {object_relpath(oid)}) is missing on "
                f"{self.describe_remote()}; nothing was placed",
                fix=_REUPLOAD,
            ) from None
        if len(data) != length or hashlib.md5(data).hexdigest() != oid:
            start = manifest.offsets()[index]
            raise DVCError(
                f"{where}: chunk {index + 1} of {len(manifest.chunks)} (bytes {start}-{start + length - 1}, object "
                f"{object_relpath(oid)} in {self.describe_remote()}) is corrupt; nothing was placed",
                fix=_REUPLOAD,
            )
        return data

    def store_chunk(self, oid: str, data: bytes) -> None:
        """Keep a chunk just cut from the user's file in the cache (the push sends it from
        there); one the cache already holds is left alone (checked before it is ever sent)."""
        if self._cached_size(oid) == len(data):
            return
        atomic_write_bytes(self._cached(oid), data, mode=0o444)
        self.session.fresh.add(oid)
        self.session.cached[oid] = len(data)
        if self.session.early is not None:
            self.session.early.submit(oid)
        crash_point("upload.chunk-cut")

    def keep_chunk_manifest(self, manifest: ChunkManifest) -> str:
        """Write ``manifest`` into the cache as an object; its id."""
        raw = manifest.to_bytes()
        moid = hashlib.md5(raw).hexdigest()
        if self._cached_size(moid) != len(raw):
            atomic_write_bytes(self._cached(moid), raw, mode=0o444)
        self.session.fresh.add(moid)
        self.session.cached[moid] = len(raw)
        return moid

    def chunk_ranges(self, manifest: ChunkManifest, where: str) -> ChunkRanges:
        """Byte ranges of the file ``manifest`` describes."""
        return ChunkRanges(manifest, lambda i: self.chunk_bytes(manifest, i, where), self.transport.parallel)

    def place_chunked(self, manifest: ChunkManifest, out: Path, on_bytes: Callable[[int], Any], where: str) -> None:
        """Reassemble the file into ``out``: chunks fetched in parallel and written at their
        offsets, the whole file's MD5 computed in order as they land; a mismatch places nothing
        (the caller stages ``out``)."""
        offsets = manifest.offsets()
        digest = hashlib.md5()
        with open(out, "wb") as handle:
            handle.truncate(manifest.size)
        fd = os.open(out, os.O_RDWR)
        try:

            def fetch(index: int) -> int:
                data = self.chunk_bytes(manifest, index, where)
                os.pwrite(fd, data, offsets[index])
                on_bytes(len(data))
                crash_point("download.chunk-placed")
                return len(data)

            workers = max(1, min(self.transport.parallel, len(manifest.chunks)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for index, length in enumerate(pool.map(fetch, range(len(manifest.chunks)))):
                    digest.update(os.pread(fd, length, offsets[index]))  # in page cache still
        finally:
            os.close(fd)
        if digest.hexdigest() != manifest.md5:
            raise DVCError(
                f"{where}: the reassembled file has md5 {digest.hexdigest()}, not its recorded {manifest.md5}; nothing was placed",
                fix=_REUPLOAD,
            )

    def export_whole(self, manifest: ChunkManifest, where: str, into: Path) -> Path:
        """Reassemble the file into a new temporary file under ``into``; its path."""
        fd, name = tempfile.mkstemp(prefix=".cpv-export-", suffix=".tmp", dir=into)
        os.close(fd)
        self.place_chunked(manifest, Path(name), lambda n: None, where)
        return Path(name)

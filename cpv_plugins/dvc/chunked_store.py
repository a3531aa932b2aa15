"""The tensor layout in the engine: a large file's new chunks packed into pack objects
(:mod:`cpv_plugins.dvc.packing`), its chunk manifest read back and checked, chunks
read from a cached pack or with ranged reads of the store's (several adjacent chunks in
one read, each chunk checked against its SHA-256), a file reassembled, and byte ranges of a
stored file served from only the chunks that hold them."""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO

from cpv_core.errors import CPVError, DVCError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.trust import MAX_POINTER_BYTES, open_regular
from cpv_plugins.dvc.cache import CacheStore
from cpv_plugins.dvc.chunking import ChunkManifest, chunk_file, parse_manifest
from cpv_plugins.dvc.layout import (
    CHUNKS_META_KEY,
    INDEX_META_KEY,
    object_relpath,
    parse_pointer,
    pointer_chunk_manifest,
    pointer_entry_chunks,
    read_pointer,
)
from cpv_plugins.dvc.packing import Packer

logger = logging.getLogger("cpv.storage")

_REUPLOAD = "the stored copy is damaged: re-upload that version from a machine that still has it"
#: adjacent chunks of one pack are read together up to this many bytes (an S3 transfer part)
SPAN_BYTES = 8 * 1024 * 1024


class ChunkRanges:
    """Byte ranges of one chunked file, each served from the chunks that hold them (read in
    parallel, each checked against its MD5 before a byte of it is used)."""

    def __init__(self, store: ChunkedStore, manifest: ChunkManifest, where: str) -> None:
        self.store = store
        self.manifest = manifest
        self.where = where
        self.size = manifest.size
        self._offsets = manifest.offsets()
        #: bytes transferred so far (what a lazy read cost)
        self.fetched = 0

    def chunk_span(self, start: int, end: int) -> range:
        """Indexes of the chunks that hold bytes ``[start, end)``."""
        if not 0 <= start <= end <= self.size:
            raise DVCError(f"{self.where}: bytes {start}-{end} are outside the file's {self.size}", fix=_REUPLOAD)
        if start == end:
            return range(0)
        first = bisect.bisect_right(self._offsets, start) - 1
        last = bisect.bisect_left(self._offsets, end) - 1
        return range(first, last + 1)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file."""
        return b"".join(self.read_many([(start, end)]))

    def read_many(self, spans: Iterable[tuple[int, int]]) -> list[bytes]:
        """Several ranges at once (their chunks read in one parallel pass)."""
        spans = list(spans)
        needed = sorted({i for s, e in spans for i in self.chunk_span(s, e)})
        got: dict[int, bytes] = {}
        self.fetched += self.store.read_chunks(self.manifest, needed, lambda i, data: got.__setitem__(i, bytes(data)), self.where)
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


def _spans(manifest: ChunkManifest, indexes: list[int]) -> list[tuple[int, int, int, list[int]]]:
    """The chunks ``indexes`` grouped into reads: ``(pack index, start, end, chunk indexes)``,
    adjacent chunks of one pack together up to :data:`SPAN_BYTES`, in the order of their
    first chunk (the file's order, so its MD5 can follow the reads)."""
    reads: list[tuple[int, int, int, list[int]]] = []
    open_read: dict[int, int] = {}
    for i in indexes:
        _, length, pack, offset = manifest.chunks[i]
        at = open_read.get(pack)
        if at is not None:
            p, start, end, members = reads[at]
            if end == offset and end + length - start <= SPAN_BYTES:
                reads[at] = (p, start, end + length, [*members, i])
                continue
        open_read[pack] = len(reads)
        reads.append((pack, offset, offset + length, [i]))
    return reads


class ChunkedStore(CacheStore):
    """Reads and writes the tensor layout's packs and manifests."""

    def cached_path(self, oid: str) -> Path:
        """Where object ``oid`` is (or goes) in the cache."""
        return self._cached(oid)

    def objects_dir(self) -> Path:
        """The cache's object directory (temporary files go there, on the same file system)."""
        return self._objects_dir()

    def kept_fresh(self, oid: str, size: int) -> None:
        """Object ``oid`` was just written into the cache from the user's files (known good):
        the push sends it from there, and a store without a cache copy gets it early."""
        self.session.fresh.add(oid)
        self.session.cached[oid] = size
        if self.session.early is not None:
            self.session.early.submit(oid)

    def chunk_manifest_oid(self, pointer: bytes, info: TrackedArtifact, key: str = CHUNKS_META_KEY) -> str | None:
        """The chunk manifest a file's pointer names, or None (stored whole, or a directory);
        ``key`` = :data:`INDEX_META_KEY`: the tensor index of a file stored whole."""
        where = info.pointer or self.pointer_path(info.path)
        out = parse_pointer(pointer, where)
        return pointer_chunk_manifest(out, where, key) if out else None

    def objects(self, path: str) -> list[str]:
        """Object ids of a tracked path; for a chunked file its chunk manifest and packs; a
        whole file's tensor index goes with it."""
        chunked = self.workspace_chunk_manifest(path)
        if chunked is not None:
            return [chunked[0], *chunked[1].pack_ids()]
        out = self._workspace_pointer(path)
        where = self.pointer_path(path)
        index = pointer_chunk_manifest(out, where, INDEX_META_KEY) if out else None
        objects = [*super().objects(path), *([index] if index else [])]
        entry_chunks = pointer_entry_chunks(out, where) if out else {}
        if not entry_chunks:
            return objects
        return self.with_entry_chunks(objects, entry_chunks, self.entry_manifests(entry_chunks, path))

    def _workspace_pointer(self, path: str) -> dict[str, Any] | None:
        """The output entry of the workspace's pointer of ``path`` (None without a readable one)."""
        try:
            with open_regular(self.path / self.pointer_path(path)) as handle:
                return parse_pointer(handle.read(MAX_POINTER_BYTES + 1), self.pointer_path(path))
        except OSError:
            return None

    @staticmethod
    def with_entry_chunks(objects: list[str], entry_chunks: dict[str, str], manifests: dict[str, ChunkManifest]) -> list[str]:
        """A directory's objects with its chunked files' whole-file ids replaced by their chunk
        manifests and packs (in the order the push wants: files first, the ``.dir`` last is its business)."""
        rest = [oid for oid in objects if oid not in entry_chunks]
        extra = [*entry_chunks.values(), *(pack for m in manifests.values() for pack in m.pack_ids())]
        return list(dict.fromkeys([*rest, *sorted(set(extra))]))

    def chunked_sizes(self, paths: Iterable[str]) -> dict[str, int]:
        """The sizes of the packs the chunked files among ``paths`` use, as their manifests
        record them: a pack reused from a teammate's version is on the store, not here."""
        sizes: dict[str, int] = {}
        for path in paths:
            chunked = self.workspace_chunk_manifest(path)
            if chunked is not None:
                sizes.update(chunked[1].packs)
            for manifest in self.workspace_entry_manifests(path).values():
                sizes.update(manifest.packs)
        return sizes

    def workspace_chunk_manifest(self, path: str) -> tuple[str, ChunkManifest] | None:
        """The chunk manifest (id and content) the workspace's pointer of ``path`` names, if any."""
        out = self._workspace_pointer(path)
        moid = pointer_chunk_manifest(out, self.pointer_path(path)) if out else None
        if moid is None:
            return None
        info = read_pointer(self.path, path)
        return moid, self.load_chunk_manifest(moid, info.digest.removeprefix("md5:"), info.size or 0, path)

    def load_chunk_manifest(self, moid: str, md5: str, size: int | None, where: str) -> ChunkManifest:
        """The checked chunk manifest ``moid`` of a file with ``md5`` and ``size`` (None: a
        directory's file, whose size its manifest alone records: the reassembled file's MD5 is
        the check): from the cache when its copy matches its name (a damaged one is evicted),
        else from the store."""
        raw, fetched = self.read_small_object(moid, "chunk manifest", where)
        manifest = parse_manifest(raw, md5, size, where)
        if fetched:
            self._keep_manifest(moid, raw)
        return manifest

    def stored_chunks(self, path: str) -> dict[str, tuple[str, int, int]]:
        """The chunks of the version the workspace's pointer of file ``path`` names whose packs
        the store holds, at their recorded size: what a new version of ``path`` need not send
        again (chunk sha256 -> (pack md5, pack size, offset)). Anything unreadable gives nothing."""
        try:
            previous = self.workspace_chunk_manifest(path)
        except (CPVError, OSError) as exc:
            logger.info("no chunks to reuse for %s: %s", path, exc)
            return {}
        return self._stored_of(path, [previous[1]] if previous else [])

    def stored_entry_chunks(self, path: str) -> dict[str, tuple[str, int, int]]:
        """:meth:`stored_chunks` for directory ``path``: the chunks of all its chunked files."""
        try:
            manifests = list(self.workspace_entry_manifests(path).values())
        except (CPVError, OSError) as exc:
            logger.info("no chunks to reuse for %s: %s", path, exc)
            return {}
        return self._stored_of(path, manifests)

    def _stored_of(self, path: str, manifests: list[ChunkManifest]) -> dict[str, tuple[str, int, int]]:
        packs = {pack: size for manifest in manifests for pack, size in manifest.packs}
        if not packs:
            return {}
        with self.remote(f"check the packs of {path}"):
            stored = self.transport.sizes(list(packs))
        found: dict[str, tuple[str, int, int]] = {}
        for manifest in manifests:
            for digest, _, p, offset in manifest.chunks:
                pack, size = manifest.packs[p]
                if stored.get(pack) == size:
                    found.setdefault(digest, (pack, size, offset))
        return found

    def workspace_entry_manifests(self, path: str) -> dict[str, ChunkManifest]:
        """``{entry md5: chunk manifest}`` of the chunked files the workspace's pointer of
        directory ``path`` names (none for a file or a directory stored whole)."""
        out = self._workspace_pointer(path)
        return self.entry_manifests(pointer_entry_chunks(out, self.pointer_path(path)) if out else {}, path)

    def entry_manifests(self, entry_chunks: dict[str, str], where: str) -> dict[str, ChunkManifest]:
        """The checked chunk manifests of a directory's chunked files, by their MD5."""
        return {md5: self.load_chunk_manifest(moid, md5, None, where) for md5, moid in entry_chunks.items()}

    def track_chunked_file(
        self, reader: BinaryIO, size: int, known: dict[str, tuple[str, int, int]], on_bytes: Callable[[int], object]
    ) -> tuple[str, str]:
        """Cut the file open in ``reader`` into chunks, packing those ``known`` does not place
        in a stored pack, and keep its chunk manifest in the cache; the manifest's id and the
        file's MD5."""
        packer = Packer(self, known, lambda offset, length: os.pread(reader.fileno(), length, offset))
        try:
            md5, _ = chunk_file(reader, size, packer.add, on_bytes)
            manifest = packer.manifest(md5, size)
        except BaseException:
            packer.abandon()
            raise
        return self.keep_manifest_object(manifest), md5

    def keep_manifest_object(self, manifest: ChunkManifest) -> str:
        """Write ``manifest`` into the cache as an object for the push to send; its id."""
        raw = manifest.to_bytes()
        moid = hashlib.md5(raw).hexdigest()
        if self._cached_size(moid) != len(raw):
            atomic_write_bytes(self._cached(moid), raw, mode=0o444)
        self.session.fresh.add(moid)
        self.session.cached[moid] = len(raw)
        return moid

    def read_chunks(self, manifest: ChunkManifest, indexes: list[int], on_chunk: Callable[[int, memoryview], Any], where: str) -> int:
        """Read chunks ``indexes`` (from a cached pack, else with ranged reads of the store's,
        several adjacent chunks per read, in parallel), each checked against its SHA-256 and handed
        to ``on_chunk(index, bytes)``; the bytes read from the store."""
        fetched = 0
        lock = threading.Lock()

        def checked(data: bytes, members: list[int]) -> list[memoryview] | int:
            """The chunks of ``data``, or the index of the first one that is not its SHA-256."""
            pieces, at, view = [], 0, memoryview(data)
            for i in members:
                digest, length, _, _ = manifest.chunks[i]
                piece = view[at : at + length]  # no copy
                at += length
                if hashlib.sha256(piece).hexdigest() != digest:
                    return i
                pieces.append(piece)
            return pieces

        def run(span: tuple[int, int, int, list[int]]) -> None:
            nonlocal fetched
            pack_index, start, end, members = span
            pack = manifest.packs[pack_index][0]
            cached = self._read_pack(pack, start, end)
            pieces = checked(cached, members) if cached is not None else None
            if isinstance(pieces, int):  # the cache's copy is damaged: the store's is read instead
                logger.warning("the cached pack %s is damaged; reading it from %s", pack, self.describe_remote())
                self._evict(pack)
            if not isinstance(pieces, list):
                data = self._fetch_pack_range(pack, start, end, manifest, members[0], where)
                with lock:
                    fetched += len(data)
                pieces = checked(data, members)
                if isinstance(pieces, int):
                    raise self._corrupt(manifest, pieces, pack, where)
            for i, piece in zip(members, pieces, strict=True):
                on_chunk(i, piece)

        spans = _spans(manifest, indexes)
        small = sum(end - start for _, start, end, _ in spans) < len(spans) * 1024 * 1024  # a round trip each, more in flight
        workers = max(1, min(self.transport.parallel_small if small else self.transport.parallel, len(spans)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(run, span) for span in spans]:
                future.result()
        return fetched

    def _read_pack(self, pack: str, start: int, end: int) -> bytes | None:
        """Bytes of a pack the cache holds (None when it does not); its chunks are checked by the caller."""
        if self._cached_size(pack) is None:
            return None
        with open_regular(self._cached(pack)) as handle:
            handle.seek(start)
            data = handle.read(end - start)
        return data if len(data) == end - start else None

    def _fetch_pack_range(self, pack: str, start: int, end: int, manifest: ChunkManifest, first: int, where: str) -> bytes:
        try:
            data = self.transport.read_range(pack, start, end)
        except FileNotFoundError:
            raise DVCError(
                f"{where}: chunk {first + 1} of {len(manifest.chunks)} is in pack {object_relpath(pack)}, missing on "
                f"{self.describe_remote()}; nothing was placed",
                fix=_REUPLOAD,
            ) from None
        if len(data) != end - start:
            raise self._corrupt(manifest, first, pack, where)
        return data

    def _corrupt(self, manifest: ChunkManifest, index: int, pack: str, where: str) -> DVCError:
        start = manifest.offsets()[index]
        return DVCError(
            f"{where}: chunk {index + 1} of {len(manifest.chunks)} (bytes {start}-{start + manifest.chunks[index][1] - 1}, in pack "
            f"{object_relpath(pack)} of {self.describe_remote()}) is corrupt; nothing was placed",
            fix=_REUPLOAD,
        )

    def chunk_ranges(self, manifest: ChunkManifest, where: str) -> ChunkRanges:
        """Byte ranges of the file ``manifest`` describes."""
        return ChunkRanges(self, manifest, where)

    def place_chunked(self, manifest: ChunkManifest, out: Path, on_bytes: Callable[[int], Any], where: str) -> None:
        """Reassemble the file into ``out``: chunks read in parallel and written at their
        offsets, the whole file's MD5 computed in order as they land (read back from the page
        cache, never held); a mismatch places nothing (the caller stages ``out``)."""
        offsets = manifest.offsets()
        digest = hashlib.md5()
        landed = [False] * len(manifest.chunks)
        with open(out, "wb") as handle:
            handle.truncate(manifest.size)
        fd = os.open(out, os.O_RDWR)
        try:

            def place(index: int, data: memoryview) -> None:
                os.pwrite(fd, data, offsets[index])
                landed[index] = True
                on_bytes(len(data))
                crash_point("download.chunk-placed")

            hashed = 0
            with ThreadPoolExecutor(max_workers=1) as reader:
                job = reader.submit(self.read_chunks, manifest, list(range(len(manifest.chunks))), place, where)
                while True:
                    done, _ = wait([job], timeout=0.05, return_when=FIRST_COMPLETED)
                    while hashed < len(landed) and landed[hashed]:
                        digest.update(os.pread(fd, manifest.chunks[hashed][1], offsets[hashed]))
                        hashed += 1
                    if done:
                        job.result()
                        break
            while hashed < len(landed):
                digest.update(os.pread(fd, manifest.chunks[hashed][1], offsets[hashed]))
                hashed += 1
        finally:
            os.close(fd)
        if digest.hexdigest() != manifest.md5:
            raise DVCError(
                f"{where}: the reassembled file has md5 {digest.hexdigest()}, not its recorded {manifest.md5}; nothing was placed",
                fix=_REUPLOAD,
            )

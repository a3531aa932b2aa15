"""Tracking: hashing workspace files into the cache (unchanged ones known from
the stat cache), writing pointers and manifests as ``dvc add`` does, the
workspace's status against them."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from cpv_core import bulk
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.progress import Progress
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.plugin.sources import ScanEntry, TreeScan, scan_tree
from cpv_core.trust import open_regular
from cpv_plugins.dvc.bulk_files import Hashed, hash_files
from cpv_plugins.dvc.cache import SMALL_FILE_BYTES
from cpv_plugins.dvc.chunking import CHUNKED_MIN_BYTES
from cpv_plugins.dvc.early_uploads import EarlyUploads
from cpv_plugins.dvc.layout import (
    ignore_in_git,
    manifest_bytes,
    read_pointer,
    write_pointer,
)
from cpv_plugins.dvc.part_digests import PartDigests, entry_part_size
from cpv_plugins.dvc.pushing import PushingStore
from cpv_plugins.dvc.stat_cache import StatCache, now_ns
from cpv_plugins.dvc.upload_session import UploadSession
from cpv_plugins.transports.base import OnBytes, hash_file

logger = logging.getLogger("cpv.storage")


class TrackingStore(PushingStore):
    """Tracks workspace files (and sends large ones early while the rest is hashed)."""

    # -- track ---------------------------------------------------------------------
    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """Hash ``paths`` into the cache (always a copy: a revert saves unsaved work this way)."""
        return self._track(paths, copy=True)

    def track_for_push(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """Hash ``paths`` for the upload that follows: into the cache, or, for a store that
        keeps no cache copy, where they are (the push then reads the workspace files).
        The remote's check starts meanwhile (:meth:`Transport.prepare`)."""
        self.transport.prepare()
        copy = self.keeps_cache_copy()
        return self._track(paths, copy=copy, send_early=not copy)

    def _track(self, paths: Sequence[str], *, copy: bool, send_early: bool = False) -> list[TrackedArtifact]:
        self._stop_early_uploads()
        self.check_settings()
        self._remove_partial_cache_files()
        # only what this call hashes is known good for the push that follows
        self.session = UploadSession(started=time.monotonic())
        stats = self._stat_cache()
        if send_early:
            self.session.early = EarlyUploads(self._send_early, self.transport.parallel)
        try:
            for p in paths:
                source = self.path / p
                if source.is_file() and not source.is_symlink():
                    self._track_file(p, stats, copy)
                else:
                    self._track_dir(p, stats, copy)
        except BaseException:
            self._stop_early_uploads()
            raise
        stats.save()
        return [read_pointer(self.path, p) for p in paths]

    def _watching_remote(self, on_bytes: OnBytes) -> OnBytes:
        """``on_bytes``, and then stop the hashing if the remote's background check
        (:meth:`track_for_push`) has already failed: a mistyped endpoint is reported
        at once, not after hashing a large checkpoint."""

        def watched(n: int) -> None:
            on_bytes(n)
            if self._transport is not None:  # none made yet: nothing was started
                self._transport.check_prepared()

        return watched

    def _track_file(self, path: str, stats: StatCache, copy: bool) -> None:
        src = self.path / path
        size = src.stat().st_size
        started = now_ns()
        if self.ctx.layout == "tensors" and size >= CHUNKED_MIN_BYTES:
            self._track_chunked(path, size, stats, started)
            return
        with Progress(f"hash and cache {path}" if copy else f"hash {path}", size, self.ctx.progress) as progress:
            on_bytes = self._watching_remote(progress.update)
            index = size >= CHUNKED_MIN_BYTES  # a safetensors file's tensors can then be read alone, verified
            oid = self._cache_file(src, on_bytes, index=index) if copy else self._hash_in_place(src, on_bytes, index=index)
        stats.put(path, src, oid, started)
        built = self.session.indexes.get(oid)
        moid = self.keep_manifest_object(built) if built is not None else None
        write_pointer(self.path, path, oid, size, None, self.session.part_digests.get(oid), index=moid)
        ignore_in_git(self.path, path)

    def _track_chunked(self, path: str, size: int, stats: StatCache, started: int) -> None:
        """The tensor layout: cut the file into chunks in one read (its MD5 on another thread),
        pack those the store does not hold yet (a pack is sent early to a store that keeps no
        cache copy, while the rest is read), and point at the chunk manifest. The pointer's MD5 and size are the whole file's,
        exactly as the whole-file layout records them."""
        src = self.path / path
        with Progress(f"hash and chunk {path}", size, self.ctx.progress) as progress, open_regular(src) as reader:
            moid, md5 = self.track_chunked_file(reader, size, self.stored_chunks(path), self._watching_remote(progress.update))
        stats.put(path, src, md5, started)
        write_pointer(self.path, path, md5, size, None, chunks=moid)
        ignore_in_git(self.path, path)

    def _track_dir(self, path: str, stats: StatCache, copy: bool) -> None:
        """Hash a directory's changed files into the cache, write its ``.dir`` manifest and pointer.

        One walk; a tree whose scan is as when it was last tracked is known from its
        fingerprint alone; otherwise only files whose stat changed are read (small ones
        on every core). A file known from its stat is not read, so re-uploading a
        directory costs what changed; the push reads any such file it must send.
        """
        scan = scan_tree(self.path / path)
        # the tensor layout re-reads its large files each time, as a single file is: their
        # chunks are then found in the stored packs (checked there), never trusted by stat
        chunked = [e for e in scan.files if e[2] >= CHUNKED_MIN_BYTES] if self.ctx.layout == "tensors" else []
        known = stats.tree(path, scan.fingerprint, scan.newest_mtime_ns)
        if known is not None and self._has_cached(known) and not chunked:
            self.session.unread[path] = scan
            self._finish_dir(path, known, scan, {})
            return
        md5s, changed = self._known_files(path, scan, stats)
        if chunked:
            large = {e[0] for e in chunked}
            changed = [e for e in changed if e[0] not in large]
            for rel in large:
                md5s.pop(rel, None)
        if len(changed) + len(chunked) < len(scan.files):
            self.session.unread[path] = scan  # files the push may have to read
        hashed = self._hash_changed(path, scan, changed, copy)
        entry_chunks = self._chunk_entries(path, scan, chunked, hashed)
        prefix = f"{path}/"
        for entry in [*changed, *chunked]:
            md5s[entry[0]] = hashed[entry[0]]
            stats.put_scanned(prefix + entry[0], entry[2], entry[3], entry[4], hashed[entry[0]], scan.scanned_at)
        raw, oid = manifest_bytes(md5s)
        self.session.manifests[oid] = md5s  # the push reads it from here, not from the cache
        if not self._has_cached(oid):
            atomic_write_bytes(self._cached(oid), raw, mode=0o444)
        self.session.fresh.add(oid)
        stats.put_tree(path, scan.fingerprint, scan.newest_mtime_ns, oid, scan.scanned_at)
        # part digests of the large entries hashed now (a file the stat cache vouched for was
        # not read, so it gets none and its download checks its MD5)
        entry_parts = {hashed[e[0]]: self.session.part_digests[hashed[e[0]]] for e in changed if hashed[e[0]] in self.session.part_digests}
        self._finish_dir(path, oid, scan, entry_parts, entry_chunks)

    def _chunk_entries(self, path: str, scan: TreeScan, entries: list[ScanEntry], hashed: dict[str, str]) -> dict[str, str]:
        """Cut the large files of a directory in the tensor layout into chunks (reusing those
        of the directory's stored version); ``{md5: chunk manifest id}``, their MD5s into ``hashed``."""
        if not entries:
            return {}
        known = self.stored_entry_chunks(path)
        found: dict[str, str] = {}
        with Progress(f"hash and chunk {path}", sum(e[2] for e in entries), self.ctx.progress) as progress:
            on_bytes = self._watching_remote(progress.update)
            for entry in entries:
                with open_regular(Path(scan.path_of(entry))) as reader:
                    moid, md5 = self.track_chunked_file(reader, entry[2], known, on_bytes)
                found[md5] = moid
                hashed[entry[0]] = md5
        return found

    def _known_files(self, path: str, scan: TreeScan, stats: StatCache) -> tuple[dict[str, str], list[ScanEntry]]:
        """``{relpath: md5}`` of the files the stat cache vouches for, and the other entries."""
        md5s: dict[str, str] = {}
        changed: list[ScanEntry] = []
        prefix = f"{path}/"
        get = stats.get_scanned
        for entry in scan.files:
            known = get(prefix + entry[0], entry[2], entry[3], entry[4])
            if known is None:
                changed.append(entry)
            else:
                md5s[entry[0]] = known
        return md5s, changed

    def _hash_changed(self, path: str, scan: TreeScan, changed: list[ScanEntry], copy: bool) -> dict[str, str]:
        """Hash ``changed`` (into the cache with ``copy``): ``{relpath: md5}``. Small files go to
        the worker processes in chunks; large ones are streamed here (progress, part digests,
        sent early while the rest is hashed)."""
        hashed: dict[str, str] = {}
        part_size = entry_part_size(e[2] for e in changed)  # a large model's shards all get parts
        # streamed here: large files, and any that get part digests
        by_stream = SMALL_FILE_BYTES if not self.wants_part_digests() else min(SMALL_FILE_BYTES, part_size + 1)
        small = [e for e in changed if e[2] < by_stream]
        large = [e for e in changed if e[2] >= by_stream]
        with Progress(f"hash and cache {path}" if copy else f"hash {path}", sum(e[2] for e in changed), self.ctx.progress) as progress:
            on_bytes = self._watching_remote(progress.update)
            cache_root = self._cache_root if copy else None

            def done(chunk: Sequence[str], results: list[Hashed]) -> None:
                on_bytes(sum(size_of[p] for p in chunk))
                crash_point("track.chunk-hashed")  # the workers are still hashing the next chunks

            paths = [scan.path_of(e) for e in small]
            size_of = dict(zip(paths, (e[2] for e in small), strict=True))
            results = [r for chunk in bulk.map_chunks(hash_files, paths, cache_root, on_done=done) for r in chunk]
            for entry, src, (md5, size, before) in zip(small, paths, results, strict=True):
                hashed[entry[0]] = md5
                self.session.fresh.add(md5)
                if before is not None:
                    self.session.sources[md5] = (src, before)
                else:
                    self.session.cached[md5] = size
            hash_one = self._cache_file if copy else self._hash_in_place
            for entry in large:
                md5 = hash_one(Path(scan.path_of(entry)), on_bytes, part_size)
                hashed[entry[0]] = md5
                if self.session.early is not None:
                    self.session.early.submit(md5)
        return hashed

    def _finish_dir(
        self, path: str, oid: str, scan: TreeScan, entry_parts: dict[str, PartDigests], entry_chunks: dict[str, str] | None = None
    ) -> None:
        """Point ``path``'s pointer at manifest ``oid`` (left as it is when it already does)."""
        previous = self._recorded_oid(path)
        if previous is not None and previous.endswith(".dir") and previous != oid:
            self.session.previous[path] = previous
        if previous != oid or entry_parts or entry_chunks:
            write_pointer(self.path, path, oid, scan.size, len(scan.files), entry_parts=entry_parts, entry_chunks=entry_chunks)
        ignore_in_git(self.path, path)

    def status(self, paths: Sequence[str]) -> dict[str, str]:
        self.check_settings()
        stats = self._stat_cache()
        result: dict[str, str] = {}
        for p in paths:
            if not (self.path / self.pointer_path(p)).exists():
                result[p] = "untracked" if (self.path / p).exists() else "missing"
            elif not (self.path / p).exists():
                result[p] = "missing"
            else:
                recorded = read_pointer(self.path, p).digest.removeprefix("md5:")
                result[p] = "unchanged" if self._current_oid(p, stats) == recorded else "modified"
        stats.save()
        return result

    def _current_files(self, path: str, stats: StatCache, scan: TreeScan | None = None) -> dict[str, str]:
        """``{relpath: md5}`` of ``path`` as it is now (``{"": md5}`` for a file), hashing only
        what the stat cache cannot vouch for."""
        source = self.path / path
        if scan is None and source.is_file() and not source.is_symlink():
            known = stats.get(path, source)
            if known is None:
                started = now_ns()
                known = hash_file(source)
                stats.put(path, source, known, started)
            return {"": known}
        scan = scan or scan_tree(source)
        md5s, changed = self._known_files(path, scan, stats)
        for entry in changed:
            md5s[entry[0]] = md5 = hash_file(Path(scan.path_of(entry)))
            stats.put_scanned(f"{path}/{entry[0]}", entry[2], entry[3], entry[4], md5, scan.scanned_at)
        return md5s

    def _current_oid(self, path: str, stats: StatCache) -> str:
        """The object id ``path`` would get if tracked now (a directory whose scan is as when
        it was last tracked or checked: from its fingerprint alone)."""
        source = self.path / path
        if source.is_file() and not source.is_symlink():
            return self._current_files(path, stats)[""]
        scan = scan_tree(source)
        known = stats.tree(path, scan.fingerprint, scan.newest_mtime_ns)
        if known is not None:
            return known
        oid = manifest_bytes(self._current_files(path, stats, scan))[1]
        stats.put_tree(path, scan.fingerprint, scan.newest_mtime_ns, oid, scan.scanned_at)
        return oid

    def changes(self, path: str) -> dict[str, str]:
        """How the files of ``path`` differ from its committed pointer: ``{relpath:
        "added" | "removed" | "modified"}`` (``""`` is the path itself when it is a file)."""
        self.check_settings()
        stats = self._stat_cache()
        current = self._current_files(path, stats) if (self.path / path).exists() else {}
        stats.save()
        info = read_pointer(self.path, path)
        oid = info.digest.removeprefix("md5:")
        recorded = self.load_manifest(oid, path) if oid.endswith(".dir") else {"": oid}
        changed = {rel: "added" for rel in current.keys() - recorded.keys()}
        changed.update({rel: "removed" for rel in recorded.keys() - current.keys()})
        changed.update({rel: "modified" for rel in current.keys() & recorded.keys() if current[rel] != recorded[rel]})
        return dict(sorted(changed.items()))

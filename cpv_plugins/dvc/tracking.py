"""Tracking: hashing workspace files into the cache (unchanged ones known from
the stat cache), writing pointers and manifests as ``dvc add`` does, the
workspace's status against them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.progress import Progress
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.plugin.sources import walk_files
from cpv_plugins.dvc.cache import SMALL_FILE_BYTES
from cpv_plugins.dvc.early_uploads import EarlyUploads
from cpv_plugins.dvc.layout import (
    ignore_in_git,
    manifest_bytes,
    read_pointer,
    write_pointer,
)
from cpv_plugins.dvc.part_digests import entry_part_size
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
        with Progress(f"hash and cache {path}" if copy else f"hash {path}", size, self.ctx.progress) as progress:
            on_bytes = self._watching_remote(progress.update)
            oid = self._cache_file(src, on_bytes) if copy else self._hash_in_place(src, on_bytes)
        stats.put(path, src, oid, started)
        write_pointer(self.path, path, oid, size, None, self.session.part_digests.get(oid))
        ignore_in_git(self.path, path)

    def _track_dir(self, path: str, stats: StatCache, copy: bool) -> None:
        """Hash a directory's changed files into the cache, write its ``.dir`` manifest and pointer.

        Files whose stat is as when they were last hashed and whose object is
        cached are not read again, so re-uploading a directory costs what changed.
        """
        files = walk_files(self.path / path)
        md5s: dict[str, str] = {}
        changed = []
        for rel, src, size in files:
            known = stats.get(f"{path}/{rel}", src)
            if known is not None and (self._has_cached(known) or not copy):
                md5s[rel] = known
                if not copy:
                    self.session.sources.setdefault(known, (src, os.stat(src)))  # not fresh: re-hashed if it must be uploaded
            else:
                changed.append((rel, src, size))
        with Progress(
            f"hash and cache {path}" if copy else f"hash {path}", sum(size for _, _, size in changed), self.ctx.progress
        ) as progress:
            on_bytes = self._watching_remote(progress.update)
            part_size = entry_part_size(size for _, _, size in changed)  # a large model's shards all get parts
            hash_one = self._cache_file if copy else self._hash_in_place
            for rel, src, size in changed:
                started = now_ns()
                md5s[rel] = hash_one(Path(src), on_bytes, part_size)
                stats.put(f"{path}/{rel}", src, md5s[rel], started)
                if self.session.early is not None and size >= SMALL_FILE_BYTES:
                    self.session.early.submit(md5s[rel])
        raw, oid = manifest_bytes(md5s)
        atomic_write_bytes(self._cached(oid), raw, mode=0o444)
        self.session.fresh.add(oid)
        previous = self._recorded_oid(path)
        if previous is not None and previous.endswith(".dir") and previous != oid:
            self.session.previous[path] = previous
        # part digests of the large entries hashed now (a file the stat cache vouched for was
        # not read, so it gets none and its download checks its MD5)
        entry_parts = {md5: self.session.part_digests[md5] for md5 in set(md5s.values()) if md5 in self.session.part_digests}
        write_pointer(self.path, path, oid, sum(size for _, _, size in files), len(files), entry_parts=entry_parts)
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

    def _current_files(self, path: str, stats: StatCache) -> dict[str, str]:
        """``{relpath: md5}`` of ``path`` as it is now (``{"": md5}`` for a file), hashing only
        what the stat cache cannot vouch for."""

        def md5_of(rel: str, src: str | Path) -> str:
            known = stats.get(rel, src)
            if known is None:
                started = now_ns()
                known = hash_file(Path(src))
                stats.put(rel, src, known, started)
            return known

        source = self.path / path
        if source.is_file() and not source.is_symlink():
            return {"": md5_of(path, source)}
        return {rel: md5_of(f"{path}/{rel}", src) for rel, src, _ in walk_files(source)}

    def _current_oid(self, path: str, stats: StatCache) -> str:
        """The object id ``path`` would get if tracked now."""
        files = self._current_files(path, stats)
        return files[""] if "" in files else manifest_bytes(files)[1]

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

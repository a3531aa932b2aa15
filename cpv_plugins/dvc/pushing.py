"""Sending: what the remote lacks is sent, manifests last, once every file no
stored manifest vouches for is confirmed; the crash journal of unverified
sends; the store's inventory, deletion and incomplete uploads."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cpv_core import bulk
from cpv_core.errors import CPVError, DVCError, ValidationError
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.progress import Progress, human_bytes
from cpv_core.plugin.protocols import IncompleteUpload, StoredObject, TransferStats
from cpv_core.trust import check_oid, visible
from cpv_plugins.dvc.cache import SMALL_FILE_BYTES, STALE_UPLOAD_SECONDS
from cpv_plugins.dvc.chunked_store import ChunkedStore
from cpv_plugins.dvc.layout import INDEX_META_KEY, object_relpath, parse_pointer, pointer_entry_chunks, read_pointer
from cpv_plugins.dvc.stat_cache import same_file_state, settled_stat
from cpv_plugins.transports.base import BulkPut, OnBytes, hash_file

logger = logging.getLogger("cpv.storage")


class _LocalSizes(dict[str, int]):
    """Sizes of local objects, each looked up when first asked for."""

    def __init__(self, lookup: Callable[[str], int]) -> None:
        super().__init__()
        self._lookup = lookup

    def __missing__(self, oid: str) -> int:
        self[oid] = size = self._lookup(oid)
        return size


class PushingStore(ChunkedStore):
    """Pushes objects to the remote."""

    def push(self, paths: Sequence[str]) -> TransferStats:
        """Upload every object of ``paths`` the remote lacks, then confirm that every object
        is there (no pointer is committed for bytes that are not stored); manifests go last,
        once their files are confirmed: a manifest on the remote means its files are there.

        Only the objects this process just hashed can be new, so only they are asked for
        before the upload. The confirmation covers every object a manifest on the remote
        does not vouch for (this version's, or the one its last track replaced): it finds
        any older one the remote lost, which is then uploaded too. Re-uploading one changed
        file of 20 000 costs a few HEAD requests, not a listing of the remote."""
        self._manifests = dict(self.session.manifests)  # the ones this track built: not read back
        try:
            return self._push(paths)
        finally:
            self._manifests = None

    def reconfirm(self, paths: Sequence[str]) -> TransferStats:
        """After a gc overlapped the upload of ``paths`` (:mod:`cpv_core.workspace.gc_fence`): ask the
        store about every object, trusting no manifest (the gc may have removed files a
        manifest it did not see names), and send again whatever is missing."""
        self._manifests = {}
        try:
            return self._push(paths, vouch=False)
        finally:
            self._manifests = None

    def _push(self, paths: Sequence[str], *, vouch: bool = True) -> TransferStats:
        if self.session.early is not None:  # what they stored is found below like any stored object
            self.session.early.finish()
            self.session.early = None
        self.check_settings()
        pointers = {p: read_pointer(self.path, p) for p in paths}
        transport = self.transport
        sizes = _LocalSizes(self._local_size)
        sizes.update(self.chunked_sizes(paths))
        uploaded: list[str] = []

        def lacking(batch: list[str]) -> list[str]:
            stored = transport.sizes(batch) if batch else {}
            return [oid for oid in batch if stored.get(oid) != sizes[oid]]

        def put_all(batch: list[str], progress: Progress) -> None:
            self._put_batch(batch, progress, sizes)
            uploaded.extend(batch)

        with self.remote(f"upload {', '.join(paths)}"):
            self._settle_unverified()
            roots = {p: info.digest.removeprefix("md5:") for p, info in pointers.items()}
            # a manifest on the store vouches for its files: a directory whose manifest is
            # there has nothing to send, and its manifest is not even read
            # (not one with chunked files: their packs are confirmed, a gc may have taken one)
            dir_roots = list(
                dict.fromkeys(oid for p, oid in roots.items() if oid.endswith(".dir") and not self.workspace_entry_manifests(p))
            )
            stored = set(dir_roots) - set(lacking(dir_roots)) if vouch else set()
            oids = list(dict.fromkeys(oid for p in paths if roots[p] not in stored for oid in self.objects(p)))
            files = [oid for oid in oids if not oid.endswith(".dir")]
            manifests = [oid for oid in oids if oid.endswith(".dir")]
            vouched = (
                self._vouched_files([*manifests, *(self.session.previous[p] for p in paths if p in self.session.previous)])
                if vouch and files
                else set()
            )
            unvouched = [oid for oid in files if oid not in vouched]
            new = lacking([oid for oid in unvouched if oid in self.session.fresh])
            early, self.session.early_sent = self.session.early_sent, 0  # sent while the rest was hashed: counted, and timed from then
            with Progress(
                f"upload {', '.join(paths)}",
                early + sum(sizes[oid] for oid in new),
                self.ctx.progress,
                started=self.session.started if early else None,
            ) as progress:
                progress.update(early)
                put_all(new, progress)
                lost = lacking(unvouched)  # the confirmation: every file no stored manifest vouches for
                put_all(lost, progress)
                absent = lacking(lost)
                if not absent:  # manifests last, once all their files are confirmed
                    missing_manifests = lacking(manifests)
                    for oid in missing_manifests:
                        self._put(oid, progress.update)
                    uploaded.extend(missing_manifests)
                    absent = lacking(missing_manifests)
                sent = sum(sizes[oid] for oid in set(uploaded) if not oid.endswith(".dir")) + early
                kept = sum(info.size or 0 for info in pointers.values()) - sent
                progress.note = f"; {human_bytes(kept)} already stored" if kept > 0 else ""
        if absent:
            raise DVCError(
                f"{len(absent)} object(s) are not on {self.describe_remote()} after the upload (first: {absent[0]}); nothing was committed",
                fix="run the upload again; if it fails again, run `cpv verify --remote` and check the store",
            )
        return TransferStats(transferred=len(uploaded), skipped=len(oids) - len(uploaded))

    def _put_batch(self, batch: list[str], progress: Progress, sizes: dict[str, int]) -> None:
        """Send ``batch``: cache copies this track just wrote many at a time where the
        transport can (:class:`BulkPut`), the rest one by one on threads (more at once for
        small objects). Objects sent from workspace files are journaled until their stat
        check passed: a kill in between leaves them to the next push (:meth:`_settle_unverified`)."""
        transport = self.transport
        in_place = [oid for oid in batch if self._uploads_in_place(oid)]
        self._journal_unverified(add=in_place)
        each = batch
        if isinstance(transport, BulkPut) and bulk.parallel(len(batch)):
            ready = set(in_place)
            direct = [oid for oid in batch if oid in self.session.fresh and oid not in ready]
            left = set(transport.put_many([(oid, os.path.join(self._cache_root, object_relpath(oid))) for oid in direct], progress.update))
            handed = set(direct) - left
            each = [oid for oid in batch if oid not in handed]
        small = len(each) > 1 and sum(sizes[oid] for oid in each) < len(each) * SMALL_FILE_BYTES  # a round trip each, more in flight
        threads = transport.parallel_small if small else transport.parallel
        try:
            bulk.threaded(lambda oid: self._put(oid, progress.update), each, threads)
        finally:
            self._journal_unverified(remove=[oid for oid in in_place if oid in self._checked])

    def _local_size(self, oid: str) -> int:
        """Bytes of object ``oid`` here: its cache copy, else the workspace file it was hashed from."""
        size = self.session.cached.get(oid)
        if size is None:
            size = self._cached_size(oid)
        if size is not None:
            return size
        source = self._source(oid)
        if source is not None:
            return source[1].st_size
        return self._cached(oid).stat().st_size  # raises FileNotFoundError naming the object

    def _source(self, oid: str) -> tuple[str | Path, os.stat_result] | None:
        """The workspace file object ``oid`` can be sent from, and its stat: one this track
        hashed, else one its stat vouched for (found through the scan that vouched for it)."""
        known = self.session.sources.get(oid)
        if known is not None or not self.session.unread:
            return known
        if self.session.unread_index is None:
            self.session.unread_index = self._unread_index()
        path = self.session.unread_index.get(oid)
        if path is None:
            return None
        try:
            self.session.sources[oid] = (path, os.stat(path))  # not fresh: re-hashed before it is sent
        except OSError:
            return None
        return self.session.sources[oid]

    def _unread_index(self) -> dict[str, str]:
        """``{md5: path}`` of the files of directories tracked without reading them all."""
        index: dict[str, str] = {}
        for path, scan in self.session.unread.items():
            manifest = self._recorded_oid(path)
            if manifest is None or not manifest.endswith(".dir"):
                continue
            by_rel = {entry[0]: entry for entry in scan.files}
            for rel, md5 in self.load_manifest(manifest, path).items():
                entry = by_rel.get(rel)
                if entry is not None:
                    index.setdefault(md5, scan.path_of(entry))
        return index

    def _put(self, oid: str, on_bytes: OnBytes) -> None:
        """Upload object ``oid``: from the cache, or (no cache copy) from the workspace file.

        A cache object this process did not just hash from the user's files is
        checked first (a damaged one is evicted and reported, never stored). A
        workspace file is uploaded only while its stat is as when it was hashed;
        one that changed during the upload is taken off the remote again, so no
        object is ever stored under a hash its bytes do not have."""
        if self._uploads_in_place(oid):
            self._put_in_place(oid, on_bytes)
            return
        cached = self._cached(oid)
        if not self._has_cached(oid):  # a pack reused from a stored version, gone from the store since it was checked
            raise DVCError(
                f"object {oid} was removed from {self.describe_remote()} after this upload found it there (a gc?), and "
                "this machine has no copy; nothing was committed",
                fix="upload again: the next upload stores those bytes again",
            )
        if oid not in self.session.fresh:
            actual = hash_file(cached)
            if actual != oid.removesuffix(".dir"):
                self._evict(oid)
                raise DVCError(
                    f"the cached copy of {oid} is damaged (md5 {actual}); it was not uploaded",
                    fix="upload again: cpv re-reads your files into the cache",
                )
        self.transport.put(oid, cached, on_bytes)

    def _put_in_place(self, oid: str, on_bytes: OnBytes) -> None:
        src, hashed = self.session.sources[oid]
        src = Path(src)
        # a linked file of a data directory may live elsewhere: name it as it is then
        rel = src.relative_to(self.path).as_posix() if self.path in src.parents else visible(src)
        if oid not in self.session.fresh:  # known from the stat cache only: the bytes are checked before they are trusted
            hashed = settled_stat(src)  # taken before the read, so a change from here on shows
            actual = hash_file(src)
            if actual != oid:
                raise DVCError(f"{rel} no longer has the content it was hashed with; nothing was uploaded", fix="upload again")
        if not same_file_state(src, hashed):
            raise DVCError(f"{rel} changed after it was hashed; nothing was uploaded", fix="upload again once it is written")
        self.transport.put(oid, src, on_bytes)
        if not same_file_state(src, hashed):
            self.transport.delete(oid)
            raise DVCError(
                f"{rel} changed while it was uploaded (is a training job still writing it?); the partial object was removed "
                "and nothing was committed",
                fix="upload again once the file is complete (the Checkpointer uploads a snapshot instead)",
            )
        self._checked.add(oid)

    def _send_early(self, oid: str) -> None:
        """Send one just-hashed workspace file (see :mod:`cpv_plugins.dvc.early_uploads`): journaled
        and stat-checked exactly as the push's own sends are."""
        if self.transport.sizes([oid]).get(oid) == self._local_size(oid):
            return
        self._journal_unverified(add=[oid])
        self._put(oid, lambda n: None)
        with self._journal_lock:
            self.session.early_sent += self._local_size(oid)
        if oid in self._checked:
            self._journal_unverified(remove=[oid])

    def _stop_early_uploads(self) -> None:
        if self.session.early is not None:
            self.session.early.abandon()
            self.session.early = None

    def _uploads_in_place(self, oid: str) -> bool:
        """Whether object ``oid`` is sent from the workspace file it was hashed from (no cache copy)."""
        return oid not in self.session.cached and not self._has_cached(oid) and self._source(oid) is not None

    def _unverified_path(self) -> Path | None:
        return self.ctx.state_dir / "unverified-uploads" if self.ctx.state_dir is not None else None

    def _journal_unverified(self, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Record (or clear) objects sent from workspace files whose stat check has not passed
        yet: a kill in that window could leave bytes under a hash they do not have. Written
        once per batch, not per object (a directory may send 20 000)."""
        path = self._unverified_path()
        if path is None or not (add or remove):
            return
        with self._journal_lock:  # early sends record theirs from other threads
            oids = set(path.read_text(encoding="utf-8").split()) if path.is_file() and not path.is_symlink() else set()
            oids = (oids | set(add)) - set(remove)
            if oids:
                atomic_write_bytes(path, "\n".join(sorted(oids)).encode() + b"\n")
            else:
                path.unlink(missing_ok=True)

    def _settle_unverified(self) -> None:
        """Check what a killed upload left unverified (see :meth:`_journal_unverified`): an
        object whose bytes do not have its hash is removed from the remote, so the next push
        uploads it again instead of trusting it; one line says so."""
        path = self._unverified_path()
        if path is None or not path.is_file() or path.is_symlink():
            return
        # a kill may also have left a multipart upload on the store: abort those old enough
        # that no teammate's upload can still be writing them (gc's default grace)
        stale = self.abort_incomplete_uploads(time.time() - STALE_UPLOAD_SECONDS)
        if stale:
            logger.warning("aborted %d incomplete upload(s) an interrupted run left on %s", len(stale), self.describe_remote())
        for oid in path.read_text(encoding="utf-8").split():
            try:
                check_oid(oid, str(path))
            except ValidationError:
                continue  # not ours to act on
            actual = self.transport.md5(oid)
            if actual is not None and actual != oid.removesuffix(".dir"):
                self.transport.delete(oid)
                logger.warning("an upload killed before its check left %s on %s with other bytes; removed it", oid, self.describe_remote())
        path.unlink(missing_ok=True)

    def _vouched_files(self, manifests: Sequence[str]) -> set[str]:
        """The files vouched for by those of ``manifests`` the remote holds and this cache has.

        A manifest is uploaded only once all its files are confirmed on the remote, and
        ``cpv gc`` deletes manifests before files (:meth:`delete_objects`), so a manifest
        there means its files are there (DVC's rule too). One HEAD per manifest, instead
        of listing every object of the version."""
        local = [oid for oid in dict.fromkeys(manifests) if self._has_cached(oid)]
        if not local:
            return set()
        stored = self.transport.sizes(local)
        vouched: set[str] = set()
        for oid in local:
            if oid in stored:
                try:
                    vouched.update(self.manifest_objects(oid, "a manifest on the remote"))
                except CPVError:
                    continue  # a damaged cache copy vouches for nothing
        return vouched

    def objects_of(self, rev: str, path: str, pointer: bytes) -> list[str]:
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        oid = info.digest.removeprefix("md5:")
        where = f"{path} at {rev.removeprefix('refs/tags/')}"
        moid = self.chunk_manifest_oid(pointer, info)
        if moid is not None:  # the tensor layout: the manifest and its packs, not a whole file
            with self.remote(f"read the chunk manifest of {path}"):
                manifest = self.load_chunk_manifest(moid, oid, info.size or 0, where)
            return [moid, *sorted(set(manifest.pack_ids()))]
        if not oid.endswith(".dir"):
            index = self.chunk_manifest_oid(pointer, info, INDEX_META_KEY)
            return [oid, *([index] if index else [])]
        with self.remote(f"read the manifest of {path}"):
            files = self.load_manifest(oid, where)
            out = parse_pointer(pointer, info.pointer or self.pointer_path(path))
            entry_chunks = pointer_entry_chunks(out, where) if out else {}
            objects = [oid, *sorted(set(files.values()))]
            if not entry_chunks:
                return objects
            return self.with_entry_chunks(objects, entry_chunks, self.entry_manifests(entry_chunks, where))

    def vouched_by(self, oid: str) -> list[str]:
        """The files stored object ``oid`` vouches for: a manifest's entries (none for a file,
        or for a manifest that cannot be read back, which vouches for nothing to an upload either)."""
        if not oid.endswith(".dir"):
            return []
        try:
            return sorted(set(self.load_manifest(oid, "a manifest on the store").values()))
        except CPVError as exc:
            logger.warning("%s", exc.message)
            return []

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Multipart uploads under this model's prefix that were never completed."""
        with self.remote("list incomplete uploads"):
            return [IncompleteUpload(*upload) for upload in self.transport.incomplete_uploads()]

    def abort_incomplete_uploads(self, started_before: float) -> list[IncompleteUpload]:
        """Abort every incomplete upload started before ``started_before`` (POSIX time);
        returns them. A younger one may be a teammate's upload in flight."""
        stale = [u for u in self.incomplete_uploads() if u.started < started_before]
        if stale:
            with self.remote("abort incomplete uploads"):
                for upload in stale:
                    self.transport.abort_upload(upload.key, upload.upload_id)
        return stale

    def inventory(self) -> list[StoredObject]:
        self.check_settings()
        with self.remote("list the stored objects"):
            return [StoredObject(oid, size, modified) for oid, size, modified in self.transport.inventory()]

    def delete_objects(self, oids: Sequence[str]) -> None:
        """Delete manifests before files: a manifest on the remote vouches for its files
        (:meth:`push`), so a kill part-way leaves files without a manifest, never a
        manifest without its files."""
        self.check_settings()
        for oid in oids:
            check_oid(oid, "object to delete")
        with self.remote("delete objects"):
            for oid in sorted(oids, key=lambda oid: not oid.endswith(".dir")):
                self.transport.delete(oid)

"""Reading versions back: materialising from a pointer alone (every object
checked against its MD5 before it is placed, staged then renamed), checkout
and verification."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cpv_core import bulk
from cpv_core.errors import DVCError, ValidationError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_path, atomic_write_bytes, tree_size
from cpv_core.plugin.progress import Progress
from cpv_core.plugin.protocols import ByteRanges, TrackedArtifact
from cpv_core.trust import contained
from cpv_plugins.dvc.bulk_files import copy_objects
from cpv_plugins.dvc.cache import SMALL_FILE_BYTES
from cpv_plugins.dvc.chunked_store import ChunkedStore
from cpv_plugins.dvc.layout import (
    INDEX_META_KEY,
    manifest_bytes,
    object_relpath,
    parse_pointer,
    pointer_entry_chunks,
    pointer_entry_parts,
    pointer_part_digests,
    tracked_root,
)
from cpv_plugins.dvc.part_digests import PartDigests, PartMismatchError
from cpv_plugins.transports.base import LocalObjects, hash_file, regular_file_size

logger = logging.getLogger("cpv.storage")


@contextmanager
def staged(dest: Path, staging_root: Path | None = None) -> Iterator[Path]:
    """Yield a path in a staging directory (beside ``dest``, or under
    ``staging_root`` on the same file system); on success it replaces
    ``dest`` by renames only, on failure nothing is left at ``dest``.
    Staging directories of a killed earlier run are removed first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    root = staging_root or dest.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{dest.name}.*.cpv-tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".cpv-tmp", dir=root))
    try:
        target = staging / dest.name
        yield target
        if dest.is_dir() and not dest.is_symlink():
            os.replace(dest, staging / ".replaced")  # out of the way by a rename; removed with the staging directory
        os.replace(target, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class MaterializingStore(ChunkedStore):
    """Materialises and verifies stored versions."""

    # -- StorageBackend: materialize, manifest, verify, checkout ----------------------
    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        return self._materialize(rev, path, pointer, dest, None)

    def materialize_selected(self, rev: str, path: str, pointer: bytes, dest: Path, names: Sequence[str]) -> TrackedArtifact:
        """Only the entries ``names`` of directory ``path`` into ``dest`` (each verified as any download)."""
        return self._materialize(rev, path, pointer, dest, None, only=set(names))

    def _materialize(
        self, rev: str, path: str, pointer: bytes, dest: Path, staging_root: Path | None, *, only: set[str] | None = None
    ) -> TrackedArtifact:
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        with self.remote(f"download {path}"):
            files = self._files_of(info, path, rev)
            if only is not None:
                files = {rel: md5 for rel, md5 in files.items() if rel in only}
            nfiles = len(files)
            total = info.size if path == info.path and only is None else 0
            with staged(Path(dest), staging_root) as target, Progress(f"download {path}", total, self.ctx.progress) as progress:
                if "" not in files:
                    target.mkdir()
                parts = self._recorded_parts(pointer, info) if "" in files else None
                entry_parts = {} if "" in files else self._recorded_entry_parts(pointer, info)
                where = f"{path} at {rev.removeprefix('refs/tags/')}"
                moid = self.chunk_manifest_oid(pointer, info) if "" in files else None
                if moid is not None:  # the tensor layout: reassembled from its chunks
                    manifest = self.load_chunk_manifest(moid, files[""], info.size or 0, where)
                    self.place_chunked(manifest, target, progress.update, where)
                    files = {}
                entry_chunks = self._recorded_entry_chunks(pointer, info) if files and "" not in files else {}

                def place(item: tuple[str, str]) -> None:
                    rel, md5 = item
                    out = contained(target, rel, where) if rel else target  # checked where it is written
                    out.parent.mkdir(parents=True, exist_ok=True)
                    if md5 in entry_chunks:  # a directory's file in the tensor layout
                        self.place_chunked(
                            self.load_chunk_manifest(entry_chunks[md5], md5, None, f"{where}: {rel}"), out, progress.update, where
                        )
                    else:
                        self._place_object(
                            md5, out, progress.update, single=len(files) == 1, parts=parts if not rel else entry_parts.get(md5)
                        )
                    crash_point("download.object-placed")

                if "" not in files and bulk.parallel(len(files)):
                    files = self._copy_local_objects(files, target, where, progress.update)
                # many small files: several requests at once (a file above the multipart size
                # is already fetched in parallel parts, so those go one at a time)
                workers = self.transport.parallel_small if len(files) > 1 and info.size < len(files) * SMALL_FILE_BYTES else 1
                if workers == 1 and len(files) > 1 and entry_parts:
                    workers = 2  # shards checked by their MD5 in order: one's hashing overlaps the next one's download
                if workers > 1:
                    bulk.threaded(place, list(files.items()), workers)
                else:
                    for item in files.items():
                        place(item)
        size = tree_size(Path(dest))[0]
        return TrackedArtifact(path=path, digest=info.digest, size=size, nfiles=nfiles, pointer=info.pointer)

    def _copy_local_objects(self, files: dict[str, str], target: Path, where: str, on_bytes: Callable[[int], Any]) -> dict[str, str]:
        """Copy the small files of a version whose objects are on this machine (the cache, a
        local store) into the new directory ``target`` on every core, each checked against
        its MD5 as it is copied; the files left for the one-by-one path (elsewhere, large,
        or damaged here: that path evicts and fetches them again)."""
        local = self.transport if isinstance(self.transport, LocalObjects) else None
        pairs: list[tuple[str, str]] = []
        expected: list[tuple[str, str]] = []
        left: dict[str, str] = {}
        folders: dict[str, str] = {}
        for rel, md5 in files.items():
            size = self._cached_size(md5)
            src = os.path.join(self._cache_root, object_relpath(md5)) if size is not None else None
            if src is None and local is not None:
                src = local.object_path(md5)
                size = regular_file_size(src)
            if src is None or size is None or size >= SMALL_FILE_BYTES:
                left[rel] = md5
                continue
            folder, _, name = rel.rpartition("/")
            if folder not in folders:  # checked where it is written: no link on the way (the rest are files cpv creates)
                folders[folder] = str(contained(target, folder, where)) if folder else str(target)
                os.makedirs(folders[folder], exist_ok=True)
            pairs.append((src, os.path.join(folders[folder], name)))
            expected.append((rel, md5))
        results = bulk.map_chunks(copy_objects, pairs, 0o666, on_done=lambda chunk, _: on_bytes(sum(os.path.getsize(d) for _, d in chunk)))
        got = [md5 for chunk in results for md5 in chunk]
        for (rel, md5), actual in zip(expected, got, strict=True):
            if actual != md5:
                left[rel] = md5
        return left

    def _recorded_entry_chunks(self, pointer: bytes, info: TrackedArtifact) -> dict[str, str]:
        """The chunk manifests a directory's pointer names for its chunked files, by MD5."""
        where = info.pointer or self.pointer_path(info.path)
        out = parse_pointer(pointer, where)
        return pointer_entry_chunks(out, where) if out else {}

    def _recorded_entry_parts(self, pointer: bytes, info: TrackedArtifact) -> dict[str, PartDigests]:
        """The part digests a directory's pointer records for its large entries, by MD5."""
        out = parse_pointer(pointer, info.pointer or self.pointer_path(info.path))
        return pointer_entry_parts(out) if out else {}

    def _recorded_parts(self, pointer: bytes, info: TrackedArtifact) -> PartDigests | None:
        """The part digests a single file's pointer records, if well-formed (else None: the
        download checks the whole MD5)."""
        out = parse_pointer(pointer, info.pointer or self.pointer_path(info.path))
        return pointer_part_digests(out, info.size) if out else None

    def _place_object(self, md5: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool, parts: PartDigests | None = None) -> None:
        """Write object ``md5`` to ``out`` and check it: from the cache when it holds a good
        copy (a damaged one is evicted), else from the remote, which checks ``parts``
        (the version's part digests) when given, else the whole MD5."""
        actual = hash_file(self._cached(md5), out, on_bytes) if self._has_cached(md5) else None
        if actual is not None and actual != md5:
            logger.warning("the cached copy of %s is damaged; fetching it from %s", md5, self.describe_remote())
            self._evict(md5)
        if actual != md5:
            try:
                actual = self.transport.get(md5, out, on_bytes, single=single, parts=parts)
            except FileNotFoundError:
                actual = "missing"
            except PartMismatchError as exc:
                raise DVCError(
                    f"downloaded file {out.name} is corrupt: {exc} (object {object_relpath(md5)} in "
                    f"{self.describe_remote()}); nothing was placed",
                    fix="the stored copy is damaged: re-upload that version from a machine that still has it",
                ) from None
        if actual != md5:
            raise DVCError(
                f"downloaded file {out.name} is corrupt or truncated: expected md5 {md5}, got {actual} "
                f"(object {object_relpath(md5)} in {self.describe_remote()}); nothing was placed",
                fix="the stored copy is damaged: re-upload that version from a machine that still has it",
            )

    @contextmanager
    def open_ranges(self, rev: str, path: str, pointer: bytes) -> Iterator[ByteRanges]:
        """A chunked file's ranges from only the chunks that hold them; a file stored whole
        is downloaded (verified) and read (:class:`~cpv_core.plugin.bases.StorageBackendBase`)."""
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        moid = None
        if path == info.path:  # a chunked file's manifest, else a whole file's tensor index: both read verified ranges
            moid = self.chunk_manifest_oid(pointer, info) or self.chunk_manifest_oid(pointer, info, INDEX_META_KEY)
        if moid is None:
            with super().open_ranges(rev, path, pointer) as whole:
                yield whole
            return
        where = f"{path} at {rev.removeprefix('refs/tags/')}"
        with self.remote(f"read {path}"):
            manifest = self.load_chunk_manifest(moid, info.digest.removeprefix("md5:"), info.size or 0, where)
            yield self.chunk_ranges(manifest, where)

    def export_dvc(self, rev: str, path: str, pointer: bytes, dest: Path) -> int:
        """Every object of ``path`` at ``rev`` as DVC stores it, under ``dest`` (a chunked file
        reassembled whole): each written verified, under a temporary name, then renamed."""
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        oid = info.digest.removeprefix("md5:")
        where = f"{path} at {rev.removeprefix('refs/tags/')}"
        written = 0
        with self.remote(f"export {path}"):
            files = {"": oid} if not oid.endswith(".dir") else dict(self.load_manifest(oid, where))
            moid = self.chunk_manifest_oid(pointer, info) if "" in files else None
            chunked = {oid: moid} if moid is not None else self._recorded_entry_chunks(pointer, info)
            for md5 in dict.fromkeys(files.values()):
                final = dest / object_relpath(md5)
                if regular_file_size(str(final)) is not None and hash_file(final) == md5:
                    continue
                final.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(final, mode=0o444) as tmp:
                    if md5 in chunked:
                        size = info.size or 0 if moid is not None else None
                        self.place_chunked(self.load_chunk_manifest(chunked[md5], md5, size, where), tmp, lambda n: None, where)
                    else:
                        self._place_object(md5, tmp, lambda n: None, single=len(files) == 1)
                written += 1
            if oid.endswith(".dir"):
                raw, _ = manifest_bytes(files)
                atomic_write_bytes(dest / object_relpath(oid), raw, mode=0o444)
                written += 1
        return written

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        self.check_settings()
        info = self.describe_pointer(tracked_root(path, pointer), pointer)
        if info is None:
            return [f"{path}: not tracked at {rev}"]
        moid = self.chunk_manifest_oid(pointer, info)
        if not remote:
            return self._verify(info, path, rev, remote=False, chunks=moid, entry_chunks=self._recorded_entry_chunks(pointer, info))
        with self.remote(f"read {path}"):
            return self._verify(info, path, rev, remote=True, chunks=moid, entry_chunks=self._recorded_entry_chunks(pointer, info))

    def _verify(
        self,
        info: TrackedArtifact,
        path: str,
        rev: str,
        *,
        remote: bool,
        chunks: str | None = None,
        entry_chunks: dict[str, str] | None = None,
    ) -> list[str]:
        oid = info.digest.removeprefix("md5:")
        where = "remote" if remote else "local cache"
        self.last_verify_remote_checked = 0
        expected: dict[str, str] = {path: oid}
        if chunks is not None:  # the tensor layout: the manifest and every pack, each against its MD5
            try:
                packs = self.load_chunk_manifest(chunks, oid, info.size or 0, f"{path} at {rev.removeprefix('refs/tags/')}").pack_ids()
            except (DVCError, ValidationError) as exc:
                return [f"{path} (chunk manifest {chunks}): {exc.message}"]
            expected = {f"{path} (chunk manifest)": chunks}
            expected.update({f"{path} (pack {i + 1} of {len(packs)})": md5 for i, md5 in enumerate(packs)})
        elif oid.endswith(".dir"):
            try:
                manifest = self.load_manifest(oid, f"{path} at {rev.removeprefix('refs/tags/')}", remote_only=remote)
            except (DVCError, ValidationError) as exc:
                return [f"{path} (.dir manifest {oid}): {exc.message}"]
            expected = {f"{path}/{rel}": md5 for rel, md5 in manifest.items()}
            if entry_chunks:  # the tensor layout: a chunked file is its manifest and packs
                try:
                    packed = self.entry_manifests(entry_chunks, f"{path} at {rev.removeprefix('refs/tags/')}")
                except (DVCError, ValidationError) as exc:
                    return [f"{path}: {exc.message}"]
                for name, md5 in list(expected.items()):
                    if md5 in entry_chunks:
                        del expected[name]
                        expected[f"{name} (chunk manifest)"] = entry_chunks[md5]
                        expected.update({f"{name} (pack {i + 1})": pack for i, pack in enumerate(packed[md5].pack_ids())})
        problems: list[str] = []
        uncached: dict[str, str] = {}
        if (
            remote and not oid.endswith(".dir") and chunks is None
        ):  # the pointer's size is data too: a smaller one would make a download stop short
            stored = self.transport.sizes([oid]).get(oid)
            if stored is not None and stored != info.size:
                problems.append(
                    f"{path}: corrupt or truncated: its pointer records {info.size} bytes but the stored object {object_relpath(oid)} has {stored}"
                )
        for name, md5 in expected.items():
            try:
                if remote:
                    actual = self.transport.md5(md5)
                elif self._has_cached(md5) or self._cached(md5).is_symlink():
                    actual = hash_file(self._cached(md5))
                else:
                    actual = self._workspace_copy_md5(name, md5)
            except ValidationError as exc:
                problems.append(f"{name}: {exc.message}")
                continue
            if actual is None and not remote:
                uncached[name] = md5  # not cached here is not damage: the remote copy is checked instead
            elif actual is None:
                problems.append(f"{name}: missing in the {where} (md5 {md5})")
            elif actual != md5:
                problems.append(f"{name}: corrupt in the {where} (object {object_relpath(md5)}: md5 {actual})")
        if uncached:
            with self.remote(f"check {len(uncached)} file(s) not cached here"):
                for name, md5 in uncached.items():
                    actual = self.transport.md5(md5)
                    if actual is None:
                        problems.append(f"{name}: neither cached here nor on the remote (md5 {md5})")
                    elif actual != md5:
                        problems.append(f"{name}: not cached here, and corrupt on the remote (object {object_relpath(md5)}: md5 {actual})")
            self.last_verify_remote_checked = len(uncached)
        return problems

    def _workspace_copy_md5(self, name: str, md5: str) -> str | None:
        """Without a cache copy, the local copy of an object is the workspace file it was
        uploaded from: its MD5 when the file at ``name`` is that object, else None (missing)."""
        if self.keeps_cache_copy():
            return None
        try:
            candidate = contained(self.path, name, "workspace")
        except ValidationError:
            return None
        if not candidate.is_file() or candidate.is_symlink():
            return None
        actual = hash_file(candidate)
        return actual if actual == md5 else None

    def checkout(self, paths: Sequence[str]) -> None:
        """Place the content each pointer in the workspace names, verified, replacing the current files."""
        for p in paths:
            dest = contained(self.path, p, "workspace")
            pointer = (self.path / self.pointer_path(p)).read_bytes()
            staging_root = self.ctx.state_dir / "new" if self.ctx.state_dir is not None else None
            self._materialize("HEAD", p, pointer, dest, staging_root)

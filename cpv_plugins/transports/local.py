"""How the DVC-format engine reaches a remote: a small transport per kind of store.

The engine (:class:`cpv_plugins.dvc.engine.DvcStorage`) decides *what* moves
(which objects a version needs, manifests last, every byte's hash checked);
a transport only moves objects, named by their DVC object id, to and from one
remote root laid out as DVC lays it out (:func:`object_relpath`). Two ship
with cpv: :class:`LocalDirTransport` here and the S3 one in
:mod:`cpv_plugins.transports.s3`; a store DVC can read is one more class.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from cpv_core import bulk
from cpv_core.faults import crash_point
from cpv_core.trust import MAX_MANIFEST_BYTES, open_regular
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.dvc.part_digests import PartDigests
from cpv_plugins.transports.base import BulkPut, LocalObjects, OnBytes, Transport, TransportBase, hash_file, regular_file_size


def link_read_only(src: Path, dest: Path) -> bool:
    """Hard-link ``src`` at ``dest`` if it is a regular file nobody may write
    (a cache object: never a user's file, which a training script must be able
    to overwrite in place); False when it is not, or the file system refuses
    (another device, no hard links), and the caller copies instead."""
    try:
        st = os.lstat(src)
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o222:
            return False
        os.link(src, dest, follow_symlinks=False)
    except OSError:
        return False
    return True


def link_objects(pairs: Sequence[tuple[str, str]]) -> tuple[list[int], int]:
    """Hard-link each ``(read-only source, final object path)`` (a worker's chunk): the indexes
    of the pairs not linked (see :func:`link_read_only`; an existing object is left to the
    caller) and the bytes linked."""
    failed = []
    linked = 0
    made: set[str] = set()
    for i, (src, dest) in enumerate(pairs):
        folder = os.path.dirname(dest)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        if link_read_only(Path(src), Path(dest)):
            linked += os.lstat(dest).st_size
        else:
            failed.append(i)
    return failed, linked


class LocalDirTransport(TransportBase):
    """Objects in a directory on this machine (or a shared file system).

    A put writes a temporary file beside the object and renames it; the
    temporary's name is first recorded in ``journal`` (a private file of the
    workspace), so the partial copy of a killed run is removed by the next
    push instead of lingering in the store.
    """

    parallel = 1  # a local disk gains nothing from concurrent copies
    store_label = "local store"
    failure_fix = "check that the directory exists and is writable (local.root in `cpv config show`)"

    def __init__(self, root: Path, journal: Path | None = None, *, link: bool = False) -> None:
        self.root = root
        self.journal = journal
        #: store a read-only source (a cache object) as a hard link to it when the file
        #: system allows: one copy on disk instead of two
        self.link = link
        self._cleaned = False

    def describe(self) -> str:
        return str(self.root)

    def _object(self, oid: str) -> Path:
        return self.root / object_relpath(oid)

    def _remove_leftovers(self) -> None:
        """Remove the partial copies a killed put left (recorded in the journal), once per
        instance, before its first put: only a pushing process, which holds the workspace
        lock, does it, so a concurrent reader never removes a copy in flight."""
        journal = self.journal
        self._cleaned = True
        if journal is None or not journal.is_file() or journal.is_symlink():
            return
        for line in journal.read_text(encoding="utf-8").splitlines():
            leftover = Path(line)
            if self.root in leftover.parents and leftover.name.endswith(".cpv-tmp") and not leftover.is_symlink():
                leftover.unlink(missing_ok=True)
        journal.unlink()

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        # one lstat per object on a plain string path: 20 000 objects are asked for twice per push
        root = str(self.root)
        found = {}
        for oid in oids:
            size = regular_file_size(os.path.join(root, object_relpath(oid)))
            if size is not None:
                found[oid] = size
        return found

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        if not self._cleaned:
            self._remove_leftovers()
        final = self._object(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.cpv-tmp"
        if self.journal is not None:  # recorded first: a killed run's partial copy is removed by the next push
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a", encoding="utf-8") as handle:
                handle.write(f"{tmp}\n")
        try:
            if not (self.link and link_read_only(src, tmp)):
                hash_file(src, tmp, on_bytes)
                crash_point("upload.remote-partial")
                os.chmod(tmp, 0o444)
            else:
                on_bytes(tmp.stat().st_size)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def object_path(self, oid: str) -> str:
        return os.path.join(self.root, object_relpath(oid))

    def put_many(self, items: Sequence[tuple[str, str]], on_bytes: OnBytes) -> list[str]:
        """Hard-link many read-only cache objects into the store at once (on every core when
        there are many; a link is made under the object's final name in one step, so there
        is no partial copy to journal); the ids left for :meth:`put` (linking off, another
        file system, an object already there that may need replacing)."""
        if not self.link:
            return [oid for oid, _ in items]
        root = str(self.root)
        pairs = [(src, os.path.join(root, object_relpath(oid))) for oid, src in items]
        left: list[str] = []

        def done(chunk: Sequence[tuple[str, str]], result: tuple[list[int], int]) -> None:
            on_bytes(result[1])
            crash_point("upload.chunk-stored")  # the workers are still linking the next chunks

        results = bulk.map_chunks(link_objects, pairs, on_done=done)
        for chunk, (failed, _) in zip(bulk.chunks(items), results, strict=True):
            left.extend(chunk[i][0] for i in failed)
        return left

    def _existing(self, oid: str) -> Path:
        path = self._object(oid)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(str(path))
        return path

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        return hash_file(self._existing(oid), out, on_bytes)  # a local copy: the whole MD5 is as quick

    def open_object(self, oid: str) -> BinaryIO:
        return open_regular(self._existing(oid))

    def read(self, oid: str) -> bytes:
        with open_regular(self._existing(oid)) as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)

    def read_range(self, oid: str, start: int, end: int) -> bytes:
        with open_regular(self._existing(oid)) as handle:
            handle.seek(start)
            return handle.read(end - start)

    def md5(self, oid: str) -> str | None:
        try:
            return hash_file(self._existing(oid))
        except FileNotFoundError:
            return None

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        base = self.root / OBJECTS_DIR
        if not base.is_dir():
            return
        for path in sorted(base.glob("??/*")):
            oid = oid_from_relpath(path.relative_to(self.root).as_posix())
            if oid is not None and path.is_file() and not path.is_symlink():
                st = path.stat()
                yield oid, st.st_size, st.st_mtime

    def delete(self, oid: str) -> None:
        path = self._object(oid)
        if path.is_file() or path.is_symlink():
            path.unlink()


__all__ = [
    "BulkPut",
    "LocalDirTransport",
    "LocalObjects",
    "OnBytes",
    "Transport",
    "TransportBase",
    "hash_file",
    "link_read_only",
    "regular_file_size",
]

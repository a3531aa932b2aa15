"""How the DVC-format engine reaches a remote: a small transport per kind of store.

The engine (:class:`cpv_plugins.dvc_storage.DvcStorage`) decides *what* moves
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from cpv_core.errors import CPVError, StorageError
from cpv_core.faults import crash_point
from cpv_core.paths import md5_stream
from cpv_core.trust import MAX_MANIFEST_BYTES, open_regular
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.dvc.part_digests import PartDigests

OnBytes = Callable[[int], Any]


class Transport(Protocol):
    """Objects in one remote root. Every method raises ``FileNotFoundError`` for a
    missing object where it says so; other failures are mapped to cpv errors
    inside :meth:`session`."""

    #: how many objects :meth:`put` may be given at once from different threads
    parallel: int

    def describe(self) -> str:
        """Where the objects are (for plans and errors)."""

    def prepare(self) -> None:
        """A hint that a :meth:`session` follows soon: a transport may start its
        reachability check now, in the background (a no-op where there is none)."""

    def check_prepared(self) -> None:
        """Raise the error of the check :meth:`prepare` started if it has already
        failed (so an upload stops hashing at once); otherwise nothing, never waiting."""

    def session(self, action: str) -> AbstractContextManager[None]:
        """Context for a run of calls: checks the store is reachable first and turns
        the store's own exceptions into one-line cpv errors naming ``action``."""

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """The size of every one of ``oids`` the remote holds (absent ones are left out)."""

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        """Store the file ``src`` as object ``oid``; it appears complete or not at all."""

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        """Write object ``oid`` to ``out`` and return the MD5 of what was written
        (``single``: the only object of this download, worth parallel ranged reads).
        With ``parts`` (the version's part digests) a transport may also check each part
        as it arrives, raising :class:`~cpv_plugins.dvc.part_digests.PartMismatchError` for one
        that does not match or for an object whose length is not what they cover; it
        still returns the whole file's MD5 (a parts list never vouches for other bytes).
        ``FileNotFoundError`` when absent."""

    def read(self, oid: str) -> bytes:
        """The bytes of a small object (a manifest), at most ``MAX_MANIFEST_BYTES + 1``.
        ``FileNotFoundError`` when absent."""

    def md5(self, oid: str) -> str | None:
        """The MD5 of the stored object's bytes, or None when it is absent."""

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        """``(object id, size, POSIX time written)`` of every object stored under this root."""

    def delete(self, oid: str) -> None:
        """Remove object ``oid``; absent is not an error."""

    def incomplete_uploads(self) -> list[tuple[str, str, float, int]]:
        """``(key, upload id, started, bytes stored)`` of uploads under this root the store
        holds parts of, never completed (none for a store that writes whole files)."""

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort one of :meth:`incomplete_uploads` (its parts are freed)."""


def hash_file(path: Path, out: Path | None = None, on_bytes: OnBytes | None = None) -> str:
    """MD5 of ``path`` (a regular file, never a FIFO or link), copying it to ``out`` as it is read."""
    with open_regular(path) as reader:
        if out is None:
            return md5_stream(reader, None, on_bytes)
        with open(out, "wb") as writer:
            return md5_stream(reader, writer, on_bytes)


def regular_file_size(path: str) -> int | None:
    """The size of ``path`` if it is a regular file (never following a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


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


class LocalDirTransport:
    """Objects in a directory on this machine (or a shared file system).

    A put writes a temporary file beside the object and renames it; the
    temporary's name is first recorded in ``journal`` (a private file of the
    workspace), so the partial copy of a killed run is removed by the next
    push instead of lingering in the store.
    """

    parallel = 1  # a local disk gains nothing from concurrent copies

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

    def prepare(self) -> None:
        """Nothing to check ahead: a local directory needs no connection."""

    def check_prepared(self) -> None:
        """Nothing was started by :meth:`prepare`."""

    @contextmanager
    def session(self, action: str) -> Iterator[None]:
        """No reachability check is needed; a failing file operation becomes one line."""
        try:
            yield
        except (FileNotFoundError, CPVError):
            raise  # a missing object is the engine's to report
        except OSError as exc:
            raise StorageError(
                f"the local store {self.root} could not {action}: {exc.strerror or type(exc).__name__} ({exc.filename or self.root})",
                fix="check that the directory exists and is writable (local.root in `cpv config show`)",
            ) from None

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

    def _existing(self, oid: str) -> Path:
        path = self._object(oid)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(str(path))
        return path

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        return hash_file(self._existing(oid), out, on_bytes)  # a local copy: the whole MD5 is as quick

    def read(self, oid: str) -> bytes:
        with open_regular(self._existing(oid)) as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)

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

    def incomplete_uploads(self) -> list[tuple[str, str, float, int]]:
        """None: an object appears by one rename, whole or not at all (leftover temp files
        are the journal's, removed by the next push)."""
        return []

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Nothing to abort (see :meth:`incomplete_uploads`)."""

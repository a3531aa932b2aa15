"""The seam for a new object store: a transport moves objects, named by their DVC
object id, to and from one remote root; the DVC-format engine
(:class:`cpv_plugins.dvc.engine.DvcStorage`) decides *what* moves (which objects a
version needs, manifests last, every byte's hash checked) and gives every
transport the stat cache, part digests, early uploads, verification and crash
journals.

Declared stable for storage authors (docs/plugins.md). A new store subclasses
:class:`TransportBase` and writes six methods (``describe``, ``sizes``, ``put``,
``open_object``, ``inventory``, ``delete``); the rest have defaults a store with
more to offer (ranged reads, server-side hashes, multipart uploads) overrides.
"""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from cpv_core.errors import CPVError, StorageError
from cpv_core.paths import md5_stream
from cpv_core.trust import MAX_MANIFEST_BYTES, open_regular
from cpv_plugins.dvc.part_digests import PartDigests

OnBytes = Callable[[int], Any]


class Transport(Protocol):
    """Objects in one remote root. Every method raises ``FileNotFoundError`` for a
    missing object where it says so; other failures are mapped to cpv errors
    inside :meth:`session`."""

    #: how many objects :meth:`put` may be given at once from different threads
    parallel: int
    #: how many small objects (a data set's files, a tensor layout's pack ranges) may be
    #: moved at once: each costs a round trip more than bandwidth, so more go in flight
    parallel_small: int

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

    def read_range(self, oid: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of object ``oid`` (fewer when it is shorter: the caller
        checks); ``FileNotFoundError`` when absent. The tensor layout reads its packs this way."""

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


@runtime_checkable
class BulkPut(Protocol):
    """A transport that can store many small cache objects in one go (the local store:
    hard links made on every core), faster than one :meth:`Transport.put` each."""

    def put_many(self, items: Sequence[tuple[str, str]], on_bytes: OnBytes) -> list[str]:
        """Store each ``(object id, read-only cache file)``; the ids it left for :meth:`Transport.put`."""
        ...


@runtime_checkable
class LocalObjects(Protocol):
    """A transport whose objects are files on this machine: a download of many small files
    copies them on every core (each checked against its MD5) instead of one ``get`` each."""

    def object_path(self, oid: str) -> str:
        """Where object ``oid`` is (it may be absent)."""
        ...


class TransportBase(ABC):
    """A :class:`Transport` from six methods. Objects are read through
    :meth:`open_object`; :meth:`get`, :meth:`read` and :meth:`md5` are built on it,
    and a failing operation of the store's own (an ``OSError``) becomes one
    :class:`StorageError` line naming the action."""

    #: how many objects :meth:`put` may be given at once from different threads
    parallel = 1
    #: how many small objects may be moved at once (see :class:`Transport`)
    parallel_small = 1
    #: what the store is called in an error line, and what to do when it fails
    store_label = "store"
    failure_fix = "check that the store is reachable and writable"

    @abstractmethod
    def describe(self) -> str:
        """Where the objects are (for plans and errors)."""

    @abstractmethod
    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        """The size of every one of ``oids`` the store holds (absent ones are left out)."""

    @abstractmethod
    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        """Store the file ``src`` as object ``oid``; it appears complete or not at all."""

    @abstractmethod
    def open_object(self, oid: str) -> BinaryIO:
        """A binary reader of object ``oid``'s bytes; ``FileNotFoundError`` when absent."""

    @abstractmethod
    def inventory(self) -> Iterator[tuple[str, int, float]]:
        """``(object id, size, POSIX time written)`` of every object stored."""

    @abstractmethod
    def delete(self, oid: str) -> None:
        """Remove object ``oid``; absent is not an error."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """No reachability check to start ahead (override for a network store)."""

    def check_prepared(self) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Nothing was started by :meth:`prepare`."""

    @contextmanager
    def session(self, action: str) -> Iterator[None]:
        """A failing operation of the store becomes one line naming ``action``."""
        try:
            yield
        except (FileNotFoundError, CPVError):
            raise  # a missing object is the engine's to report
        except OSError as exc:
            where = exc.filename or self.describe()
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)  # the directory is fine: the disk (or quota) is not
            raise StorageError(
                f"the {self.store_label} {self.describe()} could not {action}: {exc.strerror or type(exc).__name__} ({where})",
                fix="free space on that file system (or move the store: `cpv config show`), then run the command again"
                if full
                else self.failure_fix,
            ) from None

    def get(self, oid: str, out: Path, on_bytes: OnBytes, *, single: bool, parts: PartDigests | None = None) -> str:
        """Copy the object to ``out`` as it is read, hashing it (``parts`` unused: the
        whole MD5 is the check)."""
        with self.open_object(oid) as reader, open(out, "wb") as writer:
            return md5_stream(reader, writer, on_bytes)

    def read(self, oid: str) -> bytes:
        with self.open_object(oid) as reader:
            return reader.read(MAX_MANIFEST_BYTES + 1)

    def read_range(self, oid: str, start: int, end: int) -> bytes:
        """Through :meth:`open_object`: a seek where the reader can, else the bytes before
        ``start`` read and dropped (a store with ranged reads overrides this)."""
        with self.open_object(oid) as reader:
            if reader.seekable():
                reader.seek(start)
            else:
                left = start
                while left > 0:
                    skipped = reader.read(min(left, 1 << 20))
                    if not skipped:
                        return b""
                    left -= len(skipped)
            return reader.read(end - start)

    def md5(self, oid: str) -> str | None:
        try:
            with self.open_object(oid) as reader:
                return md5_stream(reader, None, None)
        except FileNotFoundError:
            return None

    def incomplete_uploads(self) -> list[tuple[str, str, float, int]]:
        """None: :meth:`put` stores whole objects."""
        return []

    def abort_upload(self, key: str, upload_id: str) -> None:  # noqa: B027 - an optional hook, a no-op by default
        """Nothing to abort (see :meth:`incomplete_uploads`)."""

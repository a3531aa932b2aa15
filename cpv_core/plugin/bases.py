"""Base classes for backend authors: the protocol methods that have a sensible
default, implemented once, so a new backend writes only what is its own.

A backend does not have to inherit from these (the protocols in
:mod:`cpv_core.plugin.protocols` are structural), but one that does gets:

* :class:`StorageBackendBase` - ``init`` (nothing to prepare),
  ``describe_remote`` (the backend's name), ``committed_files`` (none),
  ``commit_paths`` (the pointers, plus a ``/name`` line in the ``.gitignore``
  beside each target so git never stores the content itself), ``changes``
  (unknown: ``cpv status`` shows the state only), ``checkout``
  (materialise each target from its workspace pointer, in place),
  ``objects_of`` / ``inventory`` / ``delete_objects`` (a clear "not supported"
  error: ``cpv gc`` and ``cpv du`` need them) and
  ``verify`` (materialise into a scratch directory: every byte is read back
  and checked by ``materialize`` itself). Left to write (abstract, so a
  backend that forgets one fails when it is selected, naming its plugin):
  ``pointer_path``, ``track``, ``push``, ``describe_pointer``,
  ``materialize``, ``manifest``, ``status``.
* :class:`HostingBackendBase` - ``validate`` (no checks of its own).
"""

from __future__ import annotations

import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path, PurePosixPath
from typing import Any

from cpv_core.errors import CPVError, StorageError
from cpv_core.paths import atomic_write_bytes
from cpv_core.plugin.protocols import (
    BackendContext,
    ByteRanges,
    CheckResult,
    IncompleteUpload,
    StoredObject,
    TrackedArtifact,
    TransferStats,
)
from cpv_core.trust import contained


class FileRanges:
    """:class:`~cpv_core.plugin.protocols.ByteRanges` of a file on this machine (already verified)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        #: the whole file was transferred to serve any read
        self.fetched = self.size

    def read(self, start: int, end: int) -> bytes:
        if not 0 <= start <= end <= self.size:
            raise StorageError(f"bytes {start}-{end} are outside the file's {self.size}", fix="check the header that named them")
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def read_many(self, spans: Iterable[tuple[int, int]]) -> list[bytes]:
        return [self.read(s, e) for s, e in spans]


class StorageBackendBase(ABC):
    """Defaults for :class:`~cpv_core.plugin.protocols.StorageBackend` (see the module docstring)."""

    name = "storage"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.workspace = Path(ctx.workspace)

    # -- to implement ---------------------------------------------------------------
    @abstractmethod
    def pointer_path(self, path: str) -> str:
        raise NotImplementedError

    @abstractmethod
    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        raise NotImplementedError

    @abstractmethod
    def push(self, paths: Sequence[str]) -> TransferStats:
        raise NotImplementedError

    @abstractmethod
    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        raise NotImplementedError

    @abstractmethod
    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        raise NotImplementedError

    @abstractmethod
    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        raise NotImplementedError

    @abstractmethod
    def status(self, paths: Sequence[str]) -> dict[str, str]:
        raise NotImplementedError

    # -- defaults ---------------------------------------------------------------------
    def init(self) -> None:  # noqa: B027 - a default, deliberately empty: most stores need no preparation
        """Nothing to prepare."""

    def describe_remote(self) -> str:
        return self.name

    def object_url(self, oid: str) -> str:
        """The remote's location and the object id (``{describe_remote()}#{oid}``);
        override it when the store has a URL per object."""
        return f"{self.describe_remote()}#{oid}"

    def committed_files(self) -> list[str]:
        return []

    def commit_paths(self, paths: Sequence[str]) -> list[str]:
        files = []
        for p in paths:
            files.append(self.pointer_path(p))
            ignore = PurePosixPath(p).parent / ".gitignore"
            entry = f"/{PurePosixPath(p).name}"
            gitignore = contained(self.workspace, str(ignore), "workspace")
            lines = gitignore.read_text().splitlines() if gitignore.is_file() else []
            if entry not in lines:
                atomic_write_bytes(gitignore, ("\n".join([*lines, entry]) + "\n").encode(), mode=0o644)
            files.append(str(ignore))
        return sorted(set(files))

    def checkout(self, paths: Sequence[str]) -> None:
        for p in paths:
            dest = contained(self.workspace, p, "workspace")
            pointer = contained(self.workspace, self.pointer_path(p), "workspace").read_bytes()
            self.materialize("HEAD", p, pointer, dest)

    def changes(self, path: str) -> dict[str, str]:
        """Which files differ: unknown by default (``cpv status`` then shows the state only)."""
        return {}

    def objects_of(self, rev: str, path: str, pointer: bytes) -> list[str]:
        raise StorageError(
            f"the {self.name} storage backend cannot tell which objects a version uses: cpv gc and du need it",
            fix="update the storage plugin, or remove old content with the store's own tools",
        )

    def inventory(self) -> list[StoredObject]:
        raise StorageError(
            f"the {self.name} storage backend cannot list its objects: cpv gc and du need it",
            fix="update the storage plugin, or measure the store with its own tools",
        )

    def delete_objects(self, oids: Sequence[str]) -> None:
        raise StorageError(f"the {self.name} storage backend cannot delete objects", fix="update the storage plugin")

    # -- optional protocol methods: what a store without the feature does ---------------
    def track_for_push(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """What an upload calls before :meth:`push`: :meth:`track` (a store may skip the cache copy)."""
        return self.track(paths)

    def reconfirm(self, paths: Sequence[str]) -> TransferStats:
        """After a gc overlapped an upload: make sure every object of ``paths`` is stored
        (the default pushes again; a store that trusts manifests checks every file)."""
        return self.push(paths)

    def vouched_by(self, oid: str) -> list[str]:
        """The objects stored object ``oid`` vouches for (a manifest's files): none by default."""
        return []

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Uploads the store holds parts of, never completed: none for a store without them."""
        return []

    def abort_incomplete_uploads(self, started_before: float) -> list[IncompleteUpload]:
        """Abort the incomplete uploads started before ``started_before``; returns them."""
        return []

    def checked_on_remote(self) -> int:
        """No file of a local verify is checked on the remote by default."""
        return 0

    def materialize_selected(self, rev: str, path: str, pointer: bytes, dest: Path, names: Sequence[str]) -> TrackedArtifact:
        """Only the entries ``names`` of directory ``path`` into ``dest``: one verified
        :meth:`materialize` per file by default."""
        dest.mkdir(parents=True)
        size = 0
        for rel in names:
            out = contained(dest, rel, f"{path} at {rev}")
            out.parent.mkdir(parents=True, exist_ok=True)
            size += self.materialize(rev, f"{path}/{rel}", pointer, out).size
        return TrackedArtifact(path=path, digest="", size=size, nfiles=len(names))

    @contextmanager
    def open_ranges(self, rev: str, path: str, pointer: bytes) -> Iterator[ByteRanges]:
        """The whole file downloaded (verified by :meth:`materialize`) into a scratch
        directory, and ranges read from it; a store that can read verified parts overrides this."""
        scratch = Path(tempfile.mkdtemp(prefix=".cpv-ranges-", dir=self.ctx.state_dir))
        try:
            local = scratch / PurePosixPath(path).name
            self.materialize(rev, path, pointer, local)
            if not local.is_file() or local.is_symlink():
                raise StorageError(f"{path} is a directory: byte ranges are read from one file", fix="name one file with --sub-path")
            yield FileRanges(local)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def export_dvc(self, rev: str, path: str, pointer: bytes, dest: Path) -> int:
        raise StorageError(f"the {self.name} storage backend does not write DVC's format", fix="download the version instead")

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        scratch = Path(tempfile.mkdtemp(prefix=".cpv-verify-"))
        try:
            self.materialize(rev, path, pointer, scratch / PurePosixPath(path).name)
        except CPVError as exc:
            return [f"{path}: {exc.message}"]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return []


class VersioningBackendBase:
    """Defaults for the optional methods of :class:`~cpv_core.plugin.protocols.VersioningBackend`:
    what a backend without the feature does (no run records for gc, no remote branch to
    look ahead at, no code origin)."""

    def read_file(self, rev: str, path: str) -> bytes | None:  # pragma: no cover - every backend has its own
        raise NotImplementedError

    def read_files(self, requests: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """``read_file`` of each ``(rev, path)``; a backend may answer them all at once."""
        return [self.read_file(rev, path) for rev, path in requests]

    def read_scope(self) -> AbstractContextManager[None]:
        """No read cache: every read asks the history afresh."""
        return nullcontext()

    def gc_runs(self) -> dict[str, tuple[bool, float]]:
        """The gc runs the remote records (:mod:`cpv_core.workspace.gc_fence`): none."""
        return {}

    def begin_gc(self) -> str | None:
        """Publish a gc run: a backend without run records publishes nothing."""
        return None

    def end_gc(self, run: str) -> None:  # noqa: B027 - deliberately empty: nothing was published
        """Mark a gc run done."""

    def unmark_pruned(self, kind: str, versions: Sequence[str]) -> None:  # noqa: B027 - nothing marked, nothing to remove
        """Remove the pruned marks of ``versions``."""

    def remote_branch_rev(self) -> str | None:
        """The fetched remote branch a pull would move to (None: not known ahead)."""
        return None

    def code_origin(self, where: Path) -> dict[str, Any] | None:
        """The training code's repository around ``where`` (None: not recorded)."""
        return None


#: the optional methods of each protocol and the class whose defaults stand in for them
#: (:func:`cpv_core.plugin.manager` gives a backend that lacks some of them these defaults)
OPTIONAL_STORAGE_METHODS = (
    "object_url",
    "checked_on_remote",
    "track_for_push",
    "reconfirm",
    "vouched_by",
    "incomplete_uploads",
    "abort_incomplete_uploads",
    "materialize_selected",
)
OPTIONAL_VERSIONING_METHODS = (
    "read_files",
    "read_scope",
    "gc_runs",
    "begin_gc",
    "end_gc",
    "unmark_pruned",
    "remote_branch_rev",
    "code_origin",
)


class HostingBackendBase(ABC):
    """Defaults for :class:`~cpv_core.plugin.protocols.HostingBackend`."""

    name = "hosting"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    @abstractmethod
    def remote_url(self) -> str:
        raise NotImplementedError

    @abstractmethod
    def ensure_remote(self) -> str:
        raise NotImplementedError

    def validate(self) -> list[CheckResult]:
        """No checks of its own (``cpv validate`` still runs the credential providers')."""
        return []

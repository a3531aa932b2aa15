"""``dirstore``: content-addressed objects in a plain directory.

An example of a third-party cpv storage plugin. A new object store is only a
transport: :class:`DirTransport` moves objects in and out of a directory with the
standard library, and :class:`cpv_plugins.dvc.engine.DvcStorage` (the engine cpv's
own ``local`` and ``dvc-s3`` backends use) does the rest: DVC's pointer and
manifest format, hashing, the stat cache, verified downloads, crash journals.
So the bytes it stores are a DVC remote too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from cpv_core import hookimpl
from cpv_core.plugin.protocols import StorageBackendInfo
from cpv_core.trust import open_regular
from cpv_plugins.dvc.engine import DvcStorage
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath, oid_from_relpath
from cpv_plugins.transports.base import OnBytes, TransportBase


class DirTransport(TransportBase):
    """Objects in ``root``, laid out as DVC lays out a remote."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root)

    def sizes(self, oids: Sequence[str]) -> dict[str, int]:
        paths = {oid: self.root / object_relpath(oid) for oid in oids}
        return {oid: path.stat().st_size for oid, path in paths.items() if path.is_file()}

    def put(self, oid: str, src: Path, on_bytes: OnBytes) -> None:
        final = self.root / object_relpath(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".put.")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, final)  # whole or not at all
        finally:
            Path(tmp).unlink(missing_ok=True)
        on_bytes(final.stat().st_size)

    def open_object(self, oid: str) -> BinaryIO:
        return open_regular(self.root / object_relpath(oid))

    def inventory(self) -> Iterator[tuple[str, int, float]]:
        for path in sorted((self.root / OBJECTS_DIR).glob("??/*")):
            oid = oid_from_relpath(path.relative_to(self.root).as_posix())
            if oid is not None and path.is_file():
                yield oid, path.stat().st_size, path.stat().st_mtime

    def delete(self, oid: str) -> None:
        (self.root / object_relpath(oid)).unlink(missing_ok=True)


class DirStore(DvcStorage):
    """Storage backend ``dirstore``: the DVC-format engine on a :class:`DirTransport`."""

    name = "dirstore"

    def remote_url(self) -> str:
        root = self.ctx.config.get_config("dirstore.root")
        base = Path(root).expanduser() if root else self.ctx.config.config_dir / "dirstore"
        return str(base / self.ctx.team / self.ctx.model)

    def url_is_shared(self) -> bool:
        return False  # a path on this machine: kept in .dvc/config.local, never committed

    def keeps_cache_copy(self) -> bool:
        return False  # the store is the copy: verify and download read it

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        """The store is the copy worth checking (a local directory: reading it is cheap)."""
        return super().verify(rev, path, pointer, remote=True)

    def make_transport(self) -> DirTransport:
        return DirTransport(Path(self.remote_url()))


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """Offer the dirstore backend."""
    return [StorageBackendInfo("dirstore", DirStore, "content-addressed objects in a plain directory", settings=("dirstore.root",))]

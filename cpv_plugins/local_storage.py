"""Storage backend ``local``: the DVC-format engine on a directory of this machine
(imported by :func:`cpv_plugins.local.local_storage` when a workspace first needs it)."""

from __future__ import annotations

from pathlib import Path

from cpv_core.paths import make_private_dirs
from cpv_plugins.dvc.engine import DvcStorage
from cpv_plugins.local import link_objects, local_root
from cpv_plugins.transports.local import LocalDirTransport


class LocalStorage(DvcStorage):
    """Storage backend ``local``: DVC's format in a directory on this machine."""

    name = "local"

    def remote_url(self) -> str:
        return str(local_root(self.ctx) / "storage" / self.ctx.team / self.ctx.model)

    def url_is_shared(self) -> bool:
        # an absolute path on this machine: machine-local config, not committed
        return False

    def init(self) -> None:
        make_private_dirs(Path(self.remote_url()))
        super().init()

    def make_transport(self) -> LocalDirTransport:
        journal = self.ctx.state_dir / "remote-tmp" if self.ctx.state_dir is not None else None
        return LocalDirTransport(Path(self.remote_url()), journal, link=link_objects(self.ctx))

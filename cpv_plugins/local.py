"""The embedded local default: cpv with no cloud account at all.

* storage ``local``: DVC with a local-directory remote,
  ``{local_root}/storage/{team}/{model}``;
* hosting ``local``: a bare git repository per team/model,
  ``{local_root}/git/{team}/{model}.git``.

``local_root`` is the config key ``local.root``, default ``$CPV_HOME/local``.
Several workspaces on one machine (or on a shared file system) that use the
same root see each other's versions, just as team members do through
Bitbucket and S3.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cpv_core import hookimpl
from cpv_core.backends import BackendContext, CheckResult, HostingBackendInfo, StorageBackendInfo, TransferStats
from cpv_core.errors import ConfigError, RepositoryError
from cpv_core.faults import crash_point
from cpv_core.paths import make_private_dirs
from cpv_core.trust import MAX_MANIFEST_BYTES, open_regular

from .dvc_storage import DvcStorage, copy_hashing, object_relpath


def local_root(ctx: BackendContext) -> Path:
    """Root directory of the embedded default's remotes."""
    value = ctx.config.get_config("local.root")
    if not value:
        return ctx.config.config_dir / "local"
    root = Path(str(value)).expanduser()
    if not root.is_absolute():
        raise ConfigError(
            f"local.root {str(value)!r} is a relative path: each working directory would get its own remotes",
            fix="set an absolute path: cpv config set local.root /path/to/remotes",
        )
    return root.resolve()


class LocalStorage(DvcStorage):
    """Storage backend ``local``: a DVC remote in a local directory."""

    name = "local"

    def remote_url(self) -> str:
        return str(local_root(self.ctx) / "storage" / self.ctx.team / self.ctx.model)

    def url_is_shared(self) -> bool:
        # an absolute path on this machine: machine-local config, not committed
        return False

    def init(self) -> None:
        make_private_dirs(Path(self.remote_url()))
        super().init()

    def _remote_object(self, oid: str) -> Path:
        return Path(self.remote_url()) / object_relpath(oid)

    def remote_read(self, oid: str) -> bytes:
        path = self._remote_object(oid)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(str(path))
        with open_regular(path) as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)

    def remote_fetch(self, oid: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool) -> str:
        path = self._remote_object(oid)
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(str(path))
        return copy_hashing(path, out, on_bytes)

    def remote_size(self, oid: str) -> int | None:
        path = self._remote_object(oid)
        if path.is_symlink() or not path.is_file():
            return None
        return path.stat().st_size

    def remote_put(self, oid: str, src: Path, on_bytes: Callable[[int], Any]) -> None:
        final = self._remote_object(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        journal = self._tmp_journal()
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.cpv-tmp"
        if journal is not None:  # recorded first: a killed run's partial copy is removed by the next push
            journal.parent.mkdir(parents=True, exist_ok=True)
            with open(journal, "a", encoding="utf-8") as handle:
                handle.write(f"{tmp}\n")
        try:
            self.copy_verified(oid, src, tmp, on_bytes)
            crash_point("upload.remote-partial")
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _tmp_journal(self) -> Path | None:
        return self.ctx.state_dir / "remote-tmp" if self.ctx.state_dir is not None else None

    def push(self, paths: Sequence[str]) -> TransferStats:
        journal = self._tmp_journal()
        if journal is not None and journal.is_file() and not journal.is_symlink():
            root = Path(self.remote_url())
            for line in journal.read_text(encoding="utf-8").splitlines():
                leftover = Path(line)
                if root in leftover.parents and leftover.name.endswith(".cpv-tmp") and not leftover.is_symlink():
                    leftover.unlink(missing_ok=True)
            journal.unlink()
        stats = super().push(paths)
        if journal is not None:
            journal.unlink(missing_ok=True)
        return stats

    def remote_md5(self, oid: str) -> str | None:
        path = self._remote_object(oid)
        if not path.exists() and not path.is_symlink():
            return None
        return copy_hashing(path, None)


class LocalHosting:
    """Hosting backend ``local``: a bare git repository on this machine."""

    name = "local"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def _path(self) -> Path:
        return local_root(self.ctx) / "git" / self.ctx.team / f"{self.ctx.model}.git"

    def remote_url(self) -> str:
        return str(self._path())

    def ensure_remote(self) -> str:
        import git

        path = self._path()
        if not (path / "HEAD").exists():
            try:
                make_private_dirs(path)
                git.Repo.init(str(path), bare=True, initial_branch="main")
            except (OSError, git.GitCommandError) as exc:
                raise RepositoryError(
                    f"cannot create the local repository {path}: {exc}",
                    fix="check that the directory is writable, or set local.root in the cpv config",
                ) from None
        return str(path)

    def validate(self) -> list[CheckResult]:
        root = local_root(self.ctx)
        probe = root if root.exists() else root.parent
        ok = os.access(probe, os.W_OK)
        return [
            CheckResult(
                "local.root",
                ok,
                f"local remotes under {root}" + ("" if ok else " are not writable"),
                None if ok else "make the directory writable or set local.root in the cpv config",
            )
        ]


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """The embedded local storage backend."""
    return [StorageBackendInfo("local", LocalStorage, "DVC with a local-directory remote under CPV_HOME")]


@hookimpl
def cpv_hosting_backends() -> list[HostingBackendInfo]:
    """The embedded local hosting backend."""
    return [HostingBackendInfo("local", LocalHosting, "a local bare git repository per team/model under CPV_HOME")]

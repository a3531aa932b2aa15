"""The embedded local default: cpv with no cloud account at all.

* storage ``local``: DVC's format in a local-directory remote,
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
from pathlib import Path
from typing import Any

from cpv_core import hookimpl
from cpv_core.errors import ConfigError, RepositoryError
from cpv_core.paths import make_private_dirs
from cpv_core.plugin.bases import HostingBackendBase
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.protocols import BackendContext, CheckResult, HostingBackendInfo, SetupChoice, StorageBackend, StorageBackendInfo
from cpv_core.plugin.settings import flag_setting


def local_root(ctx: BackendContext) -> Path:
    """Root directory of the embedded default's remotes."""
    return local_root_of(ctx.config)


def local_root_of(config: CPVConfig) -> Path:
    """Root directory of the embedded default's remotes under ``config``."""
    value = config.get_config("local.root")
    if not value:
        return config.config_dir / "local"
    root = Path(str(value)).expanduser()
    if not root.is_absolute():
        raise ConfigError(
            f"local.root {str(value)!r} is a relative path: each working directory would get its own remotes",
            fix="set an absolute path: cpv config set local.root /path/to/remotes",
        )
    return root.resolve()


def link_objects(ctx: BackendContext) -> bool:
    """``local.link`` (default true): the store shares each object's bytes with the
    workspace's cache through a hard link when both are on one file system, so a
    model takes one copy under CPV_HOME besides the workspace file. False keeps
    two independent copies (a cache object damaged in place can then be
    fetched again from the store)."""
    return flag_setting(
        ctx.config, "local.link", True, "cpv config set local.link true (one copy on disk) or false (two independent copies)"
    )


def local_storage(ctx: BackendContext) -> StorageBackend:
    """The ``local`` storage backend's factory: the storage engine is imported on first use,
    so `cpv --help` never loads it."""
    from cpv_plugins.local_storage import LocalStorage

    return LocalStorage(ctx)


def __getattr__(name: str) -> Any:
    if name == "LocalStorage":  # the class, for subclassing and tests, also from here
        from cpv_plugins.local_storage import LocalStorage

        return LocalStorage
    raise AttributeError(name)


class LocalHosting(HostingBackendBase):
    """Hosting backend ``local``: a bare git repository on this machine."""

    name = "local"

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
        probe = root
        while not probe.exists() and probe != probe.parent:  # made on first use: its nearest existing parent decides
            probe = probe.parent
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
def cpv_enumerate_models(config: CPVConfig) -> list[tuple[str, str]]:
    """The bare repositories under ``{local_root}/git/{team}/{model}.git`` (hosting ``local``)."""
    if config.backend_name("hosting") != "local":
        return []
    root = local_root(BackendContext(config=config, team="", model="", workspace=Path())) / "git"
    if not root.is_dir():
        return []
    return [
        (team.name, repo.name.removesuffix(".git"))
        for team in sorted(root.iterdir())
        if team.is_dir() and not team.is_symlink()
        for repo in sorted(team.glob("*.git"))
        if (repo / "HEAD").is_file()
    ]


@hookimpl
def cpv_storage_backends() -> list[StorageBackendInfo]:
    """The embedded local storage backend."""
    return [
        StorageBackendInfo(
            "local", local_storage, "DVC's format in a local-directory remote under CPV_HOME", settings=("local.root", "local.link")
        )
    ]


@hookimpl
def cpv_hosting_backends() -> list[HostingBackendInfo]:
    """The embedded local hosting backend."""
    return [
        HostingBackendInfo("local", LocalHosting, "a local bare git repository per team/model under CPV_HOME", settings=("local.root",))
    ]


@hookimpl
def cpv_setup_choices() -> list[SetupChoice]:
    """``cpv setup``: the embedded defaults, which need no questions."""
    return [
        SetupChoice(
            "storage",
            "local",
            "local",
            "a directory on this machine (no account needed)",
            apply=lambda config, answers: [f"storage: local, under {local_root_of(config)}"],
        ),
        SetupChoice(
            "hosting",
            "local",
            "local",
            "bare git repositories on this machine (no account needed)",
            apply=lambda config, answers: [f"hosting: local bare repositories under {local_root_of(config)}"],
        ),
    ]

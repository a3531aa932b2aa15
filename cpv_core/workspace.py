"""A model workspace: where it lives, which backends serve it, its lock.

Layout of ``{workspace_root}/{team}/{model}/`` (or ``repo_path``)::

    model.bin            the model file (content in storage, ignored by git)
    model.bin.dvc        its pointer (committed)
    data/  data.dvc      training data and its pointer
    metrics.log          JSON lines, one record per upload (committed)
    README.md .gitignore .gitattributes
    .cpv/workspace.json  team, model, backends chosen at init (committed)
    .cpv/lock            one cpv process at a time (ignored)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from .backends import BackendContext, HostingBackend, StorageBackend, VersioningBackend
from .config import CPVConfig
from .errors import RepositoryError, WorkspaceLockedError
from .names import validate_name
from .paths import KEEP_SUFFIX, atomic_write_bytes, restore_preserved
from .plugins import Plugins

logger = logging.getLogger("cpv.workspace")

META_DIR = ".cpv"
META_FILE = f"{META_DIR}/workspace.json"
LOCK_FILE = f"{META_DIR}/lock"
FORMAT_VERSION = 1
DEFAULT_FILES = {"model": "model.bin", "data": "data"}
LOCK_TIMEOUT_S = 120.0
LOCK_TIMEOUT_ENV = "CPV_LOCK_TIMEOUT"

SCAFFOLD = {
    ".gitattributes": "# metrics.log only ever grows: concurrent uploads merge by union\nmetrics.log merge=union\n",
    f"{META_DIR}/.gitignore": "lock\n",
    "metrics.log": "",
}


def readme_text(team: str, model: str) -> str:
    """The README committed to a new model repository."""
    return (
        f"# {team} / {model}\n\n"
        "Model checkpoints and training data versioned with cpv.\n\n"
        "- `model.bin.dvc`, `data.dvc`: pointers to the content in storage\n"
        "- `metrics.log`: one JSON record per upload\n"
        "- versions are tags `model/vX.Y`, `data/vX.Y`, `checkpoint/vX.Y`\n\n"
        f"    cpv model list -t {team} -m {model}\n"
        f"    cpv model download v0.1 -t {team} -m {model}\n"
    )


class Workspace:
    """The local workspace of one team/model and the backends that serve it."""

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        config: CPVConfig | None = None,
        *,
        verbose: bool = False,
        progress: bool = False,
        lock_timeout: float | None = None,
    ) -> None:
        self.team = validate_name(team_name, "team name")
        self.model = validate_name(model_name, "model name")
        self.config = config or CPVConfig()
        root = self.config.workspace_root()
        self.path = Path(repo_path).expanduser().resolve() if repo_path else (root / self.team / self.model).resolve()
        self.verbose = verbose
        self.progress = progress
        self.lock_timeout = lock_timeout if lock_timeout is not None else float(os.environ.get(LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S))
        self.plugins = Plugins()

    # -- metadata ----------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    def read_meta(self) -> dict[str, Any]:
        """The committed workspace metadata, or {} before init."""
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise RepositoryError(f"{self.meta_path} is unreadable: {exc}", fix="restore it with git checkout") from None

    def new_meta(self) -> dict[str, Any]:
        """Metadata for a workspace about to be created."""
        return {
            "format": FORMAT_VERSION,
            "team": self.team,
            "model": self.model,
            "backends": {kind: self.config.backend_name(kind) for kind in ("storage", "hosting", "versioning")},
            "files": dict(DEFAULT_FILES),
        }

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_bytes(self.meta_path, json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n")
        self.__dict__.pop("meta", None)

    @cached_property
    def meta(self) -> dict[str, Any]:
        return self.read_meta() or self.new_meta()

    def file_for(self, kind: str) -> str:
        """The workspace-relative path tracked for ``kind`` (model.bin, data)."""
        return str(self.meta.get("files", {}).get(kind, DEFAULT_FILES[kind]))

    def is_initialized(self) -> bool:
        """Whether the workspace exists with its repository."""
        return self.meta_path.is_file() and (self.path / ".git").exists()

    def require_initialized(self) -> None:
        """Raise :class:`RepositoryError` with the init command when not set up."""
        if not self.is_initialized():
            raise RepositoryError(
                f"no cpv workspace for {self.team}/{self.model} at {self.path}",
                fix=f"run `cpv init model -t {self.team} -m {self.model}` (or import_model_init()) first",
            )

    # -- backends ----------------------------------------------------------------
    def backend_name(self, kind: str) -> str:
        """Backend recorded at init; the configured one for a new workspace."""
        return str(self.meta.get("backends", {}).get(kind) or self.config.backend_name(kind))

    @cached_property
    def context(self) -> BackendContext:
        return BackendContext(
            config=self.config, team=self.team, model=self.model, workspace=self.path,
            env=self.config.credential_env(), verbose=self.verbose, progress=self.progress,
        )

    @cached_property
    def storage(self) -> StorageBackend:
        return self.plugins.storage(self.backend_name("storage"), self.context)

    @cached_property
    def versioning(self) -> VersioningBackend:
        return self.plugins.versioning(self.backend_name("versioning"), self.context)

    @cached_property
    def hosting(self) -> HostingBackend:
        return self.plugins.hosting(self.backend_name("hosting"), self.context)

    # -- lock ----------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace lock; a second process waits up to ``lock_timeout``.

        The lock is an OS file lock, released by the kernel when a process
        dies, so a killed cpv never leaves the workspace locked.
        """
        from filelock import FileLock, Timeout

        lock_path = self.path / LOCK_FILE
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("another cpv process is using %s; waiting up to %.0f s", self.path, self.lock_timeout)
            try:
                lock.acquire(timeout=self.lock_timeout)
            except Timeout:
                raise WorkspaceLockedError(
                    f"workspace {self.path} is in use by another cpv process",
                    fix="wait for it to finish and run the command again",
                ) from None
        try:
            self.recover()
            yield
        finally:
            lock.release()

    def recover(self) -> None:
        """Undo what a killed cpv process left half done (called under the lock).

        Atomic writes leave ``*.cpv-tmp`` files that are removed; a directory
        swap interrupted between its two renames is completed backwards, so
        the previous content comes back.
        """
        if not self.path.is_dir():
            return
        for leftover in self.path.glob(".*.cpv-tmp"):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
        for keep in self.path.glob(f".*{KEEP_SUFFIX}"):
            target = self.path / keep.name[1:-len(KEEP_SUFFIX)]
            if restore_preserved(target):
                logger.warning("restored %s after an interrupted run", target)
        for old in self.path.glob(".*.cpv-old"):
            original = self.path / old.name[1:-len(".cpv-old")]
            if not original.exists():
                logger.warning("restoring %s after an interrupted upload", original)
                os.replace(old, original)
            else:
                shutil.rmtree(old, ignore_errors=True)

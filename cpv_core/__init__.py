"""cpv: version model checkpoints and training data together.

Public API (the seed names are kept)::

    from cpv_core import ModelsCheckpointsManage, DataCheckpointsManage, CombinedCheckpointsManage
    from cpv_core import CPVConfig, ModelArtifacts, DataArtifacts, CPVError, ...

Plugins implement hooks with ``@cpv_core.hookimpl``. Importing this package is
cheap: the managers and heavy libraries load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("cpv")

from cpv_core.compat import install as _install_old_paths  # noqa: E402

_install_old_paths()

from cpv_core.domain.artifacts import CheckpointMetadata, CombinedMetadata, DataArtifacts, ModelArtifacts, UploadResult  # noqa: E402
from cpv_core.domain.versions import Version  # noqa: E402
from cpv_core.errors import (  # noqa: E402
    AWSError,
    CheckpointNotFoundError,
    ConfigError,
    CPVError,
    CredentialError,
    DVCError,
    GitError,
    HostingError,
    RepositoryError,
    StorageError,
    ValidationError,
    VersionExistsError,
    VersioningError,
    WorkspaceDirtyError,
    WorkspaceLockedError,
)

if TYPE_CHECKING:
    from cpv_core.api.checkpointer import Checkpointer
    from cpv_core.api.combined import CombinedCheckpointsManage
    from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage
    from cpv_core.plugin.config import CPVConfig

_LAZY = {
    "CPVConfig": "plugin.config",
    "ModelsCheckpointsManage": "api.model_data",
    "DataCheckpointsManage": "api.model_data",
    "CombinedCheckpointsManage": "api.combined",
    "Checkpointer": "api.checkpointer",
}


def open_tensors(team_name: str, model_name: str, selector: str | None = None, tensors: str | None = None, **kwargs: Any) -> Any:
    """The tensors of model version ``selector`` (default: the latest) of a safetensors
    checkpoint, by name, each fetched and verified on first access (only its chunks, in the
    tensor layout)::

        with cpv_core.open_tensors("AI-Convo", "whisper", "v1.2", "encoder.*") as t:
            w = t["encoder.layer0.weight"]  # numpy array

    ``kwargs`` go to :class:`ModelsCheckpointsManage` (``repo_path``, ...)."""
    from cpv_core.api.model_data import ModelsCheckpointsManage

    return ModelsCheckpointsManage(team_name, model_name, **kwargs).open_tensors(selector, tensors)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cpv_core' has no attribute {name!r}")


__all__ = [
    "__version__",
    "hookimpl",
    "CPVConfig",
    "ModelsCheckpointsManage",
    "DataCheckpointsManage",
    "CombinedCheckpointsManage",
    "Checkpointer",
    "open_tensors",
    "ModelArtifacts",
    "DataArtifacts",
    "CheckpointMetadata",
    "CombinedMetadata",
    "UploadResult",
    "Version",
    "CPVError",
    "ConfigError",
    "ValidationError",
    "AWSError",
    "GitError",
    "DVCError",
    "CheckpointNotFoundError",
    "RepositoryError",
    "CredentialError",
    "StorageError",
    "VersioningError",
    "HostingError",
    "VersionExistsError",
    "WorkspaceDirtyError",
    "WorkspaceLockedError",
]

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

from .artifacts import CheckpointMetadata, CombinedMetadata, DataArtifacts, ModelArtifacts, UploadResult  # noqa: E402
from .errors import (  # noqa: E402
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
from .versions import Version  # noqa: E402

if TYPE_CHECKING:
    from .checkpointer import Checkpointer
    from .combined import CombinedCheckpointsManage
    from .config import CPVConfig
    from .model_data import DataCheckpointsManage, ModelsCheckpointsManage

_LAZY = {
    "CPVConfig": "config",
    "ModelsCheckpointsManage": "model_data",
    "DataCheckpointsManage": "model_data",
    "CombinedCheckpointsManage": "combined",
    "Checkpointer": "checkpointer",
}


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

"""The cpv exception hierarchy.

The seed names (``CPVError``, ``ConfigError``, ``AWSError``, ``GitError``,
``DVCError``, ``CheckpointNotFoundError``, ``RepositoryError``,
``CredentialError``) are public API. Backends that are not DVC or git raise
the neutral bases ``StorageError``, ``VersioningError`` and ``HostingError``;
the seed names are their subclasses, so ``except StorageError`` catches both. Every error carries a message that says
which value was wrong, why, and what to do; ``fix`` holds the "what to do" part
separately so the CLI can print it on its own line. ``exit_code`` is the CLI's
exit status for the class (documented in docs/cli.md).
"""

from __future__ import annotations


class CPVError(Exception):
    """Base class of every error cpv raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}; {fix}")


class ConfigError(CPVError):
    """The cpv configuration is missing, unreadable or names an unknown backend."""

    exit_code = 3


class ValidationError(CPVError, ValueError):
    """A value given by the user (name, tag, path, metrics) is not acceptable."""

    exit_code = 2


class CredentialError(CPVError):
    """Credentials are missing, unreadable or refused by the server."""

    exit_code = 4


class StorageError(CPVError):
    """A storage backend failed to store, fetch or check content (any backend)."""

    exit_code = 5


class VersioningError(CPVError):
    """A versioning backend failed to commit, fetch, publish or read versions (any backend)."""

    exit_code = 6


class HostingError(CPVError):
    """A hosting backend could not reach or prepare the remote repository (any backend)."""

    exit_code = 7


class AWSError(StorageError):
    """An S3 operation failed for a reason other than credentials."""


class DVCError(StorageError):
    """The DVC-format storage failed to add, push or fetch data."""


class GitError(VersioningError):
    """A git operation (commit, fetch, push) failed."""


class RepositoryError(CPVError):
    """The model workspace or its remote repository is missing or inconsistent."""

    exit_code = 7


class CheckpointNotFoundError(CPVError, LookupError):
    """The requested version or tag does not exist."""

    exit_code = 8


class VersionExistsError(ValidationError):
    """An explicit version tag is already taken (locally or on the remote)."""

    exit_code = 9


class WorkspaceDirtyError(CPVError):
    """The operation would overwrite uncommitted changes in the workspace."""

    exit_code = 10


class WorkspaceLockedError(CPVError):
    """Another cpv process holds the workspace lock."""

    exit_code = 11


__all__ = [
    "CPVError",
    "ConfigError",
    "ValidationError",
    "CredentialError",
    "StorageError",
    "VersioningError",
    "HostingError",
    "AWSError",
    "DVCError",
    "GitError",
    "RepositoryError",
    "CheckpointNotFoundError",
    "VersionExistsError",
    "WorkspaceDirtyError",
    "WorkspaceLockedError",
]

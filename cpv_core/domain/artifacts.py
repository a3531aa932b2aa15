"""The seed return types and version metadata records."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ModelArtifacts:
    """A model version materialised on disk (``download_model_checkpoint``).

    :param model_path: path of the downloaded model: a file or a directory,
        under the name the model had in that version.
    :param metrics: the metrics recorded with that version.
    :param tag: the version (``"v1.0"``).
    :param size_mb: size in MiB (all files, for a directory).
    """

    model_path: str
    metrics: dict[str, Any]
    tag: str
    size_mb: float
    commit: str = ""
    digest: str = ""

    @property
    def version(self) -> str:
        """Alias of :attr:`tag`."""
        return self.tag


@dataclass
class DataArtifacts:
    """A data version materialised on disk (``download_data_checkpoint``).

    :param data_path: directory holding the data.
    :param version: the version (``"v0.4"``).
    :param tag: same as ``version`` (the seed names both).
    :param file_count: number of files placed.
    :param size_mb: total size in MiB.
    """

    data_path: str
    version: str
    tag: str
    file_count: int = 0
    size_mb: float = 0.0
    commit: str = ""
    digest: str = ""


@dataclass
class CheckpointMetadata:
    """Everything known about one version (``get_model_metadata``).

    :param message: what the version says about itself: its tag message, or,
        when the tag has none, the upload message(s) since the previous version.
    :param tag_message: the tag's own message ("" when none was given).
    :param upload_message: the upload messages since the previous version of
        the kind, oldest first, joined with "; ".
    """

    kind: str
    version: str | None
    commit: str
    author: str
    date: str
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    digest: str = ""
    path: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)
    tag_message: str = ""
    upload_message: str = ""
    #: hyperparameters recorded apart from the metrics (``--params``)
    params: dict[str, Any] = field(default_factory=dict)
    #: the training code the upload ran in: ``{"commit", "branch", "dirty"}`` ({} outside a git repository)
    code: dict[str, Any] = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        """Size in MiB."""
        return round(self.size / (1024 * 1024), 3)

    @property
    def hash(self) -> str:
        """Alias of :attr:`digest`."""
        return self.digest

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; keys are part of the documented ``--json`` schema. Values are
        copies (a thousand rows: 5 ms instead of ``dataclasses.asdict``'s 25)."""
        data = {name: _copied(getattr(self, name)) for name in _METADATA_FIELDS}
        data["size_mb"] = self.size_mb
        return data

    # dict-style access keeps seed code such as ``meta["metrics"]`` working
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``dict.get`` on :meth:`to_dict`."""
        return self.to_dict().get(key, default)


@dataclass(kw_only=True)
class UploadResult:
    """What ``upload_*_checkpoint`` did (or, in a dry run, would do)."""

    kind: str
    path: str
    commit: str | None
    digest: str
    size: int
    nfiles: int
    metrics: dict[str, Any]
    changed: bool
    dry_run: bool = False
    plan: list[str] = field(default_factory=list)


@dataclass
class CombinedMetadata:
    """A combined version: the model and data versions it names, and their metadata."""

    version: str
    commit: str
    date: str
    author: str
    message: str
    model: CheckpointMetadata
    data: CheckpointMetadata

    @property
    def lineage(self) -> dict[str, str]:
        """``{"model": "v1.3", "data": "v0.4"}``."""
        return {"model": str(self.model.version), "data": str(self.data.version)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``cpv checkpoint info --json``)."""
        return {
            "version": self.version,
            "commit": self.commit,
            "date": self.date,
            "author": self.author,
            "message": self.message,
            "lineage": self.lineage,
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]


_METADATA_FIELDS = tuple(f.name for f in fields(CheckpointMetadata))


def _copied(value: Any) -> Any:
    """``value`` with its dicts and lists copied, as ``dataclasses.asdict`` gives them."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value

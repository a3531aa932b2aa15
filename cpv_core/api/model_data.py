"""The seed manager classes for models and data: ModelsCheckpointsManage and
DataCheckpointsManage. :mod:`cpv_core.checkpoints` is the seeds' module name
and re-exports them with CombinedCheckpointsManage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cpv_core.api.checkpoint_manager import CheckpointManager
from cpv_core.domain.artifacts import CheckpointMetadata, DataArtifacts, ModelArtifacts, UploadResult
from cpv_core.domain.kinds import DATA, MODEL, check_kwargs
from cpv_core.domain.versions import Version
from cpv_core.paths import tree_size
from cpv_core.plugin.sources import check_source


class ModelsCheckpointsManage(CheckpointManager):
    """Version a model's weights and metrics (the seed API).

    :param team_name: team, e.g. ``"AI-Convo"``.
    :param model_name: model, e.g. ``"faster-whisper"``.
    :param repo_path: the local workspace; default ``{workspace_root}/{team}/{model}``.
    :param config: a :class:`CPVConfig` (default: loaded from ``CPV_HOME``).
    :param verbose: print each step.
    :param dry_run: print the plan and change nothing, locally or remotely.
    """

    spec = MODEL

    def lineage(self) -> dict[str, Any]:
        """The data version whose content is committed at HEAD, if it was tagged."""
        data = self.sibling(DataCheckpointsManage)
        info = data.pointer_info("HEAD")
        if info is None:
            return {}
        same = [r.version for r in data.records() if r.metadata.get("digest") == info.digest]
        return {"data": same[-1]} if same else {"data_digest": info.digest}

    def import_model_init(self, data_path: str | Path | None = None, **kwargs: Any) -> Path:
        """Create the model workspace and its remote repository, or clone the
        existing remote (a second team member's first step). With ``data_path``
        the directory is uploaded as the first data checkpoint.

        :return: the workspace path.
        """
        check_kwargs("import_model_init", kwargs, "repo_path")
        self.check_repo_path(kwargs.get("repo_path"))
        dry_run, _ = self.options(kwargs)
        # the same workspace; the data is uploaded as the seeds do, and left for the model's first
        # combined or data version to name (`cpv init data` is the command that versions it at once)
        return self.sibling(DataCheckpointsManage).init_with_data(data_path, dry_run=dry_run, tag=False)

    def upload_model_checkpoint(
        self,
        model_path: str | Path | None = None,
        metrics: Mapping[str, Any] | None = None,
        message: str | None = None,
        **kwargs: Any,
    ) -> UploadResult:
        """Store the model (default: the workspace's current model, ``model.bin`` at
        first), append ``metrics`` to ``metrics.log``, commit the pointer and push.

        ``model_path`` may be a file of any name or a directory (a Hugging Face
        folder of shards); it keeps its name and layout in the workspace and in
        every download. Unchanged files of a directory are not uploaded again.
        ``params`` (a mapping) records hyperparameters apart from the metrics. Run
        inside the training code's git repository, the version records its commit,
        branch and whether it had uncommitted changes."""
        check_kwargs("upload_model_checkpoint", kwargs, "params")
        return self.upload(model_path, metrics, message, **kwargs)

    def tag_model_checkpoint(self, version_tag: str | None = None, message: str | None = None, **kwargs: Any) -> str:
        """Give the current model a version: ``version_tag`` (e.g. ``"v2.0"``) or
        the next minor (``major=True``: next major). Returns ``"vX.Y"``. Content
        identical to an existing model version gets no automatic new version unless
        ``allow_duplicate=True`` (an explicit ``version_tag`` is a deliberate promotion)."""
        check_kwargs("tag_model_checkpoint", kwargs, "major", "allow_duplicate")
        return self.tag(version_tag, message, **kwargs)

    def read_checkpoint_tag(self, **kwargs: Any) -> list[str]:
        """All model versions, sorted; includes versions pushed by others
        (offline: local versions, with a warning)."""
        check_kwargs("read_checkpoint_tag", kwargs)
        return self.list_versions()

    def download_model_checkpoint(self, tag: str | None = None, output_dir: str | Path | None = None, **kwargs: Any) -> ModelArtifacts:
        """Materialise version ``tag`` (default: latest) in ``output_dir``
        without touching the workspace. ``include="config.json,*.safetensors"`` (or a
        list of glob patterns) fetches only those files of a directory model."""
        check_kwargs("download_model_checkpoint", kwargs, "include")
        dest, record, artifact = self.download(tag, output_dir, **kwargs)
        meta = self.metadata_for(record)
        size = artifact.size if artifact else meta.size
        return ModelArtifacts(
            model_path=str(dest),
            metrics=meta.metrics,
            tag=record.version,
            size_mb=round(size / (1024 * 1024), 3),
            commit=record.commit,
            digest=meta.digest,
        )

    def revert_model_checkpoint(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the workspace's model to version ``tag`` as a new commit
        (history kept). Refuses on uncommitted changes unless ``force=True``."""
        check_kwargs("revert_model_checkpoint", kwargs)
        return self.revert(tag, **kwargs)

    def get_model_metadata(self, tag: str | None = None, **kwargs: Any) -> CheckpointMetadata:
        """Version, commit, author, date, message, metrics, size and hash of
        ``tag`` (default: the latest version)."""
        check_kwargs("get_model_metadata", kwargs)
        return self.metadata(tag)


class DataCheckpointsManage(CheckpointManager):
    """Version a model's training data directory (the seed API)."""

    spec = DATA

    def import_data_init(self, data_path: str | Path | None = None, **kwargs: Any) -> Path:
        """Initialise the workspace if needed; upload ``data_path`` and tag it as the first
        data version (unless a data version already holds exactly that content).

        :return: the workspace path.
        """
        check_kwargs("import_data_init", kwargs, "repo_path")
        self.check_repo_path(kwargs.get("repo_path"))
        dry_run, _ = self.options(kwargs)
        return self.init_with_data(data_path, dry_run=dry_run, tag=True)

    def init_with_data(self, data_path: str | Path | None, *, dry_run: bool, tag: bool) -> Path:
        """Initialise the workspace if needed and upload ``data_path`` (if given) as its data;
        with ``tag``, version it too (what ``import_data_init`` and ``cpv init data`` promise)."""
        if data_path is not None:
            check_source(DATA, Path(data_path).expanduser())
        self.init_workspace(dry_run)
        if data_path is not None:
            result = self.upload_data_checkpoint(data_path, message="Initial training data", dry_run=dry_run)
            if tag and not dry_run and self.same_content_as(result.digest) is None:
                self.tag_data_checkpoint(message="Initial training data")  # says "tagged data vX.Y" itself
        return self.ws.path

    def upload_data_checkpoint(self, data_path: str | Path | None = None, message: str | None = None, **kwargs: Any) -> UploadResult:
        """Store the data directory (default: the workspace's ``data/``), commit its pointer and push."""
        check_kwargs("upload_data_checkpoint", kwargs, "metrics", "params")
        return self.upload(data_path, kwargs.pop("metrics", None), message, **kwargs)

    def tag_data_checkpoint(self, version_tag: str | None = None, message: str | None = None, **kwargs: Any) -> str:
        """Give the current data a version in the data sequence; returns ``"vX.Y"``."""
        check_kwargs("tag_data_checkpoint", kwargs, "major", "allow_duplicate")
        return self.tag(version_tag, message, **kwargs)

    def read_checkpoint_tag(self, **kwargs: Any) -> list[str]:
        """All data versions, sorted."""
        check_kwargs("read_checkpoint_tag", kwargs)
        return self.list_versions()

    def download_data_checkpoint(self, tag: str | None = None, output_dir: str | Path | None = None, **kwargs: Any) -> DataArtifacts:
        """Materialise data version ``tag`` (default: latest) in ``output_dir``;
        ``sub_path="test"`` fetches only that part."""
        check_kwargs("download_data_checkpoint", kwargs, "sub_path", "include")
        dest, record, artifact = self.download(tag, output_dir, kwargs.pop("sub_path", None), **kwargs)
        meta = self.metadata_for(record)
        size, nfiles = tree_size(dest) if dest.exists() else (meta.size, 0)
        return DataArtifacts(
            data_path=str(dest),
            version=record.version,
            tag=record.version,
            file_count=nfiles,
            size_mb=round(size / (1024 * 1024), 3),
            commit=record.commit,
            digest=meta.digest,
        )

    def revert_data_checkpoint(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the workspace's data to version ``tag`` as a new commit."""
        check_kwargs("revert_data_checkpoint", kwargs)
        return self.revert(tag, **kwargs)

    def get_data_metadata(self, tag: str | None = None, **kwargs: Any) -> CheckpointMetadata:
        """Metadata of data version ``tag`` (default: latest)."""
        check_kwargs("get_data_metadata", kwargs)
        return self.metadata(tag)

    def models_trained_on(self, version: str) -> list[str]:
        """Model versions whose lineage names this data version (after a fetch)."""
        wanted = str(Version.parse(version))
        self.find(wanted)
        return [r.version for r in self.ws.versioning.list_versions("model") if r.metadata.get("lineage", {}).get("data") == wanted]

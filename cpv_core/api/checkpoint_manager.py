"""``CheckpointManager``: the target object with one public method per operation.

Each method is a thin delegate to the operation's module in :mod:`cpv_core.ops`
(the seed classes, the combined manager and the CLI call these):

* :mod:`cpv_core.ops.init` - create or clone a workspace;
* :mod:`cpv_core.ops.transfer` - upload and download;
* :mod:`cpv_core.ops.tagging` - allocate and publish versions;
* :mod:`cpv_core.ops.revert` - revert one or several targets in one commit;
* :mod:`cpv_core.ops.inspection` - list, metadata, diff, verify;
* :mod:`cpv_core.ops.pull` - bring the workspace up to the remote;
* :mod:`cpv_core.ops.stages` - promote, demote, stage history and rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cpv_core.domain.artifacts import CheckpointMetadata, UploadResult
from cpv_core.domain.kinds import DATA, MODEL, SEED_KWARGS, KindSpec, check_kwargs
from cpv_core.domain.retention_rules import RetentionRules
from cpv_core.domain.stage_rules import StageRules
from cpv_core.ops import init as workspace_setup
from cpv_core.ops import inspection, report, retention, revert, stages, status, tagging, transfer
from cpv_core.ops import tensors as tensor_reads
from cpv_core.ops.pull import pull_workspace
from cpv_core.ops.revert import revert_targets
from cpv_core.ops.status import WorkspaceStatus
from cpv_core.ops.tagging import allocate_and_publish
from cpv_core.ops.target import Target
from cpv_core.plugin.protocols import StageEvent, TrackedArtifact, VersionRecord
from cpv_core.plugin.sources import check_source
from cpv_core.workspace import announce as events
from cpv_core.workspace.history import current_stages, find_version

__all__ = [
    "DATA",
    "MODEL",
    "SEED_KWARGS",
    "CheckpointManager",
    "KindSpec",
    "Target",
    "allocate_and_publish",
    "check_kwargs",
    "check_source",
    "find_version",
    "pull_workspace",
    "revert_targets",
]


class CheckpointManager(Target):
    """One kind of checkpoint in one workspace, with one method per operation."""

    # -- the operations: each lives in its own module ----------------------------------
    def init_workspace(self, dry_run: bool) -> bool:
        """Create the workspace and its remote, or clone it (:mod:`cpv_core.ops.init`)."""
        return workspace_setup.init_workspace(self, dry_run)

    def upload(self, source_path: str | Path | None, metrics: Any, message: str | None, **kwargs: Any) -> UploadResult:
        """Store the target's content and commit its pointer (:mod:`cpv_core.ops.transfer`)."""
        started = time.monotonic()
        result = transfer.upload(self, source_path, metrics, message, **kwargs)
        if not result.dry_run:
            events.upload_finished(self.ws, result, self.target, time.monotonic() - started)
        return result

    def download(
        self, tag: str | None, output_dir: str | Path | None, sub_path: str | None = None, **kwargs: Any
    ) -> tuple[Path, VersionRecord, TrackedArtifact | None]:
        """Materialise version ``tag`` outside the workspace (:mod:`cpv_core.ops.transfer`)."""
        return transfer.download(self, tag, output_dir, sub_path, **kwargs)

    def download_tensors(
        self, tag: str | None, tensors: str, output_dir: str | Path = ".", *, force: bool = False
    ) -> tensor_reads.TensorDownload:
        """Only the tensors ``tensors`` (``'encoder.*,lm_head.weight'``) of safetensors version
        ``tag``, as a safetensors file in ``output_dir``, fetching (in the tensor layout) only their bytes."""
        return tensor_reads.download_tensors(self, tag, tensors, Path(output_dir).expanduser().resolve(), force=force)

    def open_tensors(self, tag: str | None = None, tensors: str | None = None) -> tensor_reads.LazyTensors:
        """``{name: numpy array}`` of safetensors version ``tag``, each fetched and verified on
        first access (:func:`cpv_core.ops.tensors.open_tensors`); close it when done."""
        return tensor_reads.open_tensors(self, tag, tensors)

    def pull(self, **kwargs: Any) -> list[str]:
        """Bring the workspace up to the remote (:func:`cpv_core.ops.pull.pull_workspace`);
        ``dry_run=True`` says what it would update and changes nothing."""
        dry_run, _ = self.options(kwargs)
        return pull_workspace(self.ws, self.echo, dry_run=dry_run)

    def tag(self, version_tag: str | None, message: str | None, **kwargs: Any) -> str:
        """Give the current content a version (:mod:`cpv_core.ops.tagging`)."""
        return tagging.tag(self, version_tag, message, **kwargs)

    def revert(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the target to version ``tag`` as a new commit (:mod:`cpv_core.ops.revert`)."""
        return revert.revert(self, tag, **kwargs)

    def list_versions(self) -> list[str]:
        """Every version of this kind, after fetching (:mod:`cpv_core.ops.inspection`)."""
        return inspection.list_versions(self)

    def diff(self, version_a: str, version_b: str) -> dict[str, Any]:
        """Compare two versions, ``b - a`` (:func:`cpv_core.ops.inspection.diff`)."""
        return inspection.diff(self, version_a, version_b)

    def verify(self, tag: str | None = None, *, remote: bool = False) -> list[str]:
        """Check the stored copy of a version file by file (:func:`cpv_core.ops.inspection.verify`)."""
        return inspection.verify(self, tag, remote=remote)

    def metadata_for(self, record: VersionRecord) -> CheckpointMetadata:
        """The metadata a version records."""
        return inspection.metadata_for(self, record)

    def metadata(self, tag: str | None) -> CheckpointMetadata:
        """Metadata of version ``tag`` (latest by default; the current commit before any tag)."""
        return inspection.metadata(self, tag)

    def list_checkpoints(self) -> list[CheckpointMetadata]:
        """Every version with its metadata, oldest first (after fetching the remote)."""
        return inspection.list_checkpoints(self)

    # -- stages (:mod:`cpv_core.ops.stages`) -------------------------------------------------
    def promote(self, version: str, stage: str, message: str | None = None, **kwargs: Any) -> StageEvent | None:
        """Put ``version`` (any selector: ``v1.2``, ``best:loss``, another stage) into
        ``stage`` under the model's stage rules; ``force=True`` overrides them (recorded).
        Returns the new stage record, or None when nothing changed (or on a dry run)."""
        check_kwargs("promote", kwargs)
        dry_run, force = self.options(kwargs)
        return stages.promote(self, version, stage, message, force=force, dry_run=dry_run)

    def demote(self, stage: str, message: str | None = None, **kwargs: Any) -> StageEvent | None:
        """Empty ``stage``; returns the record of the change (None on a dry run)."""
        check_kwargs("demote", kwargs)
        dry_run, _ = self.options(kwargs)
        return stages.demote(self, stage, message, dry_run=dry_run)

    def stages(self) -> dict[str, str]:
        """Stage -> the version holding it now (after fetching the remote)."""
        return {stage: str(e.version) for stage, e in current_stages(stages.stage_events(self, fetch=True)).items()}

    def stage_history(self, stage: str | None = None) -> list[StageEvent]:
        """Every change of every stage (or of ``stage``): who, when, which version, why."""
        events = stages.stage_events(self, fetch=True)
        return [e for e in events if stage is None or e.stage == stage]

    def stage_rules(self) -> StageRules:
        """The stage rules committed in the model's repository."""
        self.ws.require_initialized()
        return stages.read_rules(self)

    def set_stage_rules(self, rules: str | Path | Mapping[str, Any], **kwargs: Any) -> StageRules:
        """Check and commit stage rules (a JSON file's path, or the rules as a dict), then push."""
        check_kwargs("set_stage_rules", kwargs)
        dry_run, _ = self.options(kwargs)
        raw = json.dumps(rules).encode() if isinstance(rules, Mapping) else Path(rules).expanduser().read_bytes()
        return stages.set_rules(self, raw, dry_run=dry_run)

    def retention_rules(self) -> RetentionRules:
        """The retention rules committed in the model's repository (``cpv gc --policy``)."""
        self.ws.require_initialized()
        return retention.committed_rules(self.ws)

    def set_retention_rules(self, rules: str | Path | Mapping[str, Any], **kwargs: Any) -> RetentionRules:
        """Check and commit retention rules (a JSON file's path, or the rules as a dict), then push."""
        check_kwargs("set_retention_rules", kwargs)
        dry_run, _ = self.options(kwargs)
        raw = json.dumps(rules).encode() if isinstance(rules, Mapping) else Path(rules).expanduser().read_bytes()
        return retention.set_retention_rules(self, raw, dry_run=dry_run)

    # -- whole-workspace operations ----------------------------------------------------------
    def status(self) -> WorkspaceStatus:
        """Every target of the workspace against its committed and tagged versions, and the
        branch against the remote (:func:`cpv_core.ops.status.status`)."""
        return status.status(self)

    def write_report(self, output: str | Path, **kwargs: Any) -> Path:
        """One self-contained HTML report of this kind's versions at ``output``
        (:func:`cpv_core.ops.report.write_report`)."""
        check_kwargs("write_report", kwargs)
        dry_run, _ = self.options(kwargs)
        return report.write_report(self, output, dry_run=dry_run)

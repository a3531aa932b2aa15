"""The target object: one kind of checkpoint (model or data) in one workspace.

:class:`CheckpointManager` holds the workspace, the kind and the read helpers
every operation needs (pointer files, versions, metrics, clean-tree checks);
each operation lives in a module of its own and is reached through a public
method here, which is what the seed classes, the combined manager and the
CLI call:

* :mod:`cpv_core.workspace_setup` - create or clone a workspace;
* :mod:`cpv_core.transfer` - upload and download;
* :mod:`cpv_core.tagging` - allocate and publish versions;
* :mod:`cpv_core.revert` - revert one or several targets in one commit;
* :mod:`cpv_core.inspection` - list, metadata, diff, verify;
* :mod:`cpv_core.pull` - bring the workspace up to the remote.

The managers never run git, DVC, boto3 or a subprocess themselves: they drive
the backends chosen by configuration (see :mod:`cpv_core.backends`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from . import events, inspection, revert, stages, tagging, transfer, workspace_setup
from .artifacts import CheckpointMetadata, UploadResult
from .backends import StageEvent, TrackedArtifact, VersionRecord
from .config import CPVConfig
from .errors import CheckpointNotFoundError, ValidationError, WorkspaceDirtyError
from .history import current_stages, fetch_versions, find_version, require_content
from .kinds import DATA, MODEL, SEED_KWARGS, KindSpec, check_kwargs, check_source
from .metrics import METRICS_FILE, encode_record, latest_field, latest_metrics, parse_log
from .paths import atomic_path
from .pull import pull_workspace
from .records import MAX_UPLOAD_MESSAGE
from .revert import revert_targets
from .stage_rules import StageRules
from .tagging import allocate_and_publish
from .workspace import Workspace

logger = logging.getLogger("cpv")

_M = TypeVar("_M", bound="CheckpointManager")

__all__ = [
    "DATA",
    "MODEL",
    "SEED_KWARGS",
    "CheckpointManager",
    "KindSpec",
    "allocate_and_publish",
    "check_kwargs",
    "check_source",
    "find_version",
    "pull_workspace",
    "revert_targets",
]


class CheckpointManager:
    """Upload/tag/list/download/revert/metadata for one kind of checkpoint
    (the base of :class:`ModelsCheckpointsManage` and :class:`DataCheckpointsManage`)."""

    spec: KindSpec = MODEL

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        *,
        config: CPVConfig | None = None,
        verbose: bool = False,
        dry_run: bool = False,
        echo: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        check_kwargs(type(self).__name__, kwargs, "progress", "lock_timeout", "workspace", "caller")
        #: who calls: "python" or "cli"; fix hints name keyword arguments or flags accordingly
        self.caller = str(kwargs.get("caller") or "python")
        self.verbose = verbose
        self.dry_run = dry_run
        self.echo = echo or self._default_echo
        shared = kwargs.get("workspace")
        self.ws = (
            shared
            if isinstance(shared, Workspace)
            else Workspace(
                team_name,
                model_name,
                repo_path,
                config,
                verbose=verbose,
                progress=bool(kwargs.get("progress", False)),
                lock_timeout=kwargs.get("lock_timeout"),
                caller=self.caller,
            )
        )

    @property
    def team_name(self) -> str:
        return self.ws.team

    @property
    def model_name(self) -> str:
        return self.ws.model

    @property
    def repo_path(self) -> Path:
        return self.ws.path

    @property
    def target(self) -> str:
        """Workspace-relative path this manager versions (``model.bin`` / ``data``)."""
        return self.ws.file_for(self.spec.kind)

    def sibling(self, cls: type[_M]) -> _M:
        """A manager of another kind over the same workspace (same lock, same backends)."""
        return cls(
            self.ws.team,
            self.ws.model,
            self.ws.path,
            verbose=self.verbose,
            dry_run=self.dry_run,
            echo=self.echo,
            workspace=self.ws,
            caller=self.caller,
        )

    def _default_echo(self, line: str) -> None:
        if self.dry_run or self.verbose:
            print(line)
        else:
            logger.info(line)

    def hint(self, *, cli: str, python: str) -> str:
        """The half of a fix hint that speaks the caller's language."""
        return cli if self.caller == "cli" else python

    def plan(self, lines: list[str]) -> list[str]:
        for line in lines:
            self.echo(f"[dry-run] {line}")
        return lines

    def check_repo_path(self, repo_path: str | Path | None) -> None:
        """A ``repo_path`` passed again to a seed method (the seeds do) must be this workspace."""
        if repo_path and Path(repo_path).expanduser().resolve() != self.ws.path:
            raise ValidationError(
                f"repo_path {str(repo_path)!r} is not this manager's workspace {self.ws.path}",
                fix="pass repo_path to the constructor only, or create another manager",
            )

    def options(self, kwargs: Mapping[str, Any]) -> tuple[bool, bool]:
        """Per-call ``dry_run`` / ``force`` (seed style ``**kwargs``)."""
        return bool(kwargs.get("dry_run", self.dry_run)), bool(kwargs.get("force", False))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        path = self.ws.path / METRICS_FILE
        existing = path.read_bytes() if path.exists() else b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        with atomic_path(path) as tmp:
            tmp.write_bytes(existing + encode_record(record))

    def fetch(self, *, required: bool) -> None:
        """Fetch the remote's branch and tags; offline, warn (or raise when ``required``)."""
        fetch_versions(self.ws, required=required)

    def records(self) -> list[VersionRecord]:
        return self.ws.versioning.list_versions(self.spec.kind)

    def find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord:
        return find_version(
            self.ws,
            self.spec.kind,
            tag,
            fetch=fetch,
            create_hint="upload and tag one first ("
            + self.hint(
                cli=f"`cpv {self.spec.kind} upload`, `cpv {self.spec.kind} tag`",
                python=f"upload_{self.spec.kind}_checkpoint(), tag_{self.spec.kind}_checkpoint()",
            )
            + ")",
        )

    def require_content(self, record: VersionRecord) -> None:
        """Refuse a version whose content ``cpv gc`` removed, saying when."""
        require_content(self.ws, self.spec.kind, record)

    def target_at(self, rev: str) -> str:
        """The workspace path this kind had at ``rev`` (models may change name or
        become directories from one version to the next)."""
        return self.ws.file_at(self.spec.kind, rev)

    def pointer(self, rev: str) -> bytes | None:
        """The pointer file of this manager's target at ``rev`` (no checkout); None when absent."""
        return self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(self.target_at(rev)))

    def pointer_info(self, rev: str) -> TrackedArtifact | None:
        target = self.target_at(rev)
        pointer = self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(target))
        return self.ws.storage.describe_pointer(target, pointer) if pointer else None

    def current_metrics(self, rev: str = "HEAD") -> dict[str, Any]:
        """The latest metrics of this kind in ``metrics.log`` at ``rev``."""
        return latest_metrics(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind)

    def require_clean_target(self, action: str, force: bool) -> dict[str, str]:
        status = self.ws.storage.status([self.target])
        dirty = {p: s for p, s in status.items() if s in {"modified", "untracked"}}
        changed = self.ws.versioning.changed_files([self.ws.storage.pointer_path(self.target), METRICS_FILE])
        if (dirty or changed) and not force:
            what = ", ".join([f"{p} ({s})" for p, s in dirty.items()] + changed)
            upload = self.hint(cli=f"`cpv {self.spec.kind} upload`", python=f"upload_{self.spec.kind}_checkpoint()")
            if action == "tag":  # tag has no force: what is tagged must be what is stored
                fix = f"upload them first ({upload}), then tag"
            else:
                fix = f"upload them first ({upload}) or {self.hint(cli='pass --force', python='pass force=True')} to discard them"
            raise WorkspaceDirtyError(f"cannot {action}: uncommitted changes in {self.ws.path}: {what}", fix=fix)
        return dirty

    def tag_metadata(self, info: TrackedArtifact) -> dict[str, Any]:
        """What a version of this kind records about the current commit."""
        return {
            "path": self.target,
            "digest": info.digest,
            "size": info.size,
            "nfiles": info.nfiles,
            "metrics": self.current_metrics(),
            "lineage": self.lineage(),
            "upload_message": self.upload_messages(),
            **{name: value for name in ("params", "code") if (value := self.current_field(name))},
        }

    def current_field(self, name: str, rev: str = "HEAD") -> dict[str, Any]:
        """The newest ``params`` or ``code`` of this kind in ``metrics.log`` at ``rev``."""
        return latest_field(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind, name)

    def same_content_as(self, digest: str, records: list[VersionRecord] | None = None) -> str | None:
        """The newest version of this kind whose content is ``digest``, if any (among
        ``records`` when the caller has just read them)."""
        same = [r.version for r in (self.records() if records is None else records) if r.metadata.get("digest") == digest]
        return same[-1] if same else None

    def upload_messages(self) -> str:
        """The messages of this kind's uploads since its latest version (or ever, before
        the first), oldest first, joined with "; ": what a version says when its tag has none."""
        records = self.records()
        before = parse_log(self.ws.versioning.read_file(records[-1].commit, METRICS_FILE)) if records else []
        seen = {encode_record(r) for r in before}
        messages = [
            str(r["message"])
            for r in parse_log(self.ws.versioning.read_file("HEAD", METRICS_FILE))
            if r.get("kind") == self.spec.kind and r.get("event") == "upload" and r.get("message") and encode_record(r) not in seen
        ]
        return "; ".join(dict.fromkeys(messages))[:MAX_UPLOAD_MESSAGE]

    def lineage(self) -> dict[str, Any]:
        """What a version of this kind records about the other kinds it came from (none by default)."""
        return {}

    def check_taggable(self) -> TrackedArtifact:
        info = self.pointer_info("HEAD")
        if info is None:
            raise CheckpointNotFoundError(
                f"nothing to tag: no {self.spec.kind} has been uploaded to {self.ws.team}/{self.ws.model}",
                fix=self.hint(cli=f"run `cpv {self.spec.kind} upload` first", python=f"call upload_{self.spec.kind}_checkpoint() first"),
            )
        self.require_clean_target("tag", force=False)
        return info

    # -- the operations: each lives in its own module ----------------------------------
    def init_workspace(self, dry_run: bool) -> bool:
        """Create the workspace and its remote, or clone it (:mod:`cpv_core.workspace_setup`)."""
        return workspace_setup.init_workspace(self, dry_run)

    def upload(self, source_path: str | Path | None, metrics: Any, message: str | None, **kwargs: Any) -> UploadResult:
        """Store the target's content and commit its pointer (:mod:`cpv_core.transfer`)."""
        started = time.monotonic()
        result = transfer.upload(self, source_path, metrics, message, **kwargs)
        if not result.dry_run:
            events.upload_finished(self.ws, result, self.target, time.monotonic() - started)
        return result

    def download(
        self, tag: str | None, output_dir: str | Path | None, sub_path: str | None = None, **kwargs: Any
    ) -> tuple[Path, VersionRecord, TrackedArtifact | None]:
        """Materialise version ``tag`` outside the workspace (:mod:`cpv_core.transfer`)."""
        return transfer.download(self, tag, output_dir, sub_path, **kwargs)

    def pull(self, **kwargs: Any) -> list[str]:
        """Bring the workspace up to the remote (:func:`cpv_core.pull.pull_workspace`);
        ``dry_run=True`` says what it would update and changes nothing."""
        dry_run, _ = self.options(kwargs)
        return pull_workspace(self.ws, self.echo, dry_run=dry_run)

    def tag(self, version_tag: str | None, message: str | None, **kwargs: Any) -> str:
        """Give the current content a version (:mod:`cpv_core.tagging`)."""
        return tagging.tag(self, version_tag, message, **kwargs)

    def revert(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the target to version ``tag`` as a new commit (:mod:`cpv_core.revert`)."""
        return revert.revert(self, tag, **kwargs)

    def list_versions(self) -> list[str]:
        """Every version of this kind, after fetching (:mod:`cpv_core.inspection`)."""
        return inspection.list_versions(self)

    def diff(self, version_a: str, version_b: str) -> dict[str, Any]:
        """Compare two versions, ``b - a`` (:func:`cpv_core.inspection.diff`)."""
        return inspection.diff(self, version_a, version_b)

    def verify(self, tag: str | None = None, *, remote: bool = False) -> list[str]:
        """Check the stored copy of a version file by file (:func:`cpv_core.inspection.verify`)."""
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

    # -- stages (:mod:`cpv_core.stages`) -------------------------------------------------
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

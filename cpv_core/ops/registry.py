"""The registry view: every team/model the configured remotes hold, with their
latest versions and stages, read without a workspace.

Models are found by the plugins (``cpv_enumerate_models``: the local default
scans its repositories, ``dvc-s3`` lists the bucket's ``{team}/{model}/``
prefixes) and among this machine's workspaces. Each is read from a private,
bare mirror under ``$CPV_HOME/registry/{team}/{model}`` that the versioning
backend brings up to date (git: one fetch of the tags and the branch; no
clone, no checkout, no bytes from storage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cpv_core.domain.kinds import VERSION_KINDS
from cpv_core.domain.names import validate_name
from cpv_core.errors import CheckpointNotFoundError, CPVError
from cpv_core.ops.inspection import metadata_for
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.protocols import VersionRecord
from cpv_core.workspace.history import current_stages, latest_record, parse_selector, select_version
from cpv_core.workspace.meta import META_FILE
from cpv_core.workspace.workspace import Workspace

if TYPE_CHECKING:
    from cpv_core.domain.artifacts import CheckpointMetadata
    from cpv_core.ops.target import Target

logger = logging.getLogger("cpv")

KINDS = VERSION_KINDS


@dataclass
class RegistryEntry:
    """One team/model as its remote records it."""

    team: str
    model: str
    latest: dict[str, str | None] = field(default_factory=dict)
    stages: dict[str, dict[str, str]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    updated: str = ""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def local_workspaces(config: CPVConfig) -> list[tuple[str, str]]:
    """``(team, model)`` of every workspace under the workspace root."""
    root = config.workspace_root()
    found = []
    if root.is_dir():
        for meta in sorted(root.glob(f"*/*/{META_FILE}")):
            team, model = meta.parts[-4], meta.parts[-3]
            try:
                found.append((validate_name(team, "team name"), validate_name(model, "model name")))
            except CPVError:
                continue
    return found


def mirror(team: str, model: str, config: CPVConfig) -> Workspace:
    """A read-only view of ``team/model``'s remote, brought up to date. A model with a
    workspace on this machine is read through the backends it was created with (a model
    made before `cpv setup` switched hosting still lives on its old host)."""
    recorded: dict[str, str] = {}
    try:
        local = Workspace(team, model, config=config)
        if local.meta_path.is_file():
            recorded = {k: local.backend_name(k) for k in ("storage", "hosting", "versioning")}
    except CPVError:
        recorded = {}  # an unreadable workspace.json: the configured backends, as before
    ws = Workspace(team, model, config.config_dir / "registry" / team / model, config, backends=recorded)
    ws.versioning.mirror(ws.hosting.remote_url())
    return ws


def describe(ws: Workspace) -> RegistryEntry:
    """Latest version, version count and current stages of every kind, and the last change."""
    entry = RegistryEntry(ws.team, ws.model)
    dates = []
    for kind in KINDS:
        records = ws.versioning.list_versions(kind)
        entry.versions[kind] = len(records)
        entry.latest[kind] = latest_record(records).version if records else None
        events = ws.versioning.list_stage_events(kind)
        held = current_stages(events)
        if held:
            entry.stages[kind] = {stage: str(e.version) for stage, e in held.items()}
        dates += [r.date for r in records] + [e.date for e in events]
    entry.updated = max((d for d in dates if d), default="")
    return entry


def registry(config: CPVConfig, plugins: Any) -> list[RegistryEntry]:
    """Every known team/model with what its remote records (an unreachable one
    is listed with its error, never hiding the others)."""
    pairs = sorted(set(plugins.enumerate_models(config)) | set(local_workspaces(config)))
    entries = []
    for team, model in pairs:
        try:
            entries.append(describe(mirror(team, model, config)))
        except CPVError as exc:
            entries.append(RegistryEntry(team, model, error=exc.message))
    return entries


def remote_checkpoints(cls: type[Target], view: Workspace) -> list[CheckpointMetadata]:
    """Every version of ``cls``'s kind as the mirror ``view`` (:func:`mirror`) records it."""
    m = cls(view.team, view.model, workspace=view)
    return [metadata_for(m, r) for r in view.versioning.list_versions(m.spec.kind)]


def remote_version(cls: type[Target], view: Workspace, selector: str | None) -> CheckpointMetadata:
    """The version ``selector`` picks, as the mirror ``view`` (:func:`mirror`) records it."""
    m = cls(view.team, view.model, workspace=view)
    kind = m.spec.kind
    records: list[VersionRecord] = view.versioning.list_versions(kind)
    if not records:
        raise CheckpointNotFoundError(
            f"{view.team}/{view.model} has no {kind} versions yet", fix=f"upload and tag one first (`cpv {kind} tag`)"
        )
    chosen = parse_selector(selector)
    events = view.versioning.list_stage_events(kind) if isinstance(chosen, str) else []
    return metadata_for(m, select_version(records, chosen, events, kind, f"{view.team}/{view.model}"))

"""``list`` and ``info`` as a person asks them: versions with the stages they hold,
filtered by stage and metric gates and sorted by a metric; read from the remote
(one fetch, no clone) when there is no workspace on this machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cpv_core.domain.metrics import metric_number
from cpv_core.ops.inspection import list_checkpoints, metadata
from cpv_core.ops.registry import mirror, remote_checkpoints, remote_version
from cpv_core.workspace.history import current_stages

if TYPE_CHECKING:
    from cpv_core.domain.stage_rules import Gate
    from cpv_core.ops.target import Target


def metric_sort_key(metrics: dict[str, Any], name: str) -> tuple[int, float]:
    """Numbers first, lowest first; versions without the metric (or not a number) last."""
    value = metric_number(metrics, name)
    return (0, value) if value is not None else (1, 0.0)


def version_listing(
    mgr: Target,
    echo: Callable[[str], None],
    *,
    stage: str | None = None,
    sort_by: str | None = None,
    gates: Sequence[Gate] = (),
) -> list[dict[str, Any]]:
    """Every version of ``mgr``'s kind as a row (its metadata, ``stages`` it holds now,
    ``pruned`` when gc removed its bytes), oldest first unless ``sort_by`` a metric;
    only the holder of ``stage`` and the versions meeting every gate."""
    kind = mgr.spec.kind
    if not mgr.ws.is_initialized():  # no workspace here: read the remote (no clone, no checkout)
        echo(f"(no local workspace: read from the remote of {mgr.team_name}/{mgr.model_name})")
        remote = mirror(mgr.team_name, mgr.model_name, mgr.ws.config)  # one fetch
        metas, view = remote_checkpoints(type(mgr), remote), remote.versioning
    else:
        metas, view = list_checkpoints(mgr), mgr.ws.versioning
    held: dict[str, list[str]] = {}
    for name, event in current_stages(view.list_stage_events(kind)).items():
        held.setdefault(str(event.version), []).append(name)
    pruned = view.pruned_versions(kind)
    rows = [{**meta.to_dict(), "stages": held.get(str(meta.version), []), "pruned": pruned.get(str(meta.version))} for meta in metas]
    if stage is not None:
        rows = [r for r in rows if stage in r["stages"]]
    rows = [r for r in rows if not any(g.failure(r["metrics"]) for g in gates)]
    if sort_by:
        rows.sort(key=lambda r: metric_sort_key(r["metrics"], sort_by))
    return rows


def version_info(mgr: Target, selector: str | None, echo: Callable[[str], None]) -> dict[str, Any]:
    """The metadata of version ``selector`` (latest by default) as JSON-ready data;
    from the remote when there is no workspace on this machine."""
    if not mgr.ws.is_initialized():
        echo(f"(no local workspace: read from the remote of {mgr.team_name}/{mgr.model_name})")
        return remote_version(type(mgr), mirror(mgr.team_name, mgr.model_name, mgr.ws.config), selector).to_dict()
    return metadata(mgr, selector).to_dict()

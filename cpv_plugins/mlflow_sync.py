"""Listener plugin ``mlflow_sync``: mirrors cpv's versions and stages into an
MLflow model registry, so a team keeps MLflow's UI while cpv stays the source
of truth.

Off until a tracking URI is configured: ``cpv config set mlflow.tracking_uri
sqlite:///…`` (or MLflow's own ``MLFLOW_TRACKING_URI``); the registry is
``mlflow.registry_uri`` / ``MLFLOW_REGISTRY_URI``, else the tracking URI.
MLflow itself comes with the optional extra: ``pip install 'cpv[mlflow]'``
(``mlflow-skinny``, plus SQLAlchemy and Alembic for a database store).

What lands where:

* each published version becomes a run in the experiment ``cpv/{team}/{model}``
  (its numeric metrics as MLflow metrics, the rest as tags) and a model version
  of the registered model ``{team}.{model}`` (``{team}.{model}.data`` and
  ``….checkpoint`` for the other kinds), whose source is the URL of the stored
  bytes and whose tags carry cpv's version, commit and digest;
* a promotion sets the MLflow alias named after the stage on that model
  version; a demotion removes the alias.

Syncing is idempotent (a version already registered is found by its
``cpv.version`` tag), and ``cpv mlflow-sync -t TEAM -m MODEL`` brings over every
version and stage an earlier sync missed, e.g. while the tracking server was down.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cpv_core import hookimpl
from cpv_core.plugin.protocols import SettingInfo

if TYPE_CHECKING:  # cpv_core.plugin.events is imported when an event comes, not at start-up
    import click

    from cpv_core.plugin.events import PublishedVersion, StageChange

logger = logging.getLogger("cpv.mlflow")

TRACKING_KEY = "mlflow.tracking_uri"
REGISTRY_KEY = "mlflow.registry_uri"
VERSION_TAG = "cpv.version"


@hookimpl
def cpv_settings() -> list[SettingInfo]:
    return [
        SettingInfo(TRACKING_KEY, "MLflow tracking URI that cpv's versions and stages are mirrored to (default: $MLFLOW_TRACKING_URI)"),
        SettingInfo(REGISTRY_KEY, "MLflow model registry URI (default: the tracking URI)"),
    ]


def tracking_uri(config: Any) -> str | None:
    """The MLflow tracking URI in force, None when the sync is off."""
    return config.get_config(TRACKING_KEY) or os.environ.get("MLFLOW_TRACKING_URI") or None


def make_client(config: Any) -> Any | None:
    """An ``MlflowClient`` for the configured URIs, None when the sync is off."""
    uri = tracking_uri(config)
    if not uri:
        return None
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise RuntimeError(f"{TRACKING_KEY} is set but MLflow is not installed: pip install 'cpv[mlflow]'") from None
    registry = config.get_config(REGISTRY_KEY) or os.environ.get("MLFLOW_REGISTRY_URI") or uri
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def registered_model_name(team: str, model: str, kind: str) -> str:
    """``team.model`` for models; ``team.model.data`` / ``team.model.checkpoint`` for the other kinds."""
    return f"{team}.{model}" if kind == "model" else f"{team}.{model}.{kind}"


def _ensure(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args)``, where "already exists" is success (a sync may run twice)."""
    from mlflow.exceptions import MlflowException

    try:
        return call(*args, **kwargs)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return None


def find_model_version(client: Any, name: str, version: str) -> Any | None:
    """The MLflow model version of ``name`` that mirrors cpv ``version``, if synced."""
    for mv in client.search_model_versions(f"name='{name}'"):
        if (mv.tags or {}).get(VERSION_TAG) == version:
            return mv
    return None


#: what MLflow accepts in a metric or tag name (its own rule, colon excluded as on Windows)
_NAME_OK = re.compile(r"[/\w.\- ]")
MAX_NAME = 250  # MLflow's limit on a metric or tag name
MAX_TAG_VALUE = 5000  # below MLflow's limit on a tag value (8000 today, 5000 in older servers)
NAMES_TAG = "cpv.metric_names"


def mlflow_name(name: str, taken: set[str]) -> str:
    """``name`` as MLflow accepts it: every other character becomes ``_``, no name that
    would resolve to another path (``a/../b``, ``/x``, ``.``), at most 250 characters,
    and distinct from every name in ``taken`` (``_2``, ``_3`` ... on a collision)."""
    mapped = "".join(ch if _NAME_OK.fullmatch(ch) else "_" for ch in name)
    parts = [p if p not in {"", ".", ".."} else "_" for p in mapped.split("/")]
    mapped = "/".join(parts)[:MAX_NAME] or "_"
    candidate, n = mapped, 1
    while candidate in taken:
        n += 1
        suffix = f"_{n}"
        candidate = mapped[: MAX_NAME - len(suffix)] + suffix
    taken.add(candidate)
    return candidate


def split_metrics(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """Numbers become MLflow metrics; anything else (text, lists) a ``metric.*`` tag. Nested
    metrics are flattened (``acc.top1``). Names MLflow refuses (``recall@10``) are mapped
    to ones it accepts; the third dict maps each mapped name back to cpv's."""
    from cpv_core.domain.metrics import flatten_metrics

    numeric: dict[str, float] = {}
    other: dict[str, str] = {}
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    flat = flatten_metrics(metrics)
    valid = {str(key) for key in flat if mlflow_name(str(key), set()) == key}
    taken.update(valid)  # names MLflow accepts keep them; mapped ones never take theirs
    for key, value in flat.items():
        name = str(key) if key in valid else mlflow_name(str(key), taken)
        if name != key:
            renamed[name] = str(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            numeric[name] = float(value)
        else:
            other[f"metric.{name}"[:MAX_NAME]] = str(value)[:MAX_TAG_VALUE]
    return numeric, other, renamed


def mlflow_params(params: Any) -> dict[str, str]:
    """A version's hyperparameters (``--params``) as MLflow params: flattened, names MLflow
    accepts (as for metrics), values as text of at most 6000 characters."""
    from cpv_core.domain.metrics import flatten_metrics

    if not isinstance(params, Mapping):
        return {}
    taken: set[str] = set()
    return {
        mlflow_name(str(key), taken): (value if isinstance(value, str) else json.dumps(value))[:6000]
        for key, value in flatten_metrics(params).items()
    }


def sync_version(client: Any, record: PublishedVersion) -> str:
    """Register ``record`` (a run with its metrics, then a model version); returns the
    MLflow version number. A version synced before is left as it is. Everything MLflow
    could refuse is decided before the run is created; a run whose logging or
    registration fails is deleted, so no orphan run stays behind."""
    name = registered_model_name(record.team, record.model, record.kind)
    _ensure(client.create_registered_model, name, description=f"Mirrored from cpv {record.team}/{record.model} ({record.kind})")
    existing = find_model_version(client, name, record.version)
    if existing is not None:
        return str(existing.version)
    experiment_name = f"cpv/{record.team}/{record.model}"
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    tags = {
        VERSION_TAG: record.version,
        "cpv.kind": record.kind,
        "cpv.commit": record.commit,
        "cpv.author": record.author[:MAX_TAG_VALUE],
        "cpv.digest": record.digest,
        "cpv.remote": record.remote[:MAX_TAG_VALUE],
    }
    numeric, other, renamed = split_metrics(record.metrics)
    params = mlflow_params(record.metadata.get("params"))
    found = record.metadata.get("code")
    code: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    run_tags = {**tags, **other, **{f"cpv.code.{k}": str(v)[:MAX_TAG_VALUE] for k, v in code.items()}}
    if renamed:
        run_tags[NAMES_TAG] = json.dumps(renamed, sort_keys=True)[:MAX_TAG_VALUE]
    from mlflow.entities import Metric, Param

    run = client.create_run(experiment_id, run_name=f"{record.kind} {record.version}", tags=run_tags)
    try:
        stamp = int(time.time() * 1000)
        items = [Metric(key, value, stamp, 0) for key, value in numeric.items()]
        for start in range(0, len(items), 1000):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run.info.run_id, metrics=items[start : start + 1000])
        pairs = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(pairs), 100):  # and at most 100 params
            client.log_batch(run.info.run_id, params=pairs[start : start + 100])
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(
            name,
            source=record.source_uri or record.remote,
            run_id=run.info.run_id,
            tags=tags,
            description=record.message or None,
        )
    except BaseException:
        client.delete_run(run.info.run_id)
        raise
    logger.info("MLflow: %s version %s mirrors cpv %s", name, mv.version, record.version)
    return str(mv.version)


def sync_stage(client: Any, change: StageChange) -> None:
    """Point the alias ``change.stage`` at the mirrored version (or remove it)."""
    name = registered_model_name(change.team, change.model, change.kind)
    if change.version is None:
        from mlflow.exceptions import MlflowException

        try:
            client.delete_registered_model_alias(name, change.stage)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        return
    mv = find_model_version(client, name, change.version)
    if mv is None:
        raise RuntimeError(f"{name} has no MLflow version mirroring {change.version}; run `cpv mlflow-sync` to bring it over")
    client.set_registered_model_alias(name, change.stage, mv.version)


@hookimpl
def cpv_version_published(record: PublishedVersion, config: Any) -> None:
    client = make_client(config)
    if client is not None:
        sync_version(client, record)


@hookimpl
def cpv_stage_changed(change: StageChange, config: Any) -> None:
    client = make_client(config)
    if client is not None:
        sync_stage(client, change)


def sync_all(client: Any, records: Iterable[PublishedVersion], stages: Iterable[StageChange]) -> tuple[int, int, list[str]]:
    """Mirror every version, then every current stage, going on past a failure; returns
    (versions, stages) synced and one line per failure."""
    versions, count, failures = 0, 0, []
    for record in records:
        try:
            sync_version(client, record)
            versions += 1
        except Exception as exc:  # noqa: BLE001 - one version MLflow refuses must not stop the others
            failures.append(f"{record.kind} {record.version}: {failure_text(exc)}")
    for change in stages:
        try:
            sync_stage(client, change)
            count += 1
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{change.kind} stage {change.stage}: {failure_text(exc)}")
    return versions, count, failures


def failure_text(exc: BaseException) -> str:
    """One line for a failed sync: MLflow's message, shown as text, cut short."""
    from cpv_core.trust import visible

    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return visible(str(text).splitlines()[0] if str(text).strip() else type(exc).__name__)[:300]


@hookimpl
def cpv_register_commands(cli: click.Group) -> None:
    """``cpv mlflow-sync``: mirror every version and current stage of a model."""
    import click

    from cpv_core.cli.api import Ctx, dry_run_option, emit_json, json_option, target_options

    @cli.command("mlflow-sync")
    @target_options(message_uses_m=False)
    @dry_run_option
    @json_option
    @click.pass_obj
    def mlflow_sync(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, dry_run: bool, as_json: bool) -> None:
        """Mirror every version and current stage of a model into the MLflow registry
        (what a sync that failed, e.g. while MLflow was down, missed)."""
        from cpv_core.cli.api import Workspace, published_versions, resolve_target, stage_holders
        from cpv_core.errors import ConfigError
        from cpv_core.plugin.config import CPVConfig

        config = CPVConfig()
        client = make_client(config)
        if client is None:
            raise ConfigError("MLflow sync is off: no tracking URI", fix=f"cpv config set {TRACKING_KEY} URI (or set MLFLOW_TRACKING_URI)")
        team, model, repo = resolve_target(team_name, model_name, repo_path)
        ws = Workspace(team, model, repo, config=config)
        if dry_run:  # what a sync would bring over (already mirrored ones are left as they are)
            records, holders = list(published_versions(ws)), list(stage_holders(ws))
            if as_json:
                emit_json(
                    {
                        "versions": [f"{r.kind} {r.version}" for r in records],
                        "stages": [f"{c.kind} {c.stage}" for c in holders],
                        "dry_run": True,
                    }
                )
                return
            for r in records:
                ctx.echo(f"[dry-run] would mirror {r.kind} {r.version} unless MLflow has it")
            for c in holders:
                ctx.echo(f"[dry-run] would point the alias {c.stage} at {c.kind} {c.version}")
            return
        versions, stages, failures = sync_all(client, published_versions(ws), stage_holders(ws))
        for line in failures:
            ctx.echo(f"MLflow: not mirrored: {line}")
        if as_json:
            emit_json({"versions": versions, "stages": stages, "failures": failures, "dry_run": False})
        else:
            ctx.echo(f"MLflow: {versions} version(s) and {stages} stage(s) of {team}/{model} mirrored")
        if failures:
            from cpv_core.errors import CPVError

            raise CPVError(
                f"{len(failures)} version(s) or stage(s) could not be mirrored into MLflow",
                fix="see the lines above; run `cpv mlflow-sync` again once the cause is fixed",
            )

"""Lifecycle events: what plugins hear after cpv has changed the remote state.

Three hooks (:mod:`cpv_core.hookspecs`): ``cpv_version_published``,
``cpv_stage_changed`` and ``cpv_upload_finished``. They are called only after
the remote state is final (the tag or stage record is pushed, the upload's
commit is pushed), so a listener can never undo or fail a publish:

* every listener runs in a thread of its own, all at once, and cpv waits for
  them at most ``events.timeout`` seconds (default 5) in total;
* an exception or a listener still running at the bound is logged as one
  warning naming the plugin, and the command goes on as if nothing happened.

Events carry plain data (the records below) and the configuration, never a
workspace or a backend: a listener reports, it does not act on the model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .kinds import VERSION_KINDS
from .plugins import Plugins

if TYPE_CHECKING:
    from .artifacts import UploadResult
    from .backends import StageEvent, VersionRecord
    from .config import CPVConfig
    from .workspace import Workspace

logger = logging.getLogger("cpv.events")

#: seconds cpv waits, in total, for the listeners of one event
DEFAULT_TIMEOUT_S = 5.0
TIMEOUT_KEY = "events.timeout"


@dataclass(frozen=True)
class PublishedVersion:
    """A version that is now on the remote (``cpv_version_published``).

    :param kind: ``"model"``, ``"data"`` or ``"checkpoint"`` (a combined version).
    :param source_uri: where the stored bytes are (``s3://bucket/…/files/md5/ab/…``,
        ``file:///…``); empty for a combined version, which names other versions.
    :param remote: the git remote the version was pushed to.
    """

    team: str
    model: str
    kind: str
    version: str
    commit: str
    author: str
    date: str
    message: str
    metrics: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""
    size: int = 0
    path: str = ""
    source_uri: str = ""
    remote: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class StageChange:
    """A stage that now has another holder (``cpv_stage_changed``).

    :param version: the version promoted to ``stage``; None when the stage was emptied.
    :param previous: the version that held ``stage`` before, if any.
    :param forced: the stage rules the change overrode (``--force``).
    """

    team: str
    model: str
    kind: str
    stage: str
    version: str | None
    previous: str | None
    author: str
    date: str
    message: str
    forced: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class UploadFinished:
    """An upload whose commit is on the remote (``cpv_upload_finished``); not yet a version.

    :param changed: False when the content was already stored and nothing was committed.
    :param seconds: how long the upload took, start to push.
    """

    team: str
    model: str
    kind: str
    path: str
    commit: str | None
    digest: str
    size: int
    nfiles: int
    metrics: Mapping[str, Any]
    changed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


def listener_timeout(config: CPVConfig) -> float:
    """``events.timeout`` from the config (seconds), or the default for a missing or bad value."""
    raw = config.get_config(TIMEOUT_KEY)
    try:
        value = float(raw) if raw is not None else DEFAULT_TIMEOUT_S
    except (TypeError, ValueError):
        logger.warning("%s = %r is not a number of seconds; using %s", TIMEOUT_KEY, raw, DEFAULT_TIMEOUT_S)
        return DEFAULT_TIMEOUT_S
    return min(max(value, 0.0), 600.0)


@dataclass
class ListenerOutcome:
    """How one plugin's listener ended: ``"ok"``, ``"failed"`` (with the error) or ``"timeout"``."""

    plugin: str
    status: str = "timeout"
    error: str = ""


def emit(hook_name: str, config: CPVConfig, *, plugins: Plugins | None = None, **event: Any) -> list[ListenerOutcome]:
    """Call every plugin's ``hook_name`` with ``config`` and ``event``, each in its own
    thread, waiting at most ``events.timeout`` seconds in all. Never raises: failures
    and overruns are logged with the plugin's name and returned."""
    plugins = plugins or Plugins()
    caller = getattr(plugins.pm.hook, hook_name)
    impls = [impl for impl in caller.get_hookimpls() if not (impl.hookwrapper or getattr(impl, "wrapper", False))]
    if not impls:
        return []
    arguments = {"config": config, **event}
    outcomes: list[ListenerOutcome] = []
    threads: list[threading.Thread] = []
    for impl in impls:
        outcome = ListenerOutcome(impl.plugin_name)
        outcomes.append(outcome)

        def run(impl: Any = impl, outcome: ListenerOutcome = outcome) -> None:
            try:
                impl.function(**{name: arguments.get(name) for name in impl.argnames})
                outcome.status = "ok"
            except BaseException as exc:  # noqa: BLE001 - a listener's failure is reported, never propagated
                outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=run, name=f"cpv-event-{impl.plugin_name}", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + listener_timeout(config)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for outcome in outcomes:
        if outcome.status == "failed":
            logger.warning("plugin %r failed on %s (the publish stands): %s", outcome.plugin, hook_name, outcome.error)
        elif outcome.status == "timeout":
            logger.warning(
                "plugin %r did not finish %s within %ss; cpv went on without it (raise %s to wait longer)",
                outcome.plugin,
                hook_name,
                listener_timeout(config),
                TIMEOUT_KEY,
            )
    return outcomes


def published_version(ws: Workspace, record: VersionRecord) -> PublishedVersion:
    """The event data of a version of ``ws``."""
    meta = record.metadata
    digest = str(meta.get("digest") or "")
    return PublishedVersion(
        team=ws.team,
        model=ws.model,
        kind=record.kind,
        version=record.version,
        commit=record.commit,
        author=record.author,
        date=record.date,
        message=record.message,
        metrics=dict(meta.get("metrics") or {}),
        digest=digest,
        size=int(meta.get("size") or 0),
        path=str(meta.get("path") or ""),
        source_uri=source_uri(ws, digest),
        remote=ws.hosting.remote_url(),
        metadata=dict(meta),
    )


def version_published(ws: Workspace, records: Sequence[VersionRecord]) -> None:
    """Tell the listeners about versions that are now on the remote."""
    for record in records:
        emit("cpv_version_published", ws.config, plugins=ws.plugins, record=published_version(ws, record))


def published_versions(ws: Workspace) -> list[PublishedVersion]:
    """Every version of every kind the remote holds, oldest first per kind (for a
    listener plugin's catch-up command, e.g. ``cpv mlflow-sync``)."""
    from .history import fetch_versions

    fetch_versions(ws, required=True)
    return [published_version(ws, r) for kind in VERSION_KINDS for r in ws.versioning.list_versions(kind)]


def stage_holders(ws: Workspace) -> list[StageChange]:
    """Every stage's current holder, as the stage change that made it so."""
    from .history import current_stages

    out = []
    for kind in VERSION_KINDS:
        for event in current_stages(ws.versioning.list_stage_events(kind)).values():
            out.append(stage_change(ws, event, None))
    return out


def source_uri(ws: Workspace, digest: str) -> str:
    """The storage backend's URL of ``digest``; empty when there is none or the
    digest (read from the repository) is not a valid object id."""
    if not digest:
        return ""
    try:
        return str(ws.storage.object_url(digest))
    except Exception as exc:  # noqa: BLE001 - an event must never fail a publish that happened
        logger.info("no source URL for %r: %s", digest, exc)
        return ""


def stage_changed(ws: Workspace, event: StageEvent, previous: str | None) -> None:
    """Tell the listeners that ``event`` is now on the remote."""
    emit("cpv_stage_changed", ws.config, plugins=ws.plugins, change=stage_change(ws, event, previous))


def stage_change(ws: Workspace, event: StageEvent, previous: str | None) -> StageChange:
    """The event data of a stage record of ``ws``."""
    return StageChange(
        team=ws.team,
        model=ws.model,
        kind=event.kind,
        stage=event.stage,
        version=event.version,
        previous=previous,
        author=event.author,
        date=event.date,
        message=event.message,
        forced=tuple(event.forced),
    )


def upload_finished(ws: Workspace, result: UploadResult, path: str, seconds: float) -> None:
    """Tell the listeners that an upload's commit is on the remote (``path``: where the
    target is now, relative to the workspace)."""
    upload = UploadFinished(
        team=ws.team,
        model=ws.model,
        kind=result.kind,
        path=path,
        commit=result.commit,
        digest=result.digest,
        size=result.size,
        nfiles=result.nfiles,
        metrics=result.metrics,
        changed=result.changed,
        seconds=round(seconds, 3),
    )
    emit("cpv_upload_finished", ws.config, plugins=ws.plugins, upload=upload)

"""Lifecycle events: what plugins hear after cpv has changed the remote state.

Three hooks (:mod:`cpv_core.plugin.hookspecs`): ``cpv_version_published``,
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cpv_core.domain.event_records import PublishedVersion, StageChange, UploadFinished
from cpv_core.plugin.manager import Plugins

if TYPE_CHECKING:
    from cpv_core.plugin.config import CPVConfig

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_KEY",
    "ListenerOutcome",
    "PublishedVersion",
    "StageChange",
    "UploadFinished",
    "emit",
    "listener_timeout",
]

logger = logging.getLogger("cpv.events")

#: seconds cpv waits, in total, for the listeners of one event
DEFAULT_TIMEOUT_S = 5.0
TIMEOUT_KEY = "events.timeout"


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

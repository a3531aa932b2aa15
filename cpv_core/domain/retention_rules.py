"""Retention rules: which versions of a model ``cpv gc --policy`` keeps, and why. Pure
parsing and deciding, no I/O.

The rules live in the model's repository (``.cpv/retention.json``), so every member and
CI apply the same ones; like the stage rules they are data, parsed by a fixed grammar::

    {"keep_stages": true,
     "keep_last": 3,
     "keep_best": [{"metric": "wer", "k": 2}, {"metric": "acc.top1", "k": 1, "mode": "max"}],
     "keep_days": 7,
     "thin": "day"}

A version is kept when any rule keeps it: it holds a stage now (``keep_stages``, on by
default: a stage's bytes are protected by gc anyway), it is one of the newest
``keep_last``, one of the ``k`` best by a metric, younger than ``keep_days``, or, older
than that, the newest of its day (``thin: "day"``, UTC) or of its epoch (``thin:
"epoch"``, the ``epoch`` metric). Everything else is pruned.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cpv_core.domain.metrics import metric_number
from cpv_core.errors import ValidationError
from cpv_core.trust import json_object, visible

RETENTION_FILE = ".cpv/retention.json"
MAX_RETENTION_BYTES = 16 * 1024
MAX_BEST_RULES = 16
_KEYS = {"keep_stages", "keep_last", "keep_best", "keep_days", "thin"}
_METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
THIN_UNITS = ("day", "epoch")


@dataclass(frozen=True)
class BestRule:
    """Keep the ``k`` versions with the lowest (``mode="min"``) or highest value of ``metric``."""

    metric: str
    k: int
    mode: str = "min"


@dataclass(frozen=True)
class RetentionRules:
    """A checked ``.cpv/retention.json`` (see the module docstring)."""

    keep_stages: bool = True
    keep_last: int = 0
    keep_best: tuple[BestRule, ...] = ()
    keep_days: float | None = None
    thin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keep_stages": self.keep_stages, "keep_last": self.keep_last}
        if self.keep_best:
            out["keep_best"] = [{"metric": b.metric, "k": b.k, "mode": b.mode} for b in self.keep_best]
        if self.keep_days is not None:
            out["keep_days"] = self.keep_days
        if self.thin is not None:
            out["thin"] = self.thin
        return out


@dataclass(frozen=True)
class VersionFacts:
    """What the rules look at of one version: its name, creation time (POSIX) and metrics."""

    version: str
    created: float
    metrics: Mapping[str, Any]


def _fail(where: str, what: str) -> ValidationError:
    return ValidationError(
        f"{where}: {what}",
        fix='write rules such as {"keep_last": 3, "keep_best": [{"metric": "wer", "k": 2}], "keep_days": 7, "thin": "day"} '
        "(docs/concepts.md), then `cpv model retention set FILE`",
    )


def _count(value: object, where: str, key: str, limit: int) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise _fail(where, f"{key} is {visible(repr(value))[:40]}, not a whole number from 0 to {limit}")
    return value


def _best(value: object, where: str) -> tuple[BestRule, ...]:
    if not isinstance(value, list) or len(value) > MAX_BEST_RULES:
        raise _fail(where, f"keep_best is not a list of at most {MAX_BEST_RULES} rules")
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"metric", "k"} <= set(item) <= {"metric", "k", "mode"}:
            raise _fail(where, f"keep_best[{i}] is not {{metric, k, mode}}")
        metric, mode = item["metric"], item.get("mode", "min")
        if not isinstance(metric, str) or not _METRIC_RE.fullmatch(metric):
            raise _fail(where, f"keep_best[{i}].metric {visible(repr(metric))[:60]} is not a metric name")
        if mode not in ("min", "max"):
            raise _fail(where, f"keep_best[{i}].mode {visible(repr(mode))[:20]} is not min or max")
        rules.append(BestRule(metric, _count(item["k"], where, f"keep_best[{i}].k", 1000), mode))
    return tuple(rules)


def parse_retention(raw: bytes, where: str = RETENTION_FILE) -> RetentionRules:
    """Parse and check retention rules (from a user's file or the repository); any
    problem is one :class:`ValidationError` naming the key, and nothing is applied."""
    if len(raw) > MAX_RETENTION_BYTES:
        raise _fail(where, f"{len(raw)} bytes, more than rules can be ({MAX_RETENTION_BYTES})")
    doc = json_object(raw, where, "write the rules as a JSON object (docs/concepts.md)")
    unknown = set(doc) - _KEYS
    if unknown:
        raise _fail(where, f"unknown key {visible(repr(sorted(unknown)[0]))[:60]} (known: {', '.join(sorted(_KEYS))})")
    keep_stages = doc.get("keep_stages", True)
    if not isinstance(keep_stages, bool):
        raise _fail(where, "keep_stages is not true or false")
    days = doc.get("keep_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 <= days <= 36500):
        raise _fail(where, f"keep_days is {visible(repr(days))[:40]}, not a number of days from 0 to 36500")
    thin = doc.get("thin")
    if thin is not None and thin not in THIN_UNITS:
        raise _fail(where, f"thin is {visible(repr(thin))[:40]}, not one of {', '.join(THIN_UNITS)}")
    rules = RetentionRules(
        keep_stages=keep_stages,
        keep_last=_count(doc.get("keep_last", 0), where, "keep_last", 100_000),
        keep_best=_best(doc.get("keep_best", []), where),
        keep_days=float(days) if days is not None else None,
        thin=thin,
    )
    if not (rules.keep_last or any(b.k for b in rules.keep_best) or rules.keep_days is not None or rules.thin):
        raise _fail(where, "these rules keep no version but the stage holders: say what to keep")
    return rules


def created_at(date: str) -> float:
    """An ISO-8601 creation time as POSIX seconds (0 for a value that is not one: such a
    version counts as old, never as young)."""
    try:
        return datetime.fromisoformat(date).timestamp()
    except (TypeError, ValueError):
        return 0.0


def fates(versions: Sequence[VersionFacts], rules: RetentionRules, holders: set[str], now: float) -> dict[str, list[str]]:
    """Why each version is kept (an empty list: pruned), versions oldest first."""
    reasons: dict[str, list[str]] = {v.version: [] for v in versions}
    if rules.keep_stages:
        for v in versions:
            if v.version in holders:
                reasons[v.version].append("holds a stage")
    for v in versions[len(versions) - rules.keep_last :] if rules.keep_last else []:
        reasons[v.version].append(f"one of the last {rules.keep_last}")
    for best in rules.keep_best:
        scored = [(value, i, v) for i, v in enumerate(versions) if (value := metric_number(v.metrics, best.metric)) is not None]
        scored.sort(key=lambda s: (s[0] if best.mode == "min" else -s[0], -s[1]))  # the newer wins a tie
        for _, _, v in scored[: best.k]:
            reasons[v.version].append(f"{best.k} best by {best.metric} ({best.mode})")
    young_after = now - rules.keep_days * 86400 if rules.keep_days is not None else None
    newest_of: dict[object, str] = {}
    for v in versions:
        if young_after is not None and v.created > young_after:
            reasons[v.version].append(f"younger than {rules.keep_days:g} days")
        elif rules.thin == "day":
            newest_of[datetime.fromtimestamp(v.created, tz=timezone.utc).date() if v.created else None] = v.version
        elif rules.thin == "epoch":
            epoch = metric_number(v.metrics, "epoch")
            if epoch is not None:
                newest_of[epoch] = v.version
    for key, version in newest_of.items():
        if key is not None:
            reasons[version].append(f"newest of its {rules.thin} ({key})")
    return reasons

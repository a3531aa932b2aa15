"""Finding versions: fetch the remote's tags, then look a version up by name."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .backends import StageEvent, VersionRecord
from .errors import CheckpointNotFoundError, GitError, ValidationError
from .metrics import metric_number
from .stage_rules import is_stage_name
from .trust import visible
from .versions import Version
from .workspace import Workspace

_METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")

logger = logging.getLogger("cpv")


def parse_tag_arg(tag: str | None) -> Version | None:
    """The version a user named (``"v1.2"``), or None for "the latest"."""
    return None if tag is None else Version.parse(tag)


def fetch_versions(ws: Workspace, *, required: bool) -> None:
    """Fetch the remote's branch and tags; offline, warn (or raise when ``required``)."""
    try:
        ws.versioning.fetch()
    except GitError as exc:
        if required:
            raise
        logger.warning("could not reach the remote (%s); showing local versions only", exc.message)


def find_version(ws: Workspace, kind: str, tag: str | None, *, fetch: bool, create_hint: str) -> VersionRecord:
    """The version ``tag`` selects (default: the latest), fetching first when it is
    not known locally; :class:`CheckpointNotFoundError` listing what exists.

    Selectors: ``latest``; a version (``v1.2``); a stage (``prod``: the version
    holding it now); ``best:METRIC`` (lowest value) or ``best:METRIC:max``
    (highest) among the versions that record that metric as a number.
    """
    selector = parse_selector(tag)
    ws.require_initialized()
    ws.repair()
    records = ws.versioning.list_versions(kind)
    wanted = selector if isinstance(selector, Version) else None
    moving = isinstance(selector, (Best, str))  # a stage or a best-of may have changed on the remote: ask it
    unknown = wanted is not None and not any(r.version == str(wanted) for r in records)
    if fetch and (not records or moving or unknown):
        fetch_versions(ws, required=False)
        records = ws.versioning.list_versions(kind)
    if not records:
        raise CheckpointNotFoundError(f"{ws.team}/{ws.model} has no {kind} versions yet", fix=create_hint)
    events = ws.versioning.list_stage_events(kind) if isinstance(selector, str) else []
    return select_version(records, selector, events, kind, f"{ws.team}/{ws.model}")


def select_version(
    records: Sequence[VersionRecord], selector: Version | Best | str | None, events: Sequence[StageEvent], kind: str, where: str
) -> VersionRecord:
    """The record ``selector`` (from :func:`parse_selector`) picks among ``records``
    (non-empty); ``events`` are the kind's stage changes, for a stage selector."""
    if selector is None:
        return records[-1]
    if isinstance(selector, Best):
        return best_version(list(records), selector, kind)
    wanted = selector
    if isinstance(selector, str):
        holders = current_stages(events)
        holder = holders.get(selector)
        if holder is None:
            held = ", ".join(f"{s} ({e.version})" for s, e in holders.items()) or "none"
            raise CheckpointNotFoundError(
                f"no {kind} version holds stage {visible(selector)} in {where}",
                fix=f"promote one first (`cpv {kind} promote VERSION --stage {selector}`); stages held now: {held}",
            )
        wanted = Version.parse(str(holder.version))
    for record in records:
        if record.version == str(wanted):
            return record
    raise CheckpointNotFoundError(
        f"{kind} version {wanted} does not exist for {where}",
        fix=f"choose one of: {', '.join(r.version for r in records[-10:])}",
    )


@dataclass(frozen=True)
class Best:
    """``best:METRIC[:max|:min]``: the version with the lowest (or highest) value."""

    metric: str
    highest: bool


def parse_selector(tag: str | None) -> Version | Best | str | None:
    """What a user's version argument selects: None (latest), a :class:`Version`,
    a :class:`Best`, or a stage name; :class:`ValidationError` for anything else."""
    if tag is None or tag == "latest":
        return None
    if isinstance(tag, str) and tag.startswith("best:"):
        metric, _, direction = tag.removeprefix("best:").partition(":")
        if not _METRIC_RE.fullmatch(metric) or direction not in {"", "min", "max"}:
            raise ValidationError(
                f"selector {visible(repr(tag))} is not best:METRIC or best:METRIC:max",
                fix="e.g. best:loss (lowest) or best:accuracy:max (highest); nested metrics are dotted: best:acc.top1:max",
            )
        return Best(metric, direction == "max")
    if isinstance(tag, str) and Version.is_valid(tag):
        return Version.parse(tag)
    if isinstance(tag, str) and re.fullmatch(r"v\d.*", tag):
        Version.parse(tag)  # meant as a version: its own error (v0.0, leading zeros, v1)
    if isinstance(tag, str) and is_stage_name(tag):
        return tag
    raise ValidationError(
        f"{visible(repr(tag))} is not a version, a stage or a selector",
        fix="use a version (v1.2), latest, a stage name (prod) or best:METRIC[:max]",
    )


def best_version(records: list[VersionRecord], best: Best, kind: str) -> VersionRecord:
    """The record whose metric ``best.metric`` is lowest (highest); the newest wins a tie."""
    scored = []
    for record in records:
        value = metric_number(record.metadata.get("metrics") or {}, best.metric)
        if value is not None:
            scored.append((value, Version.parse(record.version), record))
    if not scored:
        raise CheckpointNotFoundError(
            f"no {kind} version records the metric {visible(best.metric)}",
            fix="choose a metric the versions record (see `cpv " + kind + " list`)",
        )
    best_value = max(v for v, _, _ in scored) if best.highest else min(v for v, _, _ in scored)
    return max((item for item in scored if item[0] == best_value), key=lambda item: item[1])[2]


def current_stages(events: Sequence[StageEvent]) -> dict[str, StageEvent]:
    """Stage -> the event that put its current version there (emptied stages are left out)."""
    newest: dict[str, StageEvent] = {}
    for event in events:
        if event.stage not in newest or event.number > newest[event.stage].number:
            newest[event.stage] = event
    return {stage: e for stage, e in sorted(newest.items()) if e.version is not None}

"""Finding versions: fetch the remote's tags, then look a version up by name."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cpv_core.domain.metrics import metric_number
from cpv_core.domain.stage_rules import is_stage_name
from cpv_core.domain.versions import Version
from cpv_core.errors import CheckpointNotFoundError, GitError, ValidationError
from cpv_core.plugin.protocols import StageEvent, VersionRecord
from cpv_core.trust import visible
from cpv_core.workspace.workspace import Workspace

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
        latest = latest_record(records)
        if latest is not records[-1]:
            logger.warning(
                "%s %s: at the ceiling (a component of 999999), never taken for the latest; "
                "remove it from the remote with `git push origin --delete %s/VERSION` if nobody meant it",
                kind,
                ", ".join(r.version for r in records if Version.parse(r.version).at_ceiling),
                kind,
            )
        return latest
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


def latest_record(records: Sequence[VersionRecord]) -> VersionRecord:
    """The newest of ``records`` (sorted, non-empty) that is not at the ceiling
    (:attr:`~cpv_core.domain.versions.Version.at_ceiling`); the newest of all when every one is."""
    usable = [r for r in records if not Version.parse(r.version).at_ceiling]
    return (usable or list(records))[-1]


def require_content(ws: Workspace, kind: str, record: VersionRecord) -> None:
    """Refuse a version whose content ``cpv gc`` removed (its ``pruned`` mark), saying when."""
    pruned = ws.versioning.pruned_versions(kind).get(record.version)
    if pruned is not None:
        raise CheckpointNotFoundError(
            f"the content of {kind} {record.version} was removed by cpv gc on {pruned[:10] or 'an earlier run'}",
            fix=f"choose a version that was kept (`cpv {kind} list` marks pruned ones)",
        )


def numbered_events(events: Sequence[StageEvent]) -> list[StageEvent]:
    """Each stage's records 1, 2, 3 ... up to its first gap. cpv numbers every change one
    past the last it saw, so a record after a gap (``stage/model/prod/999999`` pushed by
    hand) is not one of its changes: it is left out with one warning, so it can neither
    hold the stage nor use up the numbering."""
    kept: list[StageEvent] = []
    stray: list[str] = []
    count: dict[str, int] = {}
    for event in sorted(events, key=lambda e: (e.stage, e.number)):
        if event.number == count.get(event.stage, 0) + 1:
            count[event.stage] = event.number
            kept.append(event)
        else:
            stray.append(event.ref.removeprefix("refs/tags/"))
    if stray:
        logger.warning(
            "ignoring stage record(s) %s: not numbered on from the stage's last change (remove them from the remote with "
            "`git push origin --delete TAG`)",
            ", ".join(visible(s) for s in stray[:5]) + (" ..." if len(stray) > 5 else ""),
        )
    return kept


def current_stages(events: Sequence[StageEvent]) -> dict[str, StageEvent]:
    """Stage -> the event that put its current version there (emptied stages are left out;
    records after a gap in a stage's numbering are ignored: :func:`numbered_events`)."""
    newest: dict[str, StageEvent] = {}
    for event in numbered_events(events):
        if event.stage not in newest or event.number > newest[event.stage].number:
            newest[event.stage] = event
    return {stage: e for stage, e in sorted(newest.items()) if e.version is not None}

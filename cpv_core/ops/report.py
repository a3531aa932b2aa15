"""A model's history to look at: one self-contained HTML report (``cpv report``)
and a terminal sparkline per metric (``cpv model plot``).

The report has no script and fetches nothing when opened (no CDN, no web
font): every version with its metrics, stages, data lineage and message, and
one inline SVG chart per numeric metric across versions, with the versions
holding a stage marked. Everything read from the repository (messages,
metric names, authors) is escaped: it is shown, never interpreted.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv_core.domain.metrics import as_number, flatten_metrics, format_metrics, format_value
from cpv_core.ops.inspection import list_checkpoints

if TYPE_CHECKING:
    from cpv_core.ops.target import Target

SPARKS = "▁▂▃▄▅▆▇█"
WIDTH, HEIGHT, PAD = 640, 220, 40
#: room left of the y axis for its labels (``-1.234e-05`` at 11 px), so none is clipped
LEFT = 76


@dataclass(frozen=True)
class VersionRow:
    """What the report shows of one version."""

    version: str
    date: str
    author: str
    message: str
    metrics: dict[str, Any]
    stages: tuple[str, ...] = ()
    data: str = ""
    pruned: str = ""
    params: dict[str, Any] | None = None


def version_rows(mgr: Target) -> list[VersionRow]:
    """Every version of ``mgr``'s kind as the report shows it (after fetching the remote)."""
    from cpv_core.workspace.history import current_stages

    metas = list_checkpoints(mgr)
    held: dict[str, list[str]] = {}
    for stage, event in current_stages(mgr.ws.versioning.list_stage_events(mgr.spec.kind)).items():
        held.setdefault(str(event.version), []).append(stage)
    pruned = mgr.ws.versioning.pruned_versions(mgr.spec.kind)
    return [
        VersionRow(
            version=str(m.version),
            date=m.date,
            author=m.author,
            message=m.message,
            metrics=m.metrics,
            stages=tuple(held.get(str(m.version), [])),
            data=str(m.lineage.get("data") or ""),
            pruned=pruned.get(str(m.version), ""),
            params=m.params,
        )
        for m in metas
    ]


#: the report draws at most this many charts (the first numeric metrics, in the order
#: the versions record them); every metric stays in the table
MAX_PLOTTED_SERIES = 60


def numeric_series(rows: Sequence[VersionRow]) -> dict[str, list[float | None]]:
    """Metric -> its value in each version (None where a version lacks it), numeric metrics only.
    Each version's metrics are flattened once: linear in the number of metrics."""
    flat = [{name: as_number(value) for name, value in flatten_metrics(row.metrics).items()} for row in rows]
    names = dict.fromkeys(name for values in flat for name, number in values.items() if number is not None)
    return {name: [values.get(name) for values in flat] for name in names}


def sparkline(values: Sequence[float | None]) -> str:
    """``▇▅▃▂▁``: one block per version (a space where it has no value)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low or 1.0
    return "".join(" " if v is None else SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values)


def plot_lines(rows: Sequence[VersionRow], metric: str) -> list[str]:
    """The lines ``cpv model plot METRIC`` prints."""
    values = numeric_series(rows).get(metric)
    if values is None:
        return []
    known = [(v, r.version) for v, r in zip(values, rows) if v is not None]
    low, high = min(known), max(known)
    return [
        f"{metric}  {rows[0].version} {sparkline(values)} {rows[-1].version}",
        f"min {format_value(low[0])} ({low[1]})  max {format_value(high[0])} ({high[1]})  latest {format_value(known[-1][0])} ({known[-1][1]})",
    ]


def _chart(metric: str, values: Sequence[float | None], rows: Sequence[VersionRow]) -> str:
    known = [v for v in values if v is not None]
    low, high = min(known), max(known)
    span = high - low or 1.0
    step = (WIDTH - LEFT - PAD) / max(1, len(values) - 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return LEFT + i * step, HEIGHT - PAD - (v - low) / span * (HEIGHT - 2 * PAD)

    points = [xy(i, v) for i, v in enumerate(values) if v is not None]
    parts = [
        f'<svg class="metric-plot" data-metric="{html.escape(metric)}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(metric)} across versions">',
        f'<line x1="{LEFT}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{PAD}" x2="{LEFT}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="{LEFT - 4}" y="{PAD}" class="tick" text-anchor="end">{high:.4g}</text>',
        f'<text x="{LEFT - 4}" y="{HEIGHT - PAD}" class="tick" text-anchor="end">{low:.4g}</text>',
    ]
    for i, row in enumerate(rows):
        x = LEFT + i * step
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - PAD + 16}" class="tick" text-anchor="middle">{html.escape(row.version)}</text>')
        if row.stages:
            label = html.escape(",".join(row.stages))
            parts.append(f'<line x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{HEIGHT - PAD}" class="stage-marker"/>')
            parts.append(f'<text x="{x:.1f}" y="{PAD - 6}" class="stage-label" text-anchor="middle">{label}</text>')
    parts.append(f'<polyline class="series" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>')
    for (x, y), (i, v) in zip(points, [(i, v) for i, v in enumerate(values) if v is not None]):
        title = html.escape(f"{rows[i].version}: {metric}={format_value(v)}")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="point"><title>{title}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1d2230; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #dde1ea; vertical-align: top; }
th { background: #f3f5f9; } td.num { font-variant-numeric: tabular-nums; }
.stage { display: inline-block; padding: 0 6px; border-radius: 8px; background: #e3f1e6; color: #17652c; font-size: 12px; }
.pruned { color: #a33; }
figure { display: inline-block; margin: 0 1.5em 1.5em 0; } figcaption { font-weight: 600; }
svg .axis { stroke: #9aa3b5; } svg .tick { font-size: 11px; fill: #5b6478; }
svg .series { fill: none; stroke: #2f5dd3; stroke-width: 2; } svg .point { fill: #2f5dd3; }
svg .stage-marker { stroke: #17652c; stroke-dasharray: 4 3; } svg .stage-label { font-size: 11px; fill: #17652c; }
"""


def render_html(team: str, model: str, rows: Sequence[VersionRow], generated: str) -> str:
    """The whole report, one self-contained HTML document."""
    e = html.escape
    series = numeric_series(rows)
    plotted = list(series.items())[:MAX_PLOTTED_SERIES]
    charts = "".join(f"<figure><figcaption>{e(name)}</figcaption>{_chart(name, values, rows)}</figure>" for name, values in plotted)
    if len(series) > len(plotted):
        charts += f"<p class=more>{len(series) - len(plotted)} more numeric metric(s) not plotted (the first {MAX_PLOTTED_SERIES} are); all are in the table.</p>"
    body_rows = "".join(
        "<tr>"
        f"<td>{e(r.version)}</td><td>{e(r.date[:19])}</td><td>{e(r.author)}</td><td>{e(r.message)}</td>"
        f'<td class="num">{e(format_metrics(r.metrics))}</td>'
        f'<td class="num">{e(format_metrics(r.params or {}))}</td>'
        f"<td>{''.join(f'<span class=stage>{e(s)}</span> ' for s in r.stages)}</td>"
        f"<td>{e(r.data)}</td>"
        f"<td>{'<span class=pruned>pruned ' + e(r.pruned[:10]) + '</span>' if r.pruned else ''}</td>"
        "</tr>"
        for r in rows
    )
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(team)} / {e(model)}: model versions</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{e(team)} / {e(model)}</h1><p>{len(rows)} model version(s); generated {e(generated)} by cpv.</p>"
        f"<h2>Metrics across versions</h2>{charts or '<p>No numeric metrics recorded.</p>'}"
        "<h2>Versions</h2><table><thead><tr><th>version</th><th>date</th><th>author</th><th>message</th>"
        "<th>metrics</th><th>params</th><th>stages</th><th>data</th><th>state</th></tr></thead>"
        f"<tbody>{body_rows}</tbody></table></body></html>\n"
    )


def write_report(mgr: Target, output: str | Path, *, dry_run: bool = False) -> Path:
    """``cpv report``: the model's versions as one self-contained HTML file at
    ``output`` (written whole or not at all); on a dry run, only said."""
    from datetime import datetime, timezone

    from cpv_core.paths import atomic_write_bytes

    rows = version_rows(mgr)
    path = Path(output).expanduser().resolve()
    if dry_run:
        mgr.echo(f"[dry-run] would write {path}: {len(rows)} {mgr.spec.kind} version(s)")
        return path
    page = render_html(mgr.team_name, mgr.model_name, rows, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_bytes(path, page.encode())
    return path

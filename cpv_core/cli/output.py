"""What the commands print: JSON, aligned tables (every cell escaped), and the
longer human renderings (a diff, a gc plan)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import click

from cpv_core.cli.terminal import out
from cpv_core.domain.cost import monthly
from cpv_core.domain.metrics import format_metrics, format_value
from cpv_core.plugin.progress import human_bytes
from cpv_core.trust import visible

if TYPE_CHECKING:
    from cpv_core.cli.options import Ctx
    from cpv_core.plugin.protocols import StageEvent

logger = logging.getLogger("cpv")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))  # JSON escapes control characters itself


def render_table(headers: list[str], rows: list[list[str]]) -> None:
    """Aligned columns under an upper-case header; every cell escaped (one line per row,
    whatever a message holds)."""
    cells = [[visible(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    out("\n".join(lines))  # one write: a thousand rows cost 20 ms as a thousand echoes


def print_table(rows: list[dict[str, Any]], ctx: Ctx) -> None:
    if not rows:
        ctx.echo("no versions yet")
        return
    render_table(
        ["version", "date", "author", "message", "metrics", "size", "stages"],
        [
            [
                row["version"] or "-",
                (row["date"] or "")[:19],
                row["author"][:20],
                (row["message"] or "")[:40],
                format_metrics(row["metrics"]),
                "pruned" if row.get("pruned") else human_bytes(row["size"]),
                ",".join(row.get("stages", [])),
            ]
            for row in rows
        ],
    )


def stage_event_row(event: StageEvent) -> dict[str, Any]:
    """A stage change as JSON: stage, number, version (null: emptied), author, date, message, forced."""
    return {
        "stage": event.stage,
        "number": event.number,
        "version": event.version,
        "author": event.author,
        "date": event.date,
        "message": event.message,
        "forced": list(event.forced),
    }


def describe_code(code: dict[str, Any]) -> str:
    """``a1b2c3d4e5 on main (uncommitted changes)``: the training code a version came from."""
    if not code:
        return "-"
    where = f" on {code['branch']}" if code.get("branch") else ""
    return f"{code['commit'][:10]}{where}" + (" (uncommitted changes)" if code.get("dirty") else "")


def show_diff(kind: str, d: dict[str, Any], as_json: bool) -> None:
    """Print what :meth:`CheckpointManager.diff` found (``cpv diff``, ``cpv model diff``)."""
    if as_json:
        emit_json(d)
        return
    out(f"{kind} {d['a']} -> {d['b']}")
    for name, row in [*d["metrics"].items(), *((f"param {n}", r) for n, r in d.get("params", {}).items())]:
        delta = "" if row["delta"] is None else f"  ({row['delta']:+.6g})"
        a = "-" if row["a"] is None else format_value(row["a"])
        b = "-" if row["b"] is None else format_value(row["b"])
        out(f"  {visible(name):20} {visible(a):>12} -> {visible(b):<12}{delta}")
    out(f"  {'hash':20} {'changed' if d['digest']['changed'] else 'unchanged'}: {d['digest']['a']} -> {d['digest']['b']}")
    out(f"  {'size':20} {human_bytes(d['size']['a'])} -> {human_bytes(d['size']['b'])} ({d['size']['delta']:+d} bytes)")
    for change in ("added", "removed", "changed"):
        for name in d["files"][change]:
            out(f"  {change:8} {visible(name)}")
    for name, t in d.get("tensors", {}).items():
        if "error" in t:
            out(f"  tensors of {visible(name)}: not compared ({visible(t['error'])})")
            continue
        out(
            f"  tensors of {visible(name)}: {len(t['changed'])} changed, {len(t['added'])} added, {len(t['removed'])} removed, "
            f"{len(t['reshaped'])} reshaped, {t['unchanged']} unchanged"
        )
        for c in t["changed"]:
            how = (
                "bytes differ"
                if c["max_abs"] is None
                else f"max-abs {c['max_abs']:.3g}, rel-L2 " + ("n/a" if c["rel_l2"] is None else f"{c['rel_l2']:.3g}")
            )
            out(f"    changed   {visible(c['name'])} ({how})")
        for r in t["reshaped"]:
            out(f"    reshaped  {visible(r['name'])} {r['a']['dtype']}{r['a']['shape']} -> {r['b']['dtype']}{r['b']['shape']}")
        for label in ("added", "removed"):
            for tensor in t[label]:
                out(f"    {label:9} {visible(tensor)}")


def show_gc(results: dict[str, Any], all_models: bool, grace: float, *, dry_run: bool, price: float | None = None) -> None:
    """The lines `cpv gc` prints for its results (or its plan)."""
    prefix = "[dry-run] would " if dry_run else ""
    for name, result in results.items():
        if all_models:
            out(f"{name}:")
        for kind in ("model", "data"):
            out(f"{kind}: keep {', '.join(result.kept.get(kind, [])) or 'none'}; prune {', '.join(result.pruned.get(kind, [])) or 'none'}")
            for version, why in result.fates.get(kind, {}).items():  # the retention rules' reasons
                out(f"  {kind} {version}: " + (f"kept: {'; '.join(why)}" if why else "pruned: no rule keeps it"))
        saved = f" (${monthly(result.freed, price):,.4f} a month at ${price:g}/GB-month)" if price is not None else ""
        out(
            f"{prefix}delete {len(result.deleted)} object(s), {human_bytes(result.freed)} freed{saved}"
            + (f"; {result.spared_young} younger than {grace:g} h spared" if result.spared_young else "")
        )
        if result.aborted_uploads:
            out(
                f"{prefix}abort {result.aborted_uploads} incomplete upload(s) older than {grace:g} h ({human_bytes(result.aborted_bytes)} of parts)"
            )
        for kind, versions in result.deleted_versions.items():
            if versions:
                out(f"{kind} versions removed from the history: {', '.join(versions)}")

"""Stages and the registry: ``promote``, ``demote``, ``stages`` (shared by model,
data and combined checkpoints), and ``registry`` (alias ``models``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cpv_core.cli.options import (
    Ctx,
    Where,
    dry_run_option,
    json_option,
    target,
    version_completer,
)
from cpv_core.cli.output import (
    emit_json,
    render_table,
    stage_event_row,
)
from cpv_core.cli.terminal import out
from cpv_core.trust import visible

if TYPE_CHECKING:
    pass

logger = logging.getLogger("cpv")


def promote_command(kind: str, make: Callable[..., Any]) -> click.Command:
    """`promote` for ``kind``, on the managers ``make`` builds."""

    @click.command("promote")
    @click.argument("version", shell_complete=version_completer(kind))
    @click.option("--stage", required=True, help="The stage (e.g. prod).")
    @target(message_uses_m=True)
    @click.option("--message", "-m", help="Why (kept in the stage history).")
    @click.option("--force", is_flag=True, help="Override the stage rules (the override is recorded).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def promote(
        ctx: Ctx,
        version: str,
        stage: str,
        where: Where,
        message: str | None,
        force: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Put VERSION (v1.2, best:loss, another stage ...) into a stage, under the model's stage rules."""
        m = make(ctx, where, dry_run, message=message)
        event = m.promote(version, stage, message, force=force, dry_run=dry_run)
        if as_json:
            emit_json({"kind": kind, "stage": stage, "changed": event is not None, "event": stage_event_row(event) if event else None})
        elif event is not None:
            out(f"{stage} {event.version}")

    return promote


def demote_command(kind: str, make: Callable[..., Any]) -> click.Command:
    """`demote` for ``kind``, on the managers ``make`` builds."""

    @click.command("demote")
    @click.option("--stage", required=True, help="The stage to empty.")
    @target(message_uses_m=True)
    @click.option("--message", "-m", help="Why (kept in the stage history).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def demote(
        ctx: Ctx,
        stage: str,
        where: Where,
        message: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Empty a stage (its version stays, and keeps any other stage)."""
        m = make(ctx, where, dry_run, message=message)
        event = m.demote(stage, message, dry_run=dry_run)
        if as_json:
            emit_json({"kind": kind, "stage": stage, "event": stage_event_row(event) if event else None})

    return demote


def stages_command(kind: str, make: Callable[..., Any]) -> click.Command:
    """`stages` for ``kind``, on the managers ``make`` builds."""

    @click.command("stages")
    @target(message_uses_m=False)
    @click.option("--history", is_flag=True, help="Every change: who, when, which version, why.")
    @json_option
    @click.pass_obj
    def stages_(ctx: Ctx, where: Where, history: bool, as_json: bool) -> None:
        """Which version holds each stage now (--history: every change)."""
        from cpv_core.workspace.history import current_stages

        m = make(ctx, where)
        events = m.stage_history()
        from cpv_core.ops.stages import read_rules

        order = {stage: i for i, stage in enumerate(read_rules(m).order)}  # the rules' order, then by name
        events = sorted(events, key=lambda e: (order.get(e.stage, len(order)), e.stage, e.number))
        shown = events if history else sorted(current_stages(events).values(), key=lambda e: (order.get(e.stage, len(order)), e.stage))
        rows = [stage_event_row(e) for e in shown]
        if as_json:
            emit_json({"kind": kind, "team": m.ws.team, "model": m.ws.model, "history" if history else "stages": rows})
        elif not rows:
            ctx.echo(f"no {kind} version holds a stage yet")
        else:
            render_table(
                ["stage", "version", "date", "author", "message", *(["#", "forced"] if history else [])],
                [
                    [r["stage"], r["version"] or "(emptied)", r["date"][:19], r["author"][:20], r["message"][:40]]
                    + ([str(r["number"]), "; ".join(r["forced"])] if history else [])
                    for r in rows
                ],
            )

    return stages_


def add_stage_commands(group: click.Group, kind: str, make: Callable[..., Any]) -> None:
    """``promote``, ``demote`` and ``stages`` on ``group``, for managers ``make`` builds
    (model, data and combined checkpoints share them)."""
    for factory in (promote_command, demote_command, stages_command):
        group.add_command(factory(kind, make))


@click.command("registry")
@json_option
@click.pass_obj
def registry_cmd(ctx: Ctx, as_json: bool) -> None:
    """Every team/model the configured remotes hold: latest versions, stages, last change (no clone)."""
    from cpv_core.ops.registry import registry
    from cpv_core.plugin.config import CPVConfig
    from cpv_core.plugin.manager import Plugins

    entries = registry(CPVConfig(), Plugins())
    if as_json:
        emit_json({"models": [e.to_dict() for e in entries]})
        return
    if not entries:
        ctx.echo("no models found (cpv init model -t TEAM -m MODEL creates one)")
        return
    render_table(
        ["team", "model", "model latest", "data latest", "stages", "updated"],
        [
            [
                e.team,
                e.model,
                e.latest.get("model") or "-",
                e.latest.get("data") or "-",
                " ".join(f"{s}={v}" for s, v in e.stages.get("model", {}).items()) or ("unreadable (below)" if e.error else "-"),
                e.updated[:19],
            ]
            for e in entries
        ],
    )
    for e in entries:  # an error is a line of its own, never squeezed into a column
        if e.error:
            out(f"{e.team}/{e.model}: {visible(e.error)}")

"""``cpv checkpoint ...``: model and data versioned together."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from cpv_core.cli.options import (
    Ctx,
    Where,
    combined,
    dry_run_option,
    json_option,
    target,
    version_completer,
)
from cpv_core.cli.output import (
    emit_json,
    render_table,
)
from cpv_core.cli.stage_commands import add_stage_commands
from cpv_core.cli.terminal import out
from cpv_core.domain.metrics import format_metrics
from cpv_core.plugin.progress import human_bytes
from cpv_core.trust import visible

if TYPE_CHECKING:
    pass

logger = logging.getLogger("cpv")


@click.group("checkpoint")
def checkpoint_group() -> None:
    """Version model and data together (one atomic push); list, revert, inspect."""


add_stage_commands(checkpoint_group, "checkpoint", combined)


@checkpoint_group.command("create")
@target(message_uses_m=True)
@click.option("--version", "version_tag", help="One version for model, data and checkpoint (must be free in all three).")
@click.option("--major", is_flag=True, help="Bump the major versions.")
@click.option("--message", "-m", help="Message for the model (and the checkpoint).")
@click.option("--data-message", help="Message for the data version.")
@dry_run_option
@json_option
@click.pass_obj
def checkpoint_create(
    ctx: Ctx,
    where: Where,
    version_tag: str | None,
    major: bool,
    message: str | None,
    data_message: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Tag the current model and data together; prints model, data and checkpoint versions."""
    c = combined(ctx, where, dry_run, message=message)
    model_v, data_v = c.tag_model_and_data(version_tag, model_message=message, data_message=data_message, major=major, dry_run=dry_run)
    checkpoint_v = None if dry_run else c.get_combined_metadata().version
    if as_json:
        emit_json({"checkpoint": checkpoint_v, "model": model_v, "data": data_v, "dry_run": dry_run})
    elif not dry_run:
        out(f"checkpoint {checkpoint_v}: model {model_v}, data {data_v}")


@checkpoint_group.command("list")
@target(message_uses_m=False)
@json_option
@click.pass_obj
def checkpoint_list(ctx: Ctx, where: Where, as_json: bool) -> None:
    """List combined versions with the model and data versions they name."""
    c = combined(ctx, where)
    rows = [meta.to_dict() for meta in c.list_checkpoints()]
    if as_json:
        emit_json({"kind": "checkpoint", "team": c.ws.team, "model": c.ws.model, "versions": rows})
        return
    if not rows:
        ctx.echo("no combined versions yet")
        return
    render_table(
        ["version", "model", "data", "date", "message", "model metrics"],
        [
            [
                row["version"],
                row["lineage"]["model"],
                row["lineage"]["data"],
                row["date"][:19],
                row["message"][:40],
                format_metrics(row["model"]["metrics"]),
            ]
            for row in rows
        ],
    )


@checkpoint_group.command("revert")
@click.argument("version", shell_complete=version_completer("checkpoint"))
@target(message_uses_m=False)
@click.option("--force", is_flag=True, help="Revert even with uncommitted changes (they are kept in the cache).")
@dry_run_option
@json_option
@click.pass_obj
def checkpoint_revert(ctx: Ctx, version: str, where: Where, force: bool, dry_run: bool, as_json: bool) -> None:
    """Restore model and data to combined VERSION in one commit."""
    c = combined(ctx, where, dry_run)
    meta = c.revert_model_and_data(version, force=force, dry_run=dry_run)
    if as_json:
        emit_json({"reverted_to": meta.to_dict(), "commit": c.ws.versioning.head(), "dry_run": dry_run})


@checkpoint_group.command("info")
@click.argument("version", required=False, shell_complete=version_completer("checkpoint"))
@target(message_uses_m=False)
@json_option
@click.pass_obj
def checkpoint_info(ctx: Ctx, version: str | None, where: Where, as_json: bool) -> None:
    """Both metadata records of combined VERSION (default: latest)."""
    data = combined(ctx, where).get_combined_metadata(version).to_dict()
    if as_json:
        emit_json(data)
        return
    out(f"checkpoint {data['version']}  {visible(data['date'])}  {visible(data['message'])}")
    for kind in ("model", "data"):
        rec = data[kind]
        out(
            f"  {kind:5} {rec['version']:8} {visible(rec['digest'])}  {human_bytes(rec['size'])}  {visible(format_metrics(rec['metrics']))}"
        )

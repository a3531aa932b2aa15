"""Looking after the store: ``gc``, ``du`` (with ``--cost``), ``verify`` and the HTML ``report``."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from cpv_core.cli.options import (
    Ctx,
    Where,
    dry_run_option,
    json_option,
    manager,
    target,
    team_targets,
    version_completer,
)
from cpv_core.cli.output import (
    emit_json,
    render_table,
    show_gc,
)
from cpv_core.cli.terminal import EXIT_DAMAGED, out
from cpv_core.errors import ValidationError
from cpv_core.plugin.progress import human_bytes
from cpv_core.trust import visible

if TYPE_CHECKING:
    pass

logger = logging.getLogger("cpv")


@click.command("gc")
@target(message_uses_m=False)
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the newest N versions of each kind.")
@click.option("--keep-stages", is_flag=True, help="Keep the versions holding a stage now.")
@click.option("--keep", "keep", multiple=True, metavar="VERSION", help="Keep this version (v1.0, best:loss, prod); repeatable.")
@click.option("--grace", type=float, default=24.0, show_default=True, help="Never delete objects written within this many hours.")
@click.option("--delete-versions", is_flag=True, help="Remove pruned versions from the history instead of marking them.")
@click.option(
    "--policy",
    "use_rules",
    is_flag=True,
    help="Keep what the model's retention rules keep (.cpv/retention.json; `cpv model retention set`); "
    "--dry-run shows each version's fate and what deleting would save a month.",
)
@click.option("--all", "all_models", is_flag=True, help="Every model of the team that has a workspace on this machine.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (required where there is no terminal to ask on).")
@dry_run_option
@json_option
@click.pass_obj
def gc_cmd(
    ctx: Ctx,
    where: Where,
    keep_last: int | None,
    keep_stages: bool,
    keep: tuple[str, ...],
    grace: float,
    delete_versions: bool,
    use_rules: bool,
    all_models: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove from the storage remote the content no kept version uses (safe on a shared remote).

    Deleting asks first on a terminal, as `dvc gc` does (--yes skips the question; without
    a terminal --yes is required). Look with --dry-run first."""
    from cpv_core.ops.retention import RetentionPolicy, collect_garbage

    policy = RetentionPolicy(
        keep_last=keep_last, keep_stages=keep_stages, keep=keep, grace_hours=grace, delete_versions=delete_versions, use_rules=use_rules
    )
    price = None
    if use_rules:  # what the rules save is said in money too (`du --cost`'s price)
        from cpv_core.ops.retention import list_price_per_gb_month
        from cpv_core.plugin.config import CPVConfig

        price = list_price_per_gb_month(CPVConfig())
    policy.check()
    targets = team_targets(where, all_models)

    def run_gc(plan_only: bool) -> dict[str, Any]:
        results = {}
        for one in targets:
            both = [manager(k, ctx, one, plan_only) for k in ("model", "data")]
            results[f"{both[0].team_name}/{both[0].model_name}"] = collect_garbage(both, policy, dry_run=plan_only)
        return results

    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise ValidationError(
                "cpv gc deletes stored objects and asks first, but there is no terminal to ask on; nothing was deleted",
                fix="look with `cpv gc ... --dry-run`, then run it again with --yes",
            )
        show_gc(run_gc(True), all_models, grace, dry_run=True, price=price)
        if not click.confirm("delete what is listed above from the store?", default=False):
            ctx.echo("nothing was deleted")
            return
    results = run_gc(dry_run)
    if as_json:
        emit_json(next(iter(results.values())).to_dict() if not all_models else {name: r.to_dict() for name, r in results.items()})
        return
    show_gc(results, all_models, grace, dry_run=dry_run, price=price)


@click.command("du")
@target(message_uses_m=False)
@click.option("--all", "all_models", is_flag=True, help="Every model of the team that has a workspace on this machine.")
@click.option("--cost", is_flag=True, help="Add the monthly storage cost per version, per model and per team.")
@click.option(
    "--price-per-gb-month",
    type=float,
    default=None,
    metavar="USD",
    help="Price of a GB-month (default: the storage provider's list price, e.g. 0.023 for S3 Standard); implies --cost.",
)
@json_option
@click.pass_obj
def du_cmd(
    ctx: Ctx,
    where: Where,
    all_models: bool,
    cost: bool,
    price_per_gb_month: float | None,
    as_json: bool,
) -> None:
    """Bytes per version, bytes shared between versions, and the total on the storage remote.

    With --cost, what that costs a month: each version is charged its share of
    the objects it uses (an object stored once is counted once), each model
    everything in its store, each team the sum of its models.
    """
    from cpv_core.domain.cost import check_price, monthly, storage_cost
    from cpv_core.ops.retention import disk_usage, list_price_per_gb_month
    from cpv_core.plugin.config import CPVConfig

    price = check_price(list_price_per_gb_month(CPVConfig()) if price_per_gb_month is None else price_per_gb_month)
    cost = cost or price_per_gb_month is not None
    usages = {}
    for one in team_targets(where, all_models):
        both = [manager(k, ctx, one) for k in ("model", "data")]
        usages[f"{both[0].team_name}/{both[0].model_name}"] = disk_usage(both)
    if as_json:
        if cost:
            emit_json(storage_cost(usages, price))
        else:
            emit_json(next(iter(usages.values())) if not all_models else usages)
        return
    priced = storage_cost(usages, price) if cost else None
    for name, usage in usages.items():
        if all_models:
            out(f"{name}:")
        headers = ["kind", "version", "size", "shared", "state"] + (["stored share", "per month"] if priced else [])
        rows = []
        for r in usage["versions"]:
            row = [r["kind"], r["version"], human_bytes(r["size"]), human_bytes(r["shared"]), "pruned" if r["pruned"] else ""]
            if priced:
                row += [human_bytes(r["stored"]), f"${monthly(r['stored'], price):,.4f}"]
            rows.append(row)
        render_table(headers, rows)
        out(
            f"total on the remote: {human_bytes(usage['total_bytes'])} in {usage['objects']} object(s); "
            f"used by no version: {human_bytes(usage['unreferenced_bytes'])}"
            + (f"; ${priced['models'][name]['monthly_cost']:,.4f} a month" if priced else "")
        )
        whole, referenced = usage["whole_file_bytes"], usage["referenced_bytes"]
        if whole > referenced:
            out(
                f"the versions' files, whole: {human_bytes(whole)}; stored for them: {human_bytes(referenced)} "
                f"({1 - referenced / whole:.0%} saved by storing each byte once)"
            )
        if usage["incomplete_uploads"]:
            out(
                f"incomplete uploads (parts the store bills until `cpv gc` aborts them): {usage['incomplete_uploads']}, "
                f"{human_bytes(usage['incomplete_upload_bytes'])}"
            )
    if priced:
        for team, row in priced["teams"].items():
            out(
                f"team {team}: {human_bytes(row['bytes'])} in {row['models']} model(s), ${row['monthly_cost']:,.4f} a month at ${price:g}/GB-month"
            )


@click.command("verify")
@click.argument("version", required=False, shell_complete=version_completer(None))
@target(message_uses_m=False)
@click.option("--kind", type=click.Choice(["model", "data"]), default="model", show_default=True)
@click.option("--remote", is_flag=True, help="Check the remote copy (downloads and hashes every object).")
@json_option
@click.pass_obj
def verify_cmd(
    ctx: Ctx,
    version: str | None,
    where: Where,
    kind: str,
    remote: bool,
    as_json: bool,
) -> None:
    """Check every file of VERSION against its recorded hash; exit 12 on damage."""
    m = manager(kind, ctx, where)
    problems = m.verify(version, remote=remote)
    place = "remote" if remote else "local cache"
    if as_json:
        emit_json({"kind": kind, "version": version, "where": place, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            out(f"DAMAGED {visible(problem)}")
        if not problems:
            on_remote = 0 if remote else m.ws.storage.checked_on_remote()
            checked = place + (f" ({on_remote} not cached here: checked on the remote)" if on_remote else "")
            out(f"{kind} {version or '(latest)'}: every file matches its hash in the {checked}")
    if problems:
        sys.exit(EXIT_DAMAGED)


@click.command("report")
@target(message_uses_m=False)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default="cpv-report.html", show_default=True, help="Where to write the HTML file."
)
@dry_run_option
@click.pass_obj
def report_cmd(ctx: Ctx, where: Where, output: str, dry_run: bool) -> None:
    """Write one self-contained HTML report of the model: versions, metrics plotted, stages, lineage."""
    path = manager("model", ctx, where).write_report(output, dry_run=dry_run)
    if dry_run:
        return
    out(str(path))

"""`cpv model retention set|show`: the model's retention rules (.cpv/retention.json),
applied by `cpv gc --policy`."""

from __future__ import annotations

import click

from cpv_core.cli.options import Ctx, Where, dry_run_option, json_option, manager, target
from cpv_core.cli.output import emit_json
from cpv_core.cli.terminal import out
from cpv_core.trust import visible


def retention_group(kind: str) -> click.Group:
    """`cpv {kind} retention ...` for ``kind`` (the rules cover both kinds of the model)."""

    @click.group("retention")
    def retention() -> None:
        """The model's retention rules (.cpv/retention.json): what `cpv gc --policy` keeps."""

    @retention.command("set")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @target(message_uses_m=False)
    @dry_run_option
    @click.pass_obj
    def rules_set(ctx: Ctx, file: str, where: Where, dry_run: bool) -> None:
        """Check FILE's rules, commit them and push (every member and CI then apply them)."""
        manager(kind, ctx, where, dry_run).set_retention_rules(file, dry_run=dry_run)

    @retention.command("show")
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def rules_show(ctx: Ctx, where: Where, as_json: bool) -> None:
        """The retention rules in force."""
        rules = manager(kind, ctx, where).retention_rules().to_dict()
        if as_json:
            emit_json(rules)
            return
        out(f"keep_stages  {'true' if rules['keep_stages'] else 'false'}")
        out(f"keep_last    {rules['keep_last']}")
        for best in rules.get("keep_best", []):
            out(f"keep_best    {best['k']} by {visible(best['metric'])} ({best['mode']})")
        if "keep_days" in rules:
            out(f"keep_days    {rules['keep_days']:g}")
        if "thin" in rules:
            out(f"thin         one per {rules['thin']} after that")

    return retention

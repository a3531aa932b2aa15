"""Configuration and the tool itself: ``config show|set``, ``validate``,
``version``, ``plugins`` and ``quickstart``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpv_core import __version__
from cpv_core.cli.options import (
    Ctx,
    dry_run_option,
    find_workspace,
    json_option,
    resolve_target,
    target_options,
)
from cpv_core.cli.output import (
    emit_json,
    render_table,
)
from cpv_core.cli.terminal import out

if TYPE_CHECKING:
    pass

logger = logging.getLogger("cpv")


@click.group("config")
def config_group() -> None:
    """Show and change the cpv configuration (~/.cpv/config.json, or $CPV_HOME)."""


@config_group.command("show")
@json_option
def config_show(as_json: bool) -> None:
    """Print the configuration and the backends new models will use (no secrets are ever stored)."""
    from cpv_core.plugin.config import CPVConfig
    from cpv_core.plugin.settings import mask, secret_keys

    cfg = CPVConfig()
    settings = cfg.get_config()
    for key in secret_keys():
        section, _, name = key.rpartition(".")
        node = settings.get(section) if section else settings
        if isinstance(node, dict) and node.get(name) is not None:
            node[name] = mask(node[name])
    data = {
        "config_file": str(cfg.config_path),
        "settings": settings,
        "backends": {kind: cfg.backend_name(kind) for kind in ("storage", "hosting", "versioning")},
        "workspace_root": str(cfg.workspace_root()),
    }
    if as_json:
        emit_json(data)
        return
    out(f"config file     {data['config_file']}")
    out(f"workspace root  {data['workspace_root']}")
    for kind, name in data["backends"].items():
        out(f"{kind:15} {name}")
    out(json.dumps(data["settings"], indent=2, sort_keys=True))


@config_group.command("set")
@click.argument("key")
@click.argument("value")
@dry_run_option
@click.pass_obj
def config_set(ctx: Ctx, key: str, value: str, dry_run: bool) -> None:
    """Set KEY (dotted, e.g. storage or local.root) to VALUE; an empty VALUE removes it.

    Only keys cpv or an installed plugin reads are accepted, and a backend
    choice must name an installed backend.
    """
    from cpv_core.plugin.config import CPVConfig, looks_like_secret
    from cpv_core.plugin.settings import canonical_key, check_setting, mask, secret_keys

    key = canonical_key(key)
    if not looks_like_secret(value):  # a secret is refused by set_config without ever being echoed
        check_setting(key, value or None)
    cfg = CPVConfig()
    if dry_run:
        was = cfg.get_config(key)
        shown = mask if key in secret_keys() else str
        ctx.echo(
            f"[dry-run] would set {key} = {shown(value) if value else '(removed)'} in {cfg.config_path} "
            f"(was {'unset' if was is None else shown(was)})"
        )
        return
    was = cfg.get_config(key)
    cfg.set_config(key, value or None)
    shown = mask if key in secret_keys() else str
    ctx.echo(
        f"{key} = {shown(value)} (was {'unset' if was is None else shown(was)})"
        if value
        else f"{key} removed (was {'unset' if was is None else shown(was)})"
    )


@click.command("validate")
@json_option
@target_options(message_uses_m=False)
@click.pass_obj
def validate(ctx: Ctx, as_json: bool, team_name: str | None, model_name: str | None, repo_path: str | None) -> None:
    """Check every configured credential, one line per check; exit 4 on failure.

    With a team and model (options, or run inside a workspace) the hosting
    backend also checks that model's repository.
    """
    from cpv_core.errors import CredentialError
    from cpv_core.plugin.config import CPVConfig

    report = CPVConfig().validate_credentials()
    if (team_name and model_name) or find_workspace(Path(repo_path).resolve() if repo_path else Path.cwd()):
        from cpv_core.workspace.workspace import Workspace

        team, model, repo = resolve_target(team_name, model_name, repo_path)
        failed = {c.name for c in report.checks if not c.ok}  # a failure the credentials already report is said once
        report.checks.extend(c for c in Workspace(team, model, repo).hosting.validate() if c.ok or c.name not in failed)
    if as_json:
        emit_json(report.to_dict())
    else:
        from cpv_core.cli.setup_command import print_checks

        print_checks(report)
    if not report:
        sys.exit(CredentialError.exit_code)


@click.command("version")
@json_option
def version_cmd(as_json: bool) -> None:
    """Print cpv's version (same as `cpv --version` / `cpv -V`)."""
    if as_json:
        emit_json({"version": __version__})
        return
    out(f"cpv {__version__}")


@click.command("plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins, their versions and hooks."""
    from cpv_core.plugin.manager import Plugins

    infos = Plugins().describe()
    if as_json:
        emit_json([{"name": i.name, "module": i.module, "version": i.version, "hooks": list(i.hooks), "builtin": i.builtin} for i in infos])
        return
    render_table(
        ["plugin", "version", "source", "hooks"],
        [[i.name, i.version or "-", "builtin" if i.builtin else "external", ", ".join(i.hooks)] for i in infos],
    )


@click.command("quickstart")
@click.option("--home", type=click.Path(file_okay=False), help="Use this CPV_HOME instead of a temporary one.")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace.")
@dry_run_option
@click.pass_obj
def quickstart(ctx: Ctx, home: str | None, keep: bool, dry_run: bool) -> None:
    """Run the whole cycle on the embedded local default in a temporary workspace."""
    from cpv_core.cli.quickstart import QUICKSTART_STEPS, run_quickstart

    if dry_run:
        where = home or "a temporary CPV_HOME (removed afterwards unless --keep)"
        for step in QUICKSTART_STEPS:
            ctx.echo(f"[dry-run] would {step} in {where}")
        return
    run_quickstart(home=home, keep=keep, echo=click.echo)

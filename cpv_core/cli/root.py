"""The ``cpv`` command line (click).

Importing this module must stay cheap: no dvc, boto3, s3fs or git here; the
managers load backends, and backends load their libraries, on first use.

Team and model come from ``--team-name/-t`` and ``--model-name`` (``-m`` on
commands that take no message), or from the current directory when it is
inside a cpv workspace. On commands that take a message (upload, tag,
checkpoint create) ``-m`` is the message, as in git.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

from cpv_core import __version__
from cpv_core.cli.options import Ctx, alias_of
from cpv_core.cli.terminal import EXIT_INTERRUPTED, out
from cpv_core.errors import CPVError
from cpv_core.trust import visible_lines

if TYPE_CHECKING:
    pass

logger = logging.getLogger("cpv")


class VisibleFormatter(logging.Formatter):
    """Log lines with control characters escaped (log messages quote values from repositories)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible_lines(super().format(record))


class CpvGroup(click.Group):
    """The root group: plugins' commands (``cpv_register_commands``) are added the
    first time the command list is needed, whoever asks (main, tests, the docs)."""

    _loaded_for: object = None

    def load_plugin_commands(self) -> None:
        """Let every plugin add its commands, once per set of registered plugins;
        a failing plugin is a warning."""
        from cpv_core.plugin.manager import Plugins, get_plugin_manager

        pm = get_plugin_manager()
        key = (id(pm), tuple(sorted(str(name) for name, _ in pm.list_name_plugin())))
        if self._loaded_for == key:
            return
        self._loaded_for = key
        try:
            Plugins(pm).register_commands(self)
        except Exception as exc:  # noqa: BLE001 - a plugin's command must not kill the CLI
            logger.warning("a plugin failed to add its commands: %s", exc)
        try:
            from cpv_core.cli.setup_command import build_setup_command

            self.add_command(build_setup_command(Plugins(pm)))
        except Exception as exc:  # noqa: BLE001 - a plugin's setup choice must not kill the CLI
            logger.warning("cpv setup is unavailable: a plugin's setup choices failed: %s", exc)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_plugin_commands()
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            add_late_flags(command)
        return command


@click.group(cls=CpvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Print each step; tracebacks on errors.")
@click.option("--quiet", "-q", is_flag=True, help="Print only results and errors.")
@click.version_option(__version__, "--version", "-V", prog_name="cpv", message="%(prog)s %(version)s")
@click.pass_context
def cli(click_ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """cpv - version model checkpoints and training data together.

    \b
    First steps (no cloud account needed):
      cpv quickstart                          the whole cycle in a temporary workspace
      cpv init model -t TEAM -m MODEL         create (or clone) a model workspace
      cpv model upload model.bin --metrics '{"loss": 0.2}'
      cpv model tag                           v0.1, v0.2, ... (or --version v1.0)
      cpv model list | download v0.1 | revert v0.1 | info v0.1
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
    click_ctx.obj = Ctx(verbose, quiet)


def _late_flag(click_ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """``-v``/``-q`` given after the subcommand (``cpv model upload -v``) mean what they mean before it."""
    if not value:
        return
    obj = click_ctx.find_object(Ctx)
    if obj is None:
        return
    if param.name == "late_verbose":
        obj.verbose = True
        logging.getLogger().setLevel(logging.INFO)
    else:
        obj.quiet = True


def add_late_flags(command: click.Command) -> None:
    """Give ``command`` and every command below it ``-v/--verbose`` and ``-q/--quiet``."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_late_flags(sub)
        return
    names = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for name, flags, text in (
        ("late_verbose", ("--verbose", "-v"), "Print each step (also accepted before the command)."),
        ("late_quiet", ("--quiet", "-q"), "Print only results and errors (also accepted before the command)."),
    ):
        if not names & set(flags):
            command.params.append(
                click.Option([*flags, name], is_flag=True, expose_value=False, callback=_late_flag, help=text, is_eager=True)
            )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one clear line per error, documented exit codes."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.load_plugin_commands()  # inside the try: a Ctrl-C while plugins load is reported like any other
        cli.main(args=argv, prog_name="cpv", standalone_mode=False)
    except CPVError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        out(f"error: {exc.message}", err=True, fg="red")
        if exc.fix:
            out(f"  fix: {exc.fix}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        out("interrupted: nothing incomplete was published; run the command again to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


def add_commands(group: click.Group) -> None:
    """Every built-in command, grouped by area (one module each)."""
    from cpv_core.cli import checkpoint_commands, config_commands, kind_commands, maintenance, stage_commands, workspace_commands

    for command in (
        workspace_commands.init,
        workspace_commands.status_cmd,
        workspace_commands.pull_cmd,
        workspace_commands.diff_cmd,
        kind_commands.build_kind_group("model"),
        kind_commands.build_kind_group("data"),
        checkpoint_commands.checkpoint_group,
        stage_commands.registry_cmd,
        maintenance.report_cmd,
        maintenance.gc_cmd,
        maintenance.du_cmd,
        maintenance.verify_cmd,
        config_commands.config_group,
        config_commands.validate,
        config_commands.version_cmd,
        config_commands.plugins_cmd,
        config_commands.quickstart,
    ):
        group.add_command(command)
    group.add_command(alias_of(stage_commands.registry_cmd, "models"), "models")
    group.add_command(alias_of(workspace_commands.pull_cmd, "sync"), "sync")


add_commands(cli)

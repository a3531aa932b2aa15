"""The ``cpv setup`` command: the click side of :mod:`cpv_core.cli.setup_wizard`.

Its options are made from the installed plugins' setup choices, so every
question has a flag (``--s3-bucket``, ``--bitbucket-port``) and a plugin's
choice needs no change here.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cpv_core.cli.setup_wizard import NEXT_STEPS, apply, choices_by_kind, collect, describe, flag_name, validate
from cpv_core.cli.terminal import EXIT_INTERRUPTED, out
from cpv_core.plugin.manager import Plugins
from cpv_core.plugin.protocols import ValidationReport


class TerminalConversation:
    """The wizard's questions as click prompts (defaults shown in brackets)."""

    def say(self, line: str) -> None:
        click.echo(line)

    def ask(self, prompt: str, default: str | None) -> str:
        if default == "":
            return str(click.prompt(prompt, default="", show_default=False))
        return str(click.prompt(prompt, default=default, show_default=default is not None))

    def pause(self, text: str) -> None:
        click.prompt(f"{text}; press Enter when done", default="", show_default=False, prompt_suffix=" ")


def print_checks(report: ValidationReport) -> None:
    """One line per check, a fix under each failure (``cpv validate``'s format)."""
    for check in report:
        out(f"{'ok  ' if check.ok else 'FAIL'} {check.name:22} {check.detail}", fg="green" if check.ok else "red")
        if not check.ok and check.fix:
            out(f"     {'':22} fix: {check.fix}")


def build_setup_command(plugins: Plugins) -> click.Command:
    """``cpv setup`` with one option per kind and one per question of every choice."""
    by_kind = choices_by_kind(plugins)
    params: list[click.Parameter] = [
        click.Option(["--non-interactive"], is_flag=True, help="Ask nothing: take each flag, else the default (CI)."),
        click.Option(["--yes", "-y"], is_flag=True, help="Write the configuration without asking to confirm."),
        click.Option(["--dry-run"], is_flag=True, help="Ask, then print what would be written; change nothing."),
    ]
    for kind, options in by_kind.items():
        if options:
            params.append(
                click.Option([f"--{kind}"], type=click.Choice([c.name for c in options]), help=f"Which {kind} (default: the one in force).")
            )
        for choice in options:
            for question in choice.questions:
                name = flag_name(choice, question)
                params.append(click.Option([f"--{name.replace('_', '-')}", name], help=f"{choice.name}: {question.prompt}."))

    def run(**values: Any) -> None:
        from cpv_core.errors import CredentialError
        from cpv_core.plugin.config import CPVConfig

        interactive = not values.pop("non_interactive")
        confirmed = values.pop("yes")
        dry_run = values.pop("dry_run")
        talk = TerminalConversation() if interactive else None
        config = CPVConfig()
        try:
            if talk:
                talk.say(f"cpv setup: answers go to {config.config_path} (Enter keeps the value in brackets; Ctrl-C changes nothing)")
            plan = collect(config, values, talk, plugins)
            if dry_run:
                for line in describe(plan):
                    out(f"[dry-run] would configure {line}")
                return
            if talk and not confirmed:
                for line in describe(plan):
                    talk.say(f"  {line}")
                if not click.confirm(f"Write this configuration to {config.config_path}?", default=True):
                    out("nothing was written")
                    return
            for line in apply(config, plan, plugins):
                out(line)
        except (click.exceptions.Abort, KeyboardInterrupt):
            click.echo()
            out("setup interrupted: the configuration was not changed", err=True)
            sys.exit(EXIT_INTERRUPTED)
        for choice in plan.picked.values():
            if choice.after:
                if talk:
                    talk.pause(choice.after)
                else:
                    out(choice.after)
        out("checking the configuration (cpv validate):")
        report = validate(config)
        print_checks(report)
        if not report:
            out("the configuration was written; fix what failed, then run `cpv validate`", err=True)
            sys.exit(CredentialError.exit_code)
        out("next:")
        for step in NEXT_STEPS:
            out(f"  {step}")

    return click.Command(
        "setup",
        callback=run,
        params=params,
        help=(
            "Configure storage and hosting by answering questions (defaults shown), then check the result "
            "as `cpv validate` does. Every question has a flag; --non-interactive asks nothing (CI). "
            "Ctrl-C at any question leaves the configuration as it was."
        ),
    )

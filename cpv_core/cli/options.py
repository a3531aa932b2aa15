"""Shared options of the commands: the target (team, model, workspace) resolved
from the options or the current directory, ``--dry-run``, ``--json``, metrics
parsing, completion, and the managers a command works on."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cpv_core.cli.terminal import out
from cpv_core.domain.metrics import parse_pairs
from cpv_core.errors import CheckpointNotFoundError, ValidationError

if TYPE_CHECKING:
    from cpv_core.api.combined import CombinedCheckpointsManage
    from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage

logger = logging.getLogger("cpv")


class Ctx:
    """Global options shared by every command."""

    def __init__(self, verbose: bool, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet

    def echo(self, line: str) -> None:
        """Progress and plans go to stderr; stdout carries only results."""
        if not self.quiet:
            out(line, err=True)


def find_workspace(start: Path) -> tuple[str, str, Path] | None:
    """Team, model and path of the cpv workspace containing ``start``."""
    for candidate in (start, *start.parents):
        meta = candidate / ".cpv" / "workspace.json"
        if meta.is_file():
            from cpv_core.workspace.meta import check_meta

            try:
                data = check_meta(meta.read_bytes()[: 1024 * 1024], str(meta))  # repository content: checked
                return str(data["team"]), str(data["model"]), candidate
            except (OSError, KeyError):
                return None
    return None


def resolve_target(
    team: str | None, model: str | None, repo_path: str | None, *, message: str | None = None
) -> tuple[str, str, str | None]:
    """Team/model/repo_path from options, else from the current directory.

    On the commands where ``-m`` is the message (upload, tag, checkpoint create),
    ``message`` is what ``-m`` got: a value that looks like a model name meant
    for ``-m`` is refused, saying which flag means what.
    """
    meaning = "on this command -m is the message; the model is --model-name"
    if team and model:
        return team, model, repo_path
    found = find_workspace(Path(repo_path).resolve() if repo_path else Path.cwd())
    if found:
        ws_team, ws_model, path = found
        if message is not None and message.strip() == ws_model and not model:
            raise ValidationError(
                f"-m {message!r} is the model's name, but {meaning}",
                fix=f"give a message (-m 'what changed'), and if you meant the model: --model-name {message}",
            )
        return team or ws_team, model or ws_model, repo_path or str(path)
    if team and not model:
        hint = f" (-m {message!r} was taken as the message)" if message else ""
        raise ValidationError(
            f"--team-name {team} given but no --model-name{hint}; {meaning}",
            fix=f"pass --model-name MODEL (e.g. -t {team} --model-name NAME)",
        )
    raise ValidationError(
        "no team/model given and the current directory is not inside a cpv workspace",
        fix="pass --team-name/-t and --model-name, or cd into a workspace",
    )


def parse_metrics(value: str | None, option: str = "--metrics") -> dict[str, Any] | None:
    """``--metrics``: an inline JSON object, ``NAME=VALUE,...`` pairs, or the path of a JSON file."""
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        if not path.is_file() and "=" in value:
            return parse_pairs(value, option)
        if not path.is_file():
            raise ValidationError(
                f"{option} {value!r} is neither a JSON object, NAME=VALUE pairs nor an existing file",
                fix=f"pass e.g. {option} loss=0.25,wer=0.04, {option} '{{\"loss\": 0.25}}' or {option} metrics.json",
            )
        if path.stat().st_size > 2 * 1024 * 1024:
            raise ValidationError(f"{option} file {value!r} is larger than 2 MiB", fix="metrics may be at most 1 MiB as JSON")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{option} is not valid JSON ({exc.msg} at line {exc.lineno})", fix='pass a JSON object such as {"loss": 0.25}'
        ) from None
    except (ValueError, RecursionError) as exc:  # integers over 4300 digits, nesting deeper than the parser's stack
        raise ValidationError(
            f"--metrics cannot be read: {type(exc).__name__}",
            fix="keep metrics flat-ish (at most 32 levels) and numbers within a float's range",
        ) from None
    if not isinstance(data, dict):
        raise ValidationError("--metrics must be a JSON object", fix='pass e.g. {"loss": 0.25}')
    return data


def target_options(message_uses_m: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--team-name/-t, --model-name (and -m when -m is not the message), --repo-path."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        names = ["--model-name", "model_name"] if message_uses_m else ["--model-name", "-m", "model_name"]
        func = click.option("--repo-path", "-r", type=click.Path(file_okay=False), help="Workspace directory.")(func)
        func = click.option(*names, help="Model name (default: from the current workspace).")(func)
        func = click.option("--team-name", "-t", help="Team name (default: from the current workspace).")(func)
        return func

    return decorate


def version_completer(kind: str | None) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    """Shell completion of version names: the local versions of ``kind`` (or of the
    command's ``--kind``) in the workspace the command line names; no fetch, no error."""

    def complete(click_ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        try:
            from cpv_core.workspace.workspace import Workspace

            params = click_ctx.params
            team, model, repo = resolve_target(params.get("team_name"), params.get("model_name"), params.get("repo_path"))
            ws = Workspace(team, model, repo)
            if not ws.is_initialized():
                return []
            versions = ws.versioning.list_versions(kind or str(params.get("kind") or "model"))
        except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
            return []
        return [CompletionItem(r.version) for r in reversed(versions) if r.version.startswith(incomplete)]

    return complete


def alias_of(command: click.Command, alias: str) -> click.Command:
    """``command`` also under the name ``alias``: it works the same, and ``--help`` lists it
    once, with the alias named beside it, never as a second command."""
    import copy

    alias_command = copy.copy(command)
    alias_command.hidden = True
    first = (command.help or "").strip().splitlines()[0] if command.help else ""
    command.short_help = f"(alias: {alias}) {first}"
    command.help = f"{command.help or ''}\n\nAlias: `cpv {alias}`."
    return alias_command


dry_run_option = click.option("--dry-run", is_flag=True, help="Print the plan; change nothing locally or remotely.")


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see docs/cli.md).")


def add_setup_commands(
    cli_group: click.Group, name: str, options: list[Callable[[Any], Any]], configure: Callable[..., None], help_text: str
) -> None:
    """Register a plugin's set-up command twice, as ``cpv {name}-config`` and as
    ``cpv config {name}`` (the seeds' and the grouped spelling): both take
    ``options`` (click decorators, applied top to bottom) and call
    ``configure(ctx, **values)``."""

    def build() -> Callable[..., None]:
        def command(ctx: Ctx, /, **values: Any) -> None:
            configure(ctx, **values)

        for option in reversed(options):
            command = option(command)
        return click.pass_obj(command)

    cli_group.command(f"{name}-config", help=help_text)(build())
    config_group = cli_group.commands.get("config")
    if isinstance(config_group, click.Group):
        config_group.command(name, help=f"Same as `cpv {name}-config`.")(build())


@dataclass(frozen=True)
class Where:
    """What ``-t/--team-name``, ``--model-name`` and ``-r/--repo-path`` said, as one value.
    Not resolved yet: a command resolves it once, when it builds its manager, so its own
    checks of other options (a bad ``--metrics``) still come first."""

    team: str | None = None
    model: str | None = None
    repo_path: str | None = None

    def resolve(self, *, message: str | None = None) -> tuple[str, str, str | None]:
        """Team, model and workspace path (see :func:`resolve_target`)."""
        return resolve_target(self.team, self.model, self.repo_path, message=message)


def target(message_uses_m: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """:func:`target_options`, handed to the command as one ``where`` (:class:`Where`)
    argument instead of three."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def with_where(
            *args: Any, team_name: str | None = None, model_name: str | None = None, repo_path: str | None = None, **kwargs: Any
        ) -> Any:
            return func(*args, where=Where(team_name, model_name, repo_path), **kwargs)

        return target_options(message_uses_m)(with_where)

    return decorate


def manager(
    kind: str, ctx: Ctx, where: Where, dry_run: bool = False, *, message: str | None = None
) -> ModelsCheckpointsManage | DataCheckpointsManage:
    """The manager of ``kind`` a command works on, for the target ``where`` names."""
    from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage

    team, model, repo_path = where.resolve(message=message)
    cls = ModelsCheckpointsManage if kind == "model" else DataCheckpointsManage
    return cls(team, model, repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, progress=not ctx.quiet, caller="cli")


def combined(ctx: Ctx, where: Where, dry_run: bool = False, *, message: str | None = None) -> CombinedCheckpointsManage:
    """The combined (model + data) manager for the target ``where`` names."""
    from cpv_core.api.combined import CombinedCheckpointsManage

    team, model, repo_path = where.resolve(message=message)
    return CombinedCheckpointsManage(
        team, model, repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, progress=not ctx.quiet, caller="cli"
    )


def team_targets(where: Where, all_models: bool) -> list[Where]:
    """The targets a command with ``--all`` works on: every model of the team with a
    workspace on this machine; without ``--all``, the one target given."""
    from cpv_core.ops.registry import local_workspaces
    from cpv_core.plugin.config import CPVConfig

    if not all_models:
        return [where]
    if where.model or where.repo_path:
        raise ValidationError("--all takes a team, not a model", fix="pass -t TEAM with --all, or --model-name without it")
    team = where.team or resolve_target(None, None, None)[0]
    targets = [Where(team, model) for t, model in local_workspaces(CPVConfig()) if t == team]
    if not targets:
        raise CheckpointNotFoundError(f"no workspace of team {team} on this machine", fix=f"run `cpv init model -t {team} -m MODEL` first")
    return targets

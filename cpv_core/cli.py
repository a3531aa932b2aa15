"""The ``cpv`` command line (click).

Importing this module must stay cheap: no dvc, boto3, s3fs or git here; the
managers load backends, and backends load their libraries, on first use.

Team and model come from ``--team-name/-t`` and ``--model-name`` (``-m`` on
commands that take no message), or from the current directory when it is
inside a cpv workspace. On commands that take a message (upload, tag,
checkpoint create) ``-m`` is the message, as in git.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .errors import CheckpointNotFoundError, CPVError, ValidationError
from .metrics import format_metrics, format_value, metric_number, parse_pairs
from .progress import human_bytes
from .stage_rules import parse_gate
from .terminal import EXIT_DAMAGED, EXIT_INTERRUPTED, out
from .trust import visible, visible_lines
from .versions import Version

if TYPE_CHECKING:
    from .artifacts import CheckpointMetadata, DataArtifacts, ModelArtifacts
    from .backends import StageEvent
    from .combined import CombinedCheckpointsManage
    from .model_data import DataCheckpointsManage, ModelsCheckpointsManage

logger = logging.getLogger("cpv")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class VisibleFormatter(logging.Formatter):
    """Log lines with control characters escaped (log messages quote values from repositories)."""

    def format(self, record: logging.LogRecord) -> str:
        return visible_lines(super().format(record))


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
            from .workspace import check_meta

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


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))  # JSON escapes control characters itself


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
            from .workspace import Workspace

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


def manager(
    kind: str, ctx: Ctx, team: str | None, model: str | None, repo_path: str | None, dry_run: bool = False, *, message: str | None = None
) -> ModelsCheckpointsManage | DataCheckpointsManage:
    from .model_data import DataCheckpointsManage, ModelsCheckpointsManage

    team, model, repo_path = resolve_target(team, model, repo_path, message=message)
    cls = ModelsCheckpointsManage if kind == "model" else DataCheckpointsManage
    return cls(team, model, repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, progress=not ctx.quiet, caller="cli")


def metadata_row(meta: CheckpointMetadata) -> dict[str, Any]:
    return meta.to_dict()


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


def metric_sort_key(metrics: dict[str, Any], name: str) -> tuple[int, float]:
    """Numbers first, lowest first; versions without the metric (or not a number) last."""
    value = metric_number(metrics, name)
    return (0, value) if value is not None else (1, 0.0)


# --------------------------------------------------------------------------
# top level
# --------------------------------------------------------------------------


class CpvGroup(click.Group):
    """The root group: plugins' commands (``cpv_register_commands``) are added the
    first time the command list is needed, whoever asks (main, tests, the docs)."""

    _loaded_for: object = None

    def load_plugin_commands(self) -> None:
        """Let every plugin add its commands, once per set of registered plugins;
        a failing plugin is a warning."""
        from .plugins import Plugins, get_plugin_manager

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
            from .setup_command import build_setup_command

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


# -- init ------------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@click.option("--team-name", "-t", help="Team name (same as `cpv init model -t`).")
@click.option("--model-name", "-m", help="Model name.")
@click.option("--repo-path", "-r", type=click.Path(file_okay=False), help="Workspace directory.")
@click.option(
    "--data-path", "-d", type=click.Path(exists=True, file_okay=False), help="Upload this directory as the first data checkpoint."
)
@dry_run_option
@json_option
@click.pass_context
def init(
    click_ctx: click.Context,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
    data_path: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Create a model workspace and its remotes (or clone an existing one).

    `cpv init -t TEAM -m MODEL` is the same as `cpv init model -t TEAM -m MODEL`.
    """
    if click_ctx.invoked_subcommand is None:
        if not team_name and not model_name:
            click.echo(click_ctx.get_help())  # cpv's own text
            return
        click_ctx.invoke(
            init_model,
            team_name=team_name,
            model_name=model_name,
            repo_path=repo_path,
            data_path=data_path,
            dry_run=dry_run,
            as_json=as_json,
        )


@init.command("model")
@target_options(message_uses_m=False)
@click.option(
    "--data-path", "-d", type=click.Path(exists=True, file_okay=False), help="Upload this directory as the first data checkpoint."
)
@dry_run_option
@json_option
@click.pass_obj
def init_model(
    ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, data_path: str | None, dry_run: bool, as_json: bool
) -> None:
    """Initialise the workspace of TEAM/MODEL."""
    from .model_data import ModelsCheckpointsManage

    if not team_name or not model_name:
        raise ValidationError("cpv init model needs --team-name/-t and --model-name/-m", fix="e.g. cpv init model -t AI-Convo -m whisper")
    m = ModelsCheckpointsManage(team_name, model_name, repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, caller="cli")
    path = m.import_model_init(data_path=data_path)
    report_init(m, path, dry_run, as_json)


def report_init(m: ModelsCheckpointsManage | DataCheckpointsManage, path: Path, dry_run: bool, as_json: bool) -> None:
    """The result of an init on stdout: the workspace path (and the first data version, if any)."""
    data_versions: list[str | None] = [None] if dry_run else [None, *(r.version for r in m.ws.versioning.list_versions("data"))]
    if as_json:
        emit_json(
            {
                "team": m.team_name,
                "model": m.model_name,
                "path": str(path),
                "data_version": data_versions[-1],
                "dry_run": dry_run,
            }
        )
    elif not dry_run:
        out(str(path))


@init.command("data")
@target_options(message_uses_m=False)
@click.option("--data-path", "-d", required=True, type=click.Path(exists=True, file_okay=False), help="Directory to upload.")
@dry_run_option
@json_option
@click.pass_obj
def init_data(
    ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, data_path: str | None, dry_run: bool, as_json: bool
) -> None:
    """Initialise the workspace if needed; upload DATA_PATH and tag it as the first data version."""
    from .model_data import DataCheckpointsManage

    d = DataCheckpointsManage(
        *resolve_target(team_name, model_name, repo_path),
        verbose=ctx.verbose,
        dry_run=dry_run,
        echo=ctx.echo,
        progress=not ctx.quiet,
        caller="cli",
    )
    report_init(d, d.import_data_init(data_path), dry_run, as_json)


# -- model / data groups ---------------------------------------------------------------


def add_stage_commands(group: click.Group, kind: str, make: Callable[..., Any]) -> None:
    """``promote``, ``demote`` and ``stages`` on ``group``, for managers ``make`` builds
    (model, data and combined checkpoints share them)."""

    @group.command("promote")
    @click.argument("version", shell_complete=version_completer(kind))
    @click.option("--stage", required=True, help="The stage (e.g. prod).")
    @target_options(message_uses_m=True)
    @click.option("--message", "-m", help="Why (kept in the stage history).")
    @click.option("--force", is_flag=True, help="Override the stage rules (the override is recorded).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def promote(
        ctx: Ctx,
        version: str,
        stage: str,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        message: str | None,
        force: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Put VERSION (v1.2, best:loss, another stage ...) into a stage, under the model's stage rules."""
        m = make(ctx, team_name, model_name, repo_path, dry_run, message=message)
        event = m.promote(version, stage, message, force=force, dry_run=dry_run)
        if as_json:
            emit_json({"kind": kind, "stage": stage, "changed": event is not None, "event": stage_event_row(event) if event else None})
        elif event is not None:
            out(f"{stage} {event.version}")

    @group.command("demote")
    @click.option("--stage", required=True, help="The stage to empty.")
    @target_options(message_uses_m=True)
    @click.option("--message", "-m", help="Why (kept in the stage history).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def demote(
        ctx: Ctx,
        stage: str,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        message: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Empty a stage (its version stays, and keeps any other stage)."""
        m = make(ctx, team_name, model_name, repo_path, dry_run, message=message)
        event = m.demote(stage, message, dry_run=dry_run)
        if as_json:
            emit_json({"kind": kind, "stage": stage, "event": stage_event_row(event) if event else None})

    @group.command("stages")
    @target_options(message_uses_m=False)
    @click.option("--history", is_flag=True, help="Every change: who, when, which version, why.")
    @json_option
    @click.pass_obj
    def stages_(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, history: bool, as_json: bool) -> None:
        """Which version holds each stage now (--history: every change)."""
        from .history import current_stages

        m = make(ctx, team_name, model_name, repo_path)
        events = m.stage_history()
        from .stages import read_rules

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


def build_kind_group(kind: str) -> click.Group:
    """``cpv model ...`` and ``cpv data ...`` share their shape."""

    @click.group(kind, help=f"Upload, tag, list, download, revert and inspect {kind} checkpoints.")
    def group() -> None:
        pass

    @group.command("diff")
    @click.argument("version_a", shell_complete=version_completer(kind))
    @click.argument("version_b", shell_complete=version_completer(kind))
    @target_options(message_uses_m=False)
    @json_option
    @click.pass_obj
    def diff(
        ctx: Ctx, version_a: str, version_b: str, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool
    ) -> None:
        """Compare two versions: metrics with deltas, hash and size, files added/removed/changed (as `cpv diff`)."""
        show_diff(kind, manager(kind, ctx, team_name, model_name, repo_path).diff(version_a, version_b), as_json)

    @group.command("upload")
    @click.argument("path", required=False, type=click.Path(exists=True))
    @target_options(message_uses_m=True)
    @click.option("--metrics", help="Metrics: NAME=VALUE,... pairs, an inline JSON object or a path to a JSON file.")
    @click.option("--params", help="Hyperparameters, recorded apart from metrics: NAME=VALUE,... pairs, JSON or a JSON file.")
    @click.option("--message", "-m", help="Commit message.")
    @click.option("--force", is_flag=True, help="Upload even if a teammate's newer upload of this target would be replaced.")
    @click.option("--tag", "and_tag", is_flag=True, help="Tag the upload as the next version in the same step.")
    @click.option("--version", "version_tag", help="With --tag (implied): this explicit version, e.g. v1.0.")
    @dry_run_option
    @json_option
    @click.pass_obj
    def upload(
        ctx: Ctx,
        path: str | None,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        metrics: str | None,
        params: str | None,
        message: str | None,
        force: bool,
        and_tag: bool,
        version_tag: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Store PATH (default: the workspace's current model, or data/), record metrics, commit and push.

        A model PATH may be a file of any name or a directory (Hugging Face
        shards); it keeps its name and layout. Unchanged files are not uploaded again.
        With --tag (or --version) the upload becomes a version at once, as W&B and the
        Hugging Face Hub version every upload."""
        parsed = parse_metrics(metrics)
        if version_tag is not None:
            Version.parse(version_tag)  # a bad version is refused before anything is uploaded
        m = manager(kind, ctx, team_name, model_name, repo_path, dry_run, message=message)
        hyper = parse_metrics(params, "--params")
        result = m.upload(path, parsed, message, dry_run=dry_run, force=force, **({"params": hyper} if hyper else {}))
        version = m.tag(version_tag, None, dry_run=dry_run) if (and_tag or version_tag) and not dry_run else None
        if as_json:
            emit_json({**asdict(result), **({"version": version} if version else {})})
        elif not dry_run:
            state = "uploaded" if result.changed else "unchanged" + (" (new metrics recorded)" if result.metrics else "")
            out(f"{m.target} {state}: {result.digest} ({human_bytes(result.size)}), commit {str(result.commit)[:10]}")
            if version:
                out(version)

    @group.command("tag")
    @target_options(message_uses_m=True)
    @click.option("--version", "version_tag", help="Explicit version, e.g. v1.0 (default: next minor).")
    @click.option("--major", is_flag=True, help="Bump the major version (v0.3 -> v1.0).")
    @click.option("--message", "-m", help="Tag message.")
    @click.option("--allow-duplicate", is_flag=True, help="Tag content identical to an existing version anyway.")
    @dry_run_option
    @json_option
    @click.pass_obj
    def tag(
        ctx: Ctx,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        version_tag: str | None,
        major: bool,
        message: str | None,
        allow_duplicate: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Give the current checkpoint a version and push it."""
        m = manager(kind, ctx, team_name, model_name, repo_path, dry_run, message=message)
        version = m.tag(version_tag, message, major=major, dry_run=dry_run, allow_duplicate=allow_duplicate)
        if as_json:
            emit_json({"kind": kind, "version": version, "dry_run": dry_run})
        else:
            out(version)

    @group.command("list")
    @target_options(message_uses_m=False)
    @click.option("--stage", help="Only the version holding this stage now.")
    @click.option("--sort", "sort_by", metavar="METRIC", help="Order by a metric (lowest first; versions without it last).")
    @click.option(
        "--filter", "filters", metavar="GATE", multiple=True, help="Keep versions whose metrics meet e.g. 'wer<0.05' (repeatable)."
    )
    @json_option
    @click.pass_obj
    def list_(
        ctx: Ctx,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        stage: str | None,
        sort_by: str | None,
        filters: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """List versions (including those pushed by others), with the stages they hold."""
        from .history import current_stages

        m = manager(kind, ctx, team_name, model_name, repo_path)
        gates = [parse_gate(f, "--filter") for f in filters]
        if not m.ws.is_initialized():  # no workspace here: read the remote (no clone, no checkout)
            from .registry import mirror, remote_checkpoints

            ctx.echo(f"(no local workspace: read from the remote of {m.team_name}/{m.model_name})")
            remote = mirror(m.team_name, m.model_name, m.ws.config)  # one fetch
            metas, view = remote_checkpoints(type(m), remote), remote.versioning
        else:
            metas, view = m.list_checkpoints(), m.ws.versioning
        held: dict[str, list[str]] = {}
        for name, event in current_stages(view.list_stage_events(kind)).items():
            held.setdefault(str(event.version), []).append(name)
        pruned = view.pruned_versions(kind)
        rows = [
            {**metadata_row(meta), "stages": held.get(str(meta.version), []), "pruned": pruned.get(str(meta.version))} for meta in metas
        ]
        if stage is not None:
            rows = [r for r in rows if stage in r["stages"]]
        rows = [r for r in rows if not any(g.failure(r["metrics"]) for g in gates)]
        if sort_by:
            rows.sort(key=lambda r: metric_sort_key(r["metrics"], sort_by))
        emit_json({"kind": kind, "team": m.team_name, "model": m.model_name, "versions": rows}) if as_json else print_table(rows, ctx)

    add_stage_commands(
        group,
        kind,
        lambda ctx, team, model, repo, dry_run=False, message=None: manager(kind, ctx, team, model, repo, dry_run, message=message),
    )

    @group.group("stage-rules")
    def stage_rules() -> None:
        """The model's stage rules (.cpv/stages.json): order, require_previous, metric gates."""

    @stage_rules.command("set")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @target_options(message_uses_m=False)
    @dry_run_option
    @click.pass_obj
    def rules_set(ctx: Ctx, file: str, team_name: str | None, model_name: str | None, repo_path: str | None, dry_run: bool) -> None:
        """Check FILE's rules, commit them and push (every member and CI then enforce them)."""
        m = manager(kind, ctx, team_name, model_name, repo_path, dry_run)
        m.set_stage_rules(file, dry_run=dry_run)

    @stage_rules.command("show")
    @target_options(message_uses_m=False)
    @json_option
    @click.pass_obj
    def rules_show(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool) -> None:
        """The stage rules in force."""
        rules = manager(kind, ctx, team_name, model_name, repo_path).stage_rules().to_dict()
        if as_json:
            emit_json(rules)
            return
        out(f"order             {' -> '.join(rules['order']) or '(any stage)'}")
        out(f"require_previous  {'true' if rules['require_previous'] else 'false'}")
        for name, gates in rules["gates"].items():
            out(f"gates {name:11} {visible(', '.join(gates))}")

    @group.command("plot")
    @click.argument("metric")
    @target_options(message_uses_m=False)
    @json_option
    @click.pass_obj
    def plot(ctx: Ctx, metric: str, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool) -> None:
        """A terminal sparkline of METRIC across versions (nested metrics dotted: acc.top1)."""
        from .report import numeric_series, plot_lines, version_rows

        rows = version_rows(manager(kind, ctx, team_name, model_name, repo_path))
        lines = plot_lines(rows, metric)
        if not lines:
            known = ", ".join(numeric_series(rows)) or "none"
            raise ValidationError(f"no {kind} version records a numeric metric {visible(metric)}", fix=f"choose one of: {known}")
        if as_json:
            values = numeric_series(rows)[metric]
            emit_json({"metric": metric, "values": [{"version": r.version, "value": v} for r, v in zip(rows, values)]})
            return
        for line in lines:
            out(visible(line))

    @group.command("download")
    @click.argument("version", required=False, shell_complete=version_completer(kind))
    @target_options(message_uses_m=False)
    @click.option("--output-dir", "-o", type=click.Path(file_okay=False), help="Where to place the files.")
    @click.option("--force", is_flag=True, help="Overwrite existing files at the output path.")
    @click.option("--sub-path", help="Only this part of a data version (e.g. test).", hidden=kind == "model")
    @click.option("--include", help="Only the files of a directory version matching these globs, e.g. 'config.json,*.safetensors'.")
    @dry_run_option
    @json_option
    @click.pass_obj
    def download(
        ctx: Ctx,
        version: str | None,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        output_dir: str | None,
        force: bool,
        sub_path: str | None,
        include: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Materialise VERSION (default: latest) outside the workspace."""
        m = manager(kind, ctx, team_name, model_name, repo_path, dry_run)
        from .model_data import ModelsCheckpointsManage

        artifacts: ModelArtifacts | DataArtifacts
        selected = {"include": include} if include is not None else {}
        if isinstance(m, ModelsCheckpointsManage):
            artifacts = m.download_model_checkpoint(version, output_dir, force=force, dry_run=dry_run, **selected)
            path = artifacts.model_path
        else:
            artifacts = m.download_data_checkpoint(version, output_dir, force=force, dry_run=dry_run, sub_path=sub_path, **selected)
            path = artifacts.data_path
        if as_json:
            emit_json({"kind": kind, "dry_run": dry_run, **asdict(artifacts)})
        elif not dry_run:
            out(path)

    @group.command("revert")
    @click.argument("version", shell_complete=version_completer(kind))
    @target_options(message_uses_m=False)
    @click.option("--force", is_flag=True, help="Revert even with uncommitted changes (they are kept in the cache).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def revert(
        ctx: Ctx,
        version: str,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        force: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Return the workspace to VERSION as a new commit (history is kept)."""
        m = manager(kind, ctx, team_name, model_name, repo_path, dry_run)
        meta = m.revert(version, force=force, dry_run=dry_run)
        if as_json:
            emit_json({"reverted_to": meta.to_dict(), "commit": m.ws.versioning.head(), "dry_run": dry_run})

    @group.command("info")
    @click.argument("version", required=False, shell_complete=version_completer(kind))
    @click.option("--version", "version_opt", help="The version (same as the argument).")
    @target_options(message_uses_m=False)
    @json_option
    @click.pass_obj
    def info(
        ctx: Ctx,
        version: str | None,
        version_opt: str | None,
        team_name: str | None,
        model_name: str | None,
        repo_path: str | None,
        as_json: bool,
    ) -> None:
        """Metadata of VERSION (default: latest)."""
        if version and version_opt and version != version_opt:
            raise ValidationError(
                f"two different versions given: {version} and --version {version_opt}",
                fix=f"give the version once: `info {version}` or `info --version {version}`",
            )
        m = manager(kind, ctx, team_name, model_name, repo_path)
        if not m.ws.is_initialized():  # no workspace here: read the remote (no clone, no checkout)
            from .registry import mirror, remote_version

            ctx.echo(f"(no local workspace: read from the remote of {m.team_name}/{m.model_name})")
            data = remote_version(type(m), mirror(m.team_name, m.model_name, m.ws.config), version or version_opt).to_dict()
        else:
            data = m.metadata(version or version_opt).to_dict()
        if as_json:
            emit_json(data)
            return
        rows = [
            ("kind", data["kind"]),
            ("version", data["version"] or "(not tagged yet)"),
            ("commit", data["commit"]),
            ("author", data["author"]),
            ("date", data["date"]),
            ("message", data["tag_message"] or "-"),
            ("uploads", data["upload_message"] or "-"),
            ("path", data["path"]),
            ("digest", data["digest"]),
            ("size", f"{human_bytes(data['size'])} ({data['size']} bytes)"),
            ("metrics", format_metrics(data["metrics"]) or "-"),
            ("params", format_metrics(data["params"]) or "-"),
            ("code", describe_code(data["code"])),
        ]
        for key, value in rows:
            out(f"{key:8} {visible(value)}")

    return group


cli.add_command(build_kind_group("model"))
cli.add_command(build_kind_group("data"))


@cli.command("diff")
@click.argument("version_a", shell_complete=version_completer(None))
@click.argument("version_b", shell_complete=version_completer(None))
@target_options(message_uses_m=False)
@click.option("--kind", type=click.Choice(["model", "data"]), default="model", show_default=True)
@json_option
@click.pass_obj
def diff_cmd(
    ctx: Ctx, version_a: str, version_b: str, team_name: str | None, model_name: str | None, repo_path: str | None, kind: str, as_json: bool
) -> None:
    """Compare two versions: metrics with deltas, hash and size, files added/removed/changed."""
    show_diff(kind, manager(kind, ctx, team_name, model_name, repo_path).diff(version_a, version_b), as_json)


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


@cli.command("registry")
@json_option
@click.pass_obj
def registry_cmd(ctx: Ctx, as_json: bool) -> None:
    """Every team/model the configured remotes hold: latest versions, stages, last change (no clone)."""
    from .config import CPVConfig
    from .plugins import Plugins
    from .registry import registry

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


cli.add_command(alias_of(registry_cmd, "models"), "models")


@cli.command("report")
@target_options(message_uses_m=False)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default="cpv-report.html", show_default=True, help="Where to write the HTML file."
)
@dry_run_option
@click.pass_obj
def report_cmd(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, output: str, dry_run: bool) -> None:
    """Write one self-contained HTML report of the model: versions, metrics plotted, stages, lineage."""
    from datetime import datetime, timezone

    from .paths import atomic_write_bytes
    from .report import render_html, version_rows

    m = manager("model", ctx, team_name, model_name, repo_path)
    rows = version_rows(m)
    path = Path(output).expanduser().resolve()
    if dry_run:
        ctx.echo(f"[dry-run] would write {path}: {len(rows)} model version(s)")
        return
    page = render_html(m.team_name, m.model_name, rows, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_bytes(path, page.encode())
    out(str(path))


def team_targets(
    team_name: str | None, model_name: str | None, repo_path: str | None, all_models: bool
) -> list[tuple[str | None, str | None]]:
    """The (team, model) pairs a command with ``--all`` works on: every model of the
    team with a workspace on this machine; without ``--all``, the one target given."""
    from .config import CPVConfig
    from .registry import local_workspaces

    if not all_models:
        return [(team_name, model_name)]
    if model_name or repo_path:
        raise ValidationError("--all takes a team, not a model", fix="pass -t TEAM with --all, or --model-name without it")
    team = team_name or resolve_target(None, None, None)[0]
    targets: list[tuple[str | None, str | None]] = [(team, model) for t, model in local_workspaces(CPVConfig()) if t == team]
    if not targets:
        raise CheckpointNotFoundError(f"no workspace of team {team} on this machine", fix=f"run `cpv init model -t {team} -m MODEL` first")
    return targets


@cli.command("gc")
@target_options(message_uses_m=False)
@click.option("--keep-last", type=click.IntRange(min=0), help="Keep the newest N versions of each kind.")
@click.option("--keep-stages", is_flag=True, help="Keep the versions holding a stage now.")
@click.option("--keep", "keep", multiple=True, metavar="VERSION", help="Keep this version (v1.0, best:loss, prod); repeatable.")
@click.option("--grace", type=float, default=24.0, show_default=True, help="Never delete objects written within this many hours.")
@click.option("--delete-versions", is_flag=True, help="Remove pruned versions from the history instead of marking them.")
@click.option("--all", "all_models", is_flag=True, help="Every model of the team that has a workspace on this machine.")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (required where there is no terminal to ask on).")
@dry_run_option
@json_option
@click.pass_obj
def gc_cmd(
    ctx: Ctx,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
    keep_last: int | None,
    keep_stages: bool,
    keep: tuple[str, ...],
    grace: float,
    delete_versions: bool,
    all_models: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove from the storage remote the content no kept version uses (safe on a shared remote).

    Deleting asks first on a terminal, as `dvc gc` does (--yes skips the question; without
    a terminal --yes is required). Look with --dry-run first."""
    from .retention import RetentionPolicy, collect_garbage

    policy = RetentionPolicy(keep_last=keep_last, keep_stages=keep_stages, keep=keep, grace_hours=grace, delete_versions=delete_versions)
    policy.check()
    targets = team_targets(team_name, model_name, repo_path, all_models)

    def run_gc(plan_only: bool) -> dict[str, Any]:
        results = {}
        for target_team, target_model in targets:
            both = [manager(k, ctx, target_team, target_model, None if all_models else repo_path, plan_only) for k in ("model", "data")]
            results[f"{both[0].team_name}/{both[0].model_name}"] = collect_garbage(both, policy, dry_run=plan_only)
        return results

    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise ValidationError(
                "cpv gc deletes stored objects and asks first, but there is no terminal to ask on; nothing was deleted",
                fix="look with `cpv gc ... --dry-run`, then run it again with --yes",
            )
        show_gc(run_gc(True), all_models, grace, dry_run=True)
        if not click.confirm("delete what is listed above from the store?", default=False):
            ctx.echo("nothing was deleted")
            return
    results = run_gc(dry_run)
    if as_json:
        emit_json(next(iter(results.values())).to_dict() if not all_models else {name: r.to_dict() for name, r in results.items()})
        return
    show_gc(results, all_models, grace, dry_run=dry_run)


def show_gc(results: dict[str, Any], all_models: bool, grace: float, *, dry_run: bool) -> None:
    """The lines `cpv gc` prints for its results (or its plan)."""
    prefix = "[dry-run] would " if dry_run else ""
    for name, result in results.items():
        if all_models:
            out(f"{name}:")
        for kind in ("model", "data"):
            out(f"{kind}: keep {', '.join(result.kept.get(kind, [])) or 'none'}; prune {', '.join(result.pruned.get(kind, [])) or 'none'}")
        out(
            f"{prefix}delete {len(result.deleted)} object(s), {human_bytes(result.freed)} freed"
            + (f"; {result.spared_young} younger than {grace:g} h spared" if result.spared_young else "")
        )
        if result.aborted_uploads:
            out(
                f"{prefix}abort {result.aborted_uploads} incomplete upload(s) older than {grace:g} h ({human_bytes(result.aborted_bytes)} of parts)"
            )
        for kind, versions in result.deleted_versions.items():
            if versions:
                out(f"{kind} versions removed from the history: {', '.join(versions)}")


@cli.command("du")
@target_options(message_uses_m=False)
@click.option("--all", "all_models", is_flag=True, help="Every model of the team that has a workspace on this machine.")
@click.option("--cost", is_flag=True, help="Add the monthly storage cost per version, per model and per team.")
@click.option(
    "--price-per-gb-month",
    type=float,
    default=None,
    metavar="USD",
    help="Price of a GB-month (default 0.023, S3 Standard); implies --cost.",
)
@json_option
@click.pass_obj
def du_cmd(
    ctx: Ctx,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
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
    from .cost import DEFAULT_PRICE_PER_GB_MONTH, check_price, monthly, storage_cost
    from .retention import disk_usage

    price = check_price(DEFAULT_PRICE_PER_GB_MONTH if price_per_gb_month is None else price_per_gb_month)
    cost = cost or price_per_gb_month is not None
    usages = {}
    for target_team, target_model in team_targets(team_name, model_name, repo_path, all_models):
        both = [manager(k, ctx, target_team, target_model, None if all_models else repo_path) for k in ("model", "data")]
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


@cli.command("verify")
@click.argument("version", required=False, shell_complete=version_completer(None))
@target_options(message_uses_m=False)
@click.option("--kind", type=click.Choice(["model", "data"]), default="model", show_default=True)
@click.option("--remote", is_flag=True, help="Check the remote copy (downloads and hashes every object).")
@json_option
@click.pass_obj
def verify_cmd(
    ctx: Ctx,
    version: str | None,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
    kind: str,
    remote: bool,
    as_json: bool,
) -> None:
    """Check every file of VERSION against its recorded hash; exit 12 on damage."""
    m = manager(kind, ctx, team_name, model_name, repo_path)
    problems = m.verify(version, remote=remote)
    where = "remote" if remote else "local cache"
    if as_json:
        emit_json({"kind": kind, "version": version, "where": where, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            out(f"DAMAGED {visible(problem)}")
        if not problems:
            on_remote = 0 if remote else int(getattr(m.ws.storage, "last_verify_remote_checked", 0))
            checked = f"{where}" + (f" ({on_remote} not cached here: checked on the remote)" if on_remote else "")
            out(f"{kind} {version or '(latest)'}: every file matches its hash in the {checked}")
    if problems:
        sys.exit(EXIT_DAMAGED)


@cli.command("pull")
@target_options(message_uses_m=False)
@dry_run_option
@json_option
@click.pass_obj
def pull_cmd(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, dry_run: bool, as_json: bool) -> None:
    """Bring the workspace up to the remote: branch, then model and data content (verified).

    Refuses to replace content that was changed and never uploaded.
    """
    m = manager("model", ctx, team_name, model_name, repo_path, dry_run)
    updated = m.pull(dry_run=dry_run)
    if as_json:
        emit_json({"updated": updated, "dry_run": dry_run})
        return
    for rel in updated:
        out(rel)


cli.add_command(alias_of(pull_cmd, "sync"), name="sync")


# -- combined checkpoints ----------------------------------------------------------------


@cli.group("checkpoint")
def checkpoint_group() -> None:
    """Version model and data together (one atomic push); list, revert, inspect."""


def combined(
    ctx: Ctx, team: str | None, model: str | None, repo_path: str | None, dry_run: bool = False, *, message: str | None = None
) -> CombinedCheckpointsManage:
    from .combined import CombinedCheckpointsManage

    team, model, repo_path = resolve_target(team, model, repo_path, message=message)
    return CombinedCheckpointsManage(
        team, model, repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, progress=not ctx.quiet, caller="cli"
    )


add_stage_commands(
    checkpoint_group,
    "checkpoint",
    lambda ctx, team, model, repo, dry_run=False, message=None: combined(ctx, team, model, repo, dry_run, message=message),
)


@checkpoint_group.command("create")
@target_options(message_uses_m=True)
@click.option("--version", "version_tag", help="One version for model, data and checkpoint (must be free in all three).")
@click.option("--major", is_flag=True, help="Bump the major versions.")
@click.option("--message", "-m", help="Message for the model (and the checkpoint).")
@click.option("--data-message", help="Message for the data version.")
@dry_run_option
@json_option
@click.pass_obj
def checkpoint_create(
    ctx: Ctx,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
    version_tag: str | None,
    major: bool,
    message: str | None,
    data_message: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Tag the current model and data together; prints model, data and checkpoint versions."""
    c = combined(ctx, team_name, model_name, repo_path, dry_run, message=message)
    model_v, data_v = c.tag_model_and_data(version_tag, model_message=message, data_message=data_message, major=major, dry_run=dry_run)
    checkpoint_v = None if dry_run else c.get_combined_metadata().version
    if as_json:
        emit_json({"checkpoint": checkpoint_v, "model": model_v, "data": data_v, "dry_run": dry_run})
    elif not dry_run:
        out(f"checkpoint {checkpoint_v}: model {model_v}, data {data_v}")


@checkpoint_group.command("list")
@target_options(message_uses_m=False)
@json_option
@click.pass_obj
def checkpoint_list(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool) -> None:
    """List combined versions with the model and data versions they name."""
    c = combined(ctx, team_name, model_name, repo_path)
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
@target_options(message_uses_m=False)
@click.option("--force", is_flag=True, help="Revert even with uncommitted changes (they are kept in the cache).")
@dry_run_option
@json_option
@click.pass_obj
def checkpoint_revert(
    ctx: Ctx, version: str, team_name: str | None, model_name: str | None, repo_path: str | None, force: bool, dry_run: bool, as_json: bool
) -> None:
    """Restore model and data to combined VERSION in one commit."""
    c = combined(ctx, team_name, model_name, repo_path, dry_run)
    meta = c.revert_model_and_data(version, force=force, dry_run=dry_run)
    if as_json:
        emit_json({"reverted_to": meta.to_dict(), "commit": c.ws.versioning.head(), "dry_run": dry_run})


@checkpoint_group.command("info")
@click.argument("version", required=False, shell_complete=version_completer("checkpoint"))
@target_options(message_uses_m=False)
@json_option
@click.pass_obj
def checkpoint_info(
    ctx: Ctx, version: str | None, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool
) -> None:
    """Both metadata records of combined VERSION (default: latest)."""
    data = combined(ctx, team_name, model_name, repo_path).get_combined_metadata(version).to_dict()
    if as_json:
        emit_json(data)
        return
    out(f"checkpoint {data['version']}  {visible(data['date'])}  {visible(data['message'])}")
    for kind in ("model", "data"):
        rec = data[kind]
        out(
            f"  {kind:5} {rec['version']:8} {visible(rec['digest'])}  {human_bytes(rec['size'])}  {visible(format_metrics(rec['metrics']))}"
        )


# -- configuration --------------------------------------------------------------------


@cli.group("config")
def config_group() -> None:
    """Show and change the cpv configuration (~/.cpv/config.json, or $CPV_HOME)."""


@config_group.command("show")
@json_option
def config_show(as_json: bool) -> None:
    """Print the configuration and the backends new models will use (no secrets are ever stored)."""
    from .config import CPVConfig
    from .settings import mask, secret_keys

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
    from .config import CPVConfig, looks_like_secret
    from .settings import check_setting, mask, secret_keys

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


@cli.command("validate")
@json_option
@target_options(message_uses_m=False)
@click.pass_obj
def validate(ctx: Ctx, as_json: bool, team_name: str | None, model_name: str | None, repo_path: str | None) -> None:
    """Check every configured credential, one line per check; exit 4 on failure.

    With a team and model (options, or run inside a workspace) the hosting
    backend also checks that model's repository.
    """
    from .config import CPVConfig
    from .errors import CredentialError

    report = CPVConfig().validate_credentials()
    if (team_name and model_name) or find_workspace(Path(repo_path).resolve() if repo_path else Path.cwd()):
        from .workspace import Workspace

        team, model, repo = resolve_target(team_name, model_name, repo_path)
        failed = {c.name for c in report.checks if not c.ok}  # a failure the credentials already report is said once
        report.checks.extend(c for c in Workspace(team, model, repo).hosting.validate() if c.ok or c.name not in failed)
    if as_json:
        emit_json(report.to_dict())
    else:
        from .setup_command import print_checks

        print_checks(report)
    if not report:
        sys.exit(CredentialError.exit_code)


# -- plugins / quickstart -----------------------------------------------------------------


@cli.command("status")
@target_options(message_uses_m=False)
@json_option
@click.pass_obj
def status_cmd(ctx: Ctx, team_name: str | None, model_name: str | None, repo_path: str | None, as_json: bool) -> None:
    """The workspace against its committed and tagged versions, and against the remote."""
    from .status import workspace_status
    from .workspace import Workspace

    team, model, repo = resolve_target(team_name, model_name, repo_path)
    st = workspace_status(Workspace(team, model, repo))
    if as_json:
        emit_json(st.to_dict())
        return
    branch = "up to date with the remote" if not (st.ahead or st.behind) else f"{st.ahead} commit(s) ahead, {st.behind} behind the remote"
    out(f"{st.team}/{st.model}: {branch}")
    if st.targets:
        render_table(
            ["kind", "path", "state", "committed as", "latest"],
            [[t.kind, t.path, t.state, t.version or ("uploaded, not tagged" if t.committed else "-"), t.latest or "-"] for t in st.targets],
        )
    for t in st.targets:
        for rel, change in t.changes.items():
            out(f"  {change:8} {t.path}/{rel}" if rel else f"  {change:8} {t.path}")
    hints = []
    # never a hint that would be refused: a pull over unsaved work that a teammate's upload replaces is
    clash = [t for t in st.targets if t.upstream_changed and t.state in {"modified", "untracked"}]
    if st.behind and not clash:
        hints.append("`cpv pull` brings the remote's commits")
    if st.ahead:
        hints.append("the next upload or tag publishes your local commits")
    for t in st.targets:
        if t in clash:
            hints.append(
                f"a teammate uploaded a newer {t.path} and yours has changes never uploaded: `cpv {t.kind} upload` keeps yours "
                f"as the newest, on top of theirs; or `mv {t.path} {t.path}.mine && cpv pull` takes theirs"
            )
        elif t.state in {"modified", "untracked"}:
            hints.append(f"`cpv {t.kind} upload` stores your {t.path}")
        elif t.committed and not t.version:
            hints.append(f"`cpv {t.kind} tag` gives the uploaded {t.path} a version")
    for hint in hints:
        ctx.echo(hint)


@cli.command("version")
@json_option
def version_cmd(as_json: bool) -> None:
    """Print cpv's version (same as `cpv --version` / `cpv -V`)."""
    if as_json:
        emit_json({"version": __version__})
        return
    out(f"cpv {__version__}")


@cli.command("plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins, their versions and hooks."""
    from .plugins import Plugins

    infos = Plugins().describe()
    if as_json:
        emit_json([{"name": i.name, "module": i.module, "version": i.version, "hooks": list(i.hooks), "builtin": i.builtin} for i in infos])
        return
    render_table(
        ["plugin", "version", "source", "hooks"],
        [[i.name, i.version or "-", "builtin" if i.builtin else "external", ", ".join(i.hooks)] for i in infos],
    )


@cli.command("quickstart")
@click.option("--home", type=click.Path(file_okay=False), help="Use this CPV_HOME instead of a temporary one.")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace.")
@dry_run_option
@click.pass_obj
def quickstart(ctx: Ctx, home: str | None, keep: bool, dry_run: bool) -> None:
    """Run the whole cycle on the embedded local default in a temporary workspace."""
    from .quickstart import QUICKSTART_STEPS, run_quickstart

    if dry_run:
        where = home or "a temporary CPV_HOME (removed afterwards unless --keep)"
        for step in QUICKSTART_STEPS:
            ctx.echo(f"[dry-run] would {step} in {where}")
        return
    run_quickstart(home=home, keep=keep, echo=click.echo)


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------


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


if __name__ == "__main__":  # pragma: no cover
    main()

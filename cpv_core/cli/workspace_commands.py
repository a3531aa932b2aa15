"""Commands on the workspace as a whole: ``init`` (model, data), ``status``,
``pull`` (alias ``sync``) and ``diff``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cpv_core.cli.options import (
    Ctx,
    Where,
    dry_run_option,
    json_option,
    manager,
    target,
    version_completer,
)
from cpv_core.cli.output import (
    emit_json,
    render_table,
    show_diff,
)
from cpv_core.cli.terminal import out
from cpv_core.errors import ValidationError

if TYPE_CHECKING:
    from cpv_core.api.model_data import DataCheckpointsManage, ModelsCheckpointsManage

logger = logging.getLogger("cpv")


layout_option = click.option(
    "--layout",
    type=click.Choice(["dvc", "tensors"]),
    default=None,
    help="How a new model stores large files: dvc (whole files, `dvc pull` reads them; the default) or tensors "
    "(chunks, per tensor for .safetensors: a new version stores only what changed). Default: config storage_layout.",
)


@click.group(invoke_without_command=True)
@click.option("--team-name", "-t", help="Team name (same as `cpv init model -t`).")
@click.option("--model-name", "-m", help="Model name.")
@click.option("--repo-path", "-r", type=click.Path(file_okay=False), help="Workspace directory.")
@click.option(
    "--data-path", "-d", type=click.Path(exists=True, file_okay=False), help="Upload this directory as the first data checkpoint."
)
@layout_option
@dry_run_option
@json_option
@click.pass_context
def init(
    click_ctx: click.Context,
    team_name: str | None,
    model_name: str | None,
    repo_path: str | None,
    data_path: str | None,
    layout: str | None,
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
            layout=layout,
            dry_run=dry_run,
            as_json=as_json,
        )


@init.command("model")
@target(message_uses_m=False)
@click.option(
    "--data-path", "-d", type=click.Path(exists=True, file_okay=False), help="Upload this directory as the first data checkpoint."
)
@layout_option
@dry_run_option
@json_option
@click.pass_obj
def init_model(ctx: Ctx, where: Where, data_path: str | None, layout: str | None, dry_run: bool, as_json: bool) -> None:
    """Initialise the workspace of TEAM/MODEL."""
    from cpv_core.api.model_data import ModelsCheckpointsManage

    if not where.team or not where.model:
        raise ValidationError("cpv init model needs --team-name/-t and --model-name/-m", fix="e.g. cpv init model -t AI-Convo -m whisper")
    m = ModelsCheckpointsManage(where.team, where.model, where.repo_path, verbose=ctx.verbose, dry_run=dry_run, echo=ctx.echo, caller="cli")
    m.ws.requested_layout = layout
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
@target(message_uses_m=False)
@click.option("--data-path", "-d", required=True, type=click.Path(exists=True, file_okay=False), help="Directory to upload.")
@layout_option
@dry_run_option
@json_option
@click.pass_obj
def init_data(ctx: Ctx, where: Where, data_path: str | None, layout: str | None, dry_run: bool, as_json: bool) -> None:
    """Initialise the workspace if needed; upload DATA_PATH and tag it as the first data version."""
    from cpv_core.api.model_data import DataCheckpointsManage

    d = DataCheckpointsManage(
        *where.resolve(),
        verbose=ctx.verbose,
        dry_run=dry_run,
        echo=ctx.echo,
        progress=not ctx.quiet,
        caller="cli",
    )
    d.ws.requested_layout = layout
    report_init(d, d.import_data_init(data_path), dry_run, as_json)


@click.command("status")
@target(message_uses_m=False)
@json_option
@click.pass_obj
def status_cmd(ctx: Ctx, where: Where, as_json: bool) -> None:
    """The workspace against its committed and tagged versions, and against the remote."""
    st = manager("model", ctx, where).status()
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


@click.command("pull")
@target(message_uses_m=False)
@dry_run_option
@json_option
@click.pass_obj
def pull_cmd(ctx: Ctx, where: Where, dry_run: bool, as_json: bool) -> None:
    """Bring the workspace up to the remote: branch, then model and data content (verified).

    Refuses to replace content that was changed and never uploaded.
    """
    m = manager("model", ctx, where, dry_run)
    updated = m.pull(dry_run=dry_run)
    if as_json:
        emit_json({"updated": updated, "dry_run": dry_run})
        return
    for rel in updated:
        out(rel)


@click.command("diff")
@click.argument("version_a", shell_complete=version_completer(None))
@click.argument("version_b", shell_complete=version_completer(None))
@target(message_uses_m=False)
@click.option("--kind", type=click.Choice(["model", "data"]), default="model", show_default=True)
@json_option
@click.pass_obj
def diff_cmd(ctx: Ctx, version_a: str, version_b: str, where: Where, kind: str, as_json: bool) -> None:
    """Compare two versions: metrics with deltas, hash and size, files added/removed/changed."""
    show_diff(kind, manager(kind, ctx, where).diff(version_a, version_b), as_json)

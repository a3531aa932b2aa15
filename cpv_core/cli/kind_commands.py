"""``cpv model ...`` and ``cpv data ...``: the commands on one kind of checkpoint."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from cpv_core.cli.options import (
    Ctx,
    Where,
    dry_run_option,
    json_option,
    manager,
    parse_metrics,
    target,
    version_completer,
)
from cpv_core.cli.output import (
    describe_code,
    emit_json,
    print_table,
    show_diff,
)
from cpv_core.cli.retention_commands import retention_group
from cpv_core.cli.stage_commands import add_stage_commands
from cpv_core.cli.tensor_commands import export_command, tensors_command
from cpv_core.cli.terminal import out
from cpv_core.domain.metrics import format_metrics
from cpv_core.domain.stage_rules import parse_gate
from cpv_core.domain.versions import Version
from cpv_core.errors import ValidationError
from cpv_core.plugin.progress import human_bytes
from cpv_core.trust import visible

if TYPE_CHECKING:
    from cpv_core.domain.artifacts import DataArtifacts, ModelArtifacts

logger = logging.getLogger("cpv")


def diff_command(kind: str) -> click.Command:
    """`cpv {kind} diff` for ``kind``."""

    @click.command("diff")
    @click.argument("version_a", shell_complete=version_completer(kind))
    @click.argument("version_b", shell_complete=version_completer(kind))
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def diff(ctx: Ctx, version_a: str, version_b: str, where: Where, as_json: bool) -> None:
        """Compare two versions: metrics with deltas, hash and size, files added/removed/changed (as `cpv diff`)."""
        show_diff(kind, manager(kind, ctx, where).diff(version_a, version_b), as_json)

    return diff


def upload_command(kind: str) -> click.Command:
    """`cpv {kind} upload` for ``kind``."""

    @click.command("upload")
    @click.argument("path", required=False, type=click.Path(exists=True))
    @target(message_uses_m=True)
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
        where: Where,
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
        m = manager(kind, ctx, where, dry_run, message=message)
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

    return upload


def tag_command(kind: str) -> click.Command:
    """`cpv {kind} tag` for ``kind``."""

    @click.command("tag")
    @target(message_uses_m=True)
    @click.option("--version", "version_tag", help="Explicit version, e.g. v1.0 (default: next minor).")
    @click.option("--major", is_flag=True, help="Bump the major version (v0.3 -> v1.0).")
    @click.option("--message", "-m", help="Tag message.")
    @click.option("--allow-duplicate", is_flag=True, help="Tag content identical to an existing version anyway.")
    @dry_run_option
    @json_option
    @click.pass_obj
    def tag(
        ctx: Ctx,
        where: Where,
        version_tag: str | None,
        major: bool,
        message: str | None,
        allow_duplicate: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Give the current checkpoint a version and push it."""
        m = manager(kind, ctx, where, dry_run, message=message)
        version = m.tag(version_tag, message, major=major, dry_run=dry_run, allow_duplicate=allow_duplicate)
        if as_json:
            emit_json({"kind": kind, "version": version, "dry_run": dry_run})
        else:
            out(version)

    return tag


def list_command(kind: str) -> click.Command:
    """`cpv {kind} list` for ``kind``."""

    @click.command("list")
    @target(message_uses_m=False)
    @click.option("--stage", help="Only the version holding this stage now.")
    @click.option("--sort", "sort_by", metavar="METRIC", help="Order by a metric (lowest first; versions without it last).")
    @click.option(
        "--filter", "filters", metavar="GATE", multiple=True, help="Keep versions whose metrics meet e.g. 'wer<0.05' (repeatable)."
    )
    @json_option
    @click.pass_obj
    def list_(
        ctx: Ctx,
        where: Where,
        stage: str | None,
        sort_by: str | None,
        filters: tuple[str, ...],
        as_json: bool,
    ) -> None:
        """List versions (including those pushed by others), with the stages they hold."""
        from cpv_core.ops.listing import version_listing

        m = manager(kind, ctx, where)
        gates = [parse_gate(f, "--filter") for f in filters]
        rows = version_listing(m, ctx.echo, stage=stage, sort_by=sort_by, gates=gates)
        emit_json({"kind": kind, "team": m.team_name, "model": m.model_name, "versions": rows}) if as_json else print_table(rows, ctx)

    return list_


def plot_command(kind: str) -> click.Command:
    """`cpv {kind} plot` for ``kind``."""

    @click.command("plot")
    @click.argument("metric")
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def plot(ctx: Ctx, metric: str, where: Where, as_json: bool) -> None:
        """A terminal sparkline of METRIC across versions (nested metrics dotted: acc.top1)."""
        from cpv_core.ops.report import numeric_series, plot_lines, version_rows

        rows = version_rows(manager(kind, ctx, where))
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

    return plot


def download_command(kind: str) -> click.Command:
    """`cpv {kind} download` for ``kind``."""

    @click.command("download")
    @click.argument("version", required=False, shell_complete=version_completer(kind))
    @target(message_uses_m=False)
    @click.option("--output-dir", "-o", type=click.Path(file_okay=False), help="Where to place the files.")
    @click.option("--force", is_flag=True, help="Overwrite existing files at the output path.")
    @click.option("--sub-path", help="Only this part of a data version (e.g. test).", hidden=kind == "model")
    @click.option("--include", help="Only the files of a directory version matching these globs, e.g. 'config.json,*.safetensors'.")
    @click.option(
        "--tensors",
        help="Only these tensors of a .safetensors version, e.g. 'encoder.*,lm_head.weight': a valid safetensors file "
        "(the tensor layout fetches only their bytes).",
    )
    @dry_run_option
    @json_option
    @click.pass_obj
    def download(
        ctx: Ctx,
        version: str | None,
        where: Where,
        output_dir: str | None,
        force: bool,
        sub_path: str | None,
        include: str | None,
        tensors: str | None,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Materialise VERSION (default: latest) outside the workspace."""
        m = manager(kind, ctx, where, dry_run)
        from cpv_core.api.model_data import ModelsCheckpointsManage

        if tensors is not None:
            if include is not None or sub_path is not None or dry_run:
                raise ValidationError("--tensors cannot be combined with --include, --sub-path or --dry-run", fix="give --tensors alone")
            got = m.download_tensors(version, tensors, output_dir or ".", force=force)
            if as_json:
                emit_json({"kind": kind, **asdict(got), "path": str(got.path)})
            else:
                out(str(got.path))
            return

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

    return download


def revert_command(kind: str) -> click.Command:
    """`cpv {kind} revert` for ``kind``."""

    @click.command("revert")
    @click.argument("version", shell_complete=version_completer(kind))
    @target(message_uses_m=False)
    @click.option("--force", is_flag=True, help="Revert even with uncommitted changes (they are kept in the cache).")
    @dry_run_option
    @json_option
    @click.pass_obj
    def revert(
        ctx: Ctx,
        version: str,
        where: Where,
        force: bool,
        dry_run: bool,
        as_json: bool,
    ) -> None:
        """Return the workspace to VERSION as a new commit (history is kept)."""
        m = manager(kind, ctx, where, dry_run)
        meta = m.revert(version, force=force, dry_run=dry_run)
        if as_json:
            emit_json({"reverted_to": meta.to_dict(), "commit": m.ws.versioning.head(), "dry_run": dry_run})

    return revert


def info_command(kind: str) -> click.Command:
    """`cpv {kind} info` for ``kind``."""

    @click.command("info")
    @click.argument("version", required=False, shell_complete=version_completer(kind))
    @click.option("--version", "version_opt", help="The version (same as the argument).")
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def info(
        ctx: Ctx,
        version: str | None,
        version_opt: str | None,
        where: Where,
        as_json: bool,
    ) -> None:
        """Metadata of VERSION (default: latest)."""
        if version and version_opt and version != version_opt:
            raise ValidationError(
                f"two different versions given: {version} and --version {version_opt}",
                fix=f"give the version once: `info {version}` or `info --version {version}`",
            )
        from cpv_core.ops.listing import version_info

        data = version_info(manager(kind, ctx, where), version or version_opt, ctx.echo)
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

    return info


def stage_rules_group(kind: str) -> click.Group:
    """`cpv {kind} stage-rules set|show`."""

    @click.group("stage-rules")
    def stage_rules() -> None:
        """The model's stage rules (.cpv/stages.json): order, require_previous, metric gates."""

    @stage_rules.command("set")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False))
    @target(message_uses_m=False)
    @dry_run_option
    @click.pass_obj
    def rules_set(ctx: Ctx, file: str, where: Where, dry_run: bool) -> None:
        """Check FILE's rules, commit them and push (every member and CI then enforce them)."""
        m = manager(kind, ctx, where, dry_run)
        m.set_stage_rules(file, dry_run=dry_run)

    @stage_rules.command("show")
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def rules_show(ctx: Ctx, where: Where, as_json: bool) -> None:
        """The stage rules in force."""
        rules = manager(kind, ctx, where).stage_rules().to_dict()
        if as_json:
            emit_json(rules)
            return
        out(f"order             {' -> '.join(rules['order']) or '(any stage)'}")
        out(f"require_previous  {'true' if rules['require_previous'] else 'false'}")
        for name, gates in rules["gates"].items():
            out(f"gates {name:11} {visible(', '.join(gates))}")

    return stage_rules


def build_kind_group(kind: str) -> click.Group:
    """``cpv model ...`` and ``cpv data ...`` share their shape."""

    @click.group(kind, help=f"Upload, tag, list, download, revert and inspect {kind} checkpoints.")
    def group() -> None:
        pass

    factories = (diff_command, upload_command, tag_command, list_command, plot_command, download_command, revert_command, info_command)
    for factory in (*factories, tensors_command, export_command, retention_group):
        group.add_command(factory(kind))
    group.add_command(stage_rules_group(kind))
    add_stage_commands(
        group,
        kind,
        lambda ctx, where, dry_run=False, message=None: manager(kind, ctx, where, dry_run, message=message),
    )
    return group

"""`cpv model tensors` (what a safetensors version holds, read from its header alone) and
`cpv model export --dvc` (a version as plain DVC whole files, for `dvc pull`)."""

from __future__ import annotations

from pathlib import Path

import click

from cpv_core.cli.options import Ctx, Where, dry_run_option, json_option, manager, target
from cpv_core.cli.output import emit_json, render_table
from cpv_core.cli.terminal import out
from cpv_core.errors import ValidationError
from cpv_core.plugin.progress import human_bytes


def tensors_command(kind: str) -> click.Command:
    """`cpv {kind} tensors` for ``kind``."""

    @click.command("tensors")
    @click.argument("version", required=False)
    @target(message_uses_m=False)
    @json_option
    @click.pass_obj
    def tensors(ctx: Ctx, version: str | None, where: Where, as_json: bool) -> None:
        """The tensors of a .safetensors VERSION (default: latest): name, dtype, shape, bytes.
        The tensor layout reads only the header's chunk."""
        from cpv_core.ops.tensors import list_tensors

        found, header, fetched = list_tensors(manager(kind, ctx, where), version)
        if as_json:
            rows = [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "bytes": t.nbytes} for t in header.tensors]
            emit_json({"version": found, "tensors": rows, "metadata": header.metadata or {}, "bytes_fetched": fetched})
            return
        render_table(["name", "dtype", "shape", "size"], [[t.name, t.dtype, str(t.shape), human_bytes(t.nbytes)] for t in header.tensors])
        out(f"{len(header.tensors)} tensors in {found}, {human_bytes(header.file_size)}; read {human_bytes(fetched)} to list them")

    return tensors


def export_command(kind: str) -> click.Command:
    """`cpv {kind} export` for ``kind``."""

    @click.command("export")
    @click.argument("version", required=False)
    @target(message_uses_m=False)
    @click.option("--dvc", "as_dvc", is_flag=True, help="As plain DVC whole files (files/md5/..), the only format offered.")
    @click.option(
        "--output-dir", "-o", required=True, type=click.Path(file_okay=False), help="The directory to write (a DVC local remote)."
    )
    @dry_run_option
    @json_option
    @click.pass_obj
    def export(ctx: Ctx, version: str | None, where: Where, as_dvc: bool, output_dir: str, dry_run: bool, as_json: bool) -> None:
        """Write VERSION (default: latest) as plain DVC objects, whole files even in the tensor
        layout, so `dvc pull` reads it from a checkout of that version
        (`dvc remote add --local -d export DIR`)."""
        from cpv_core.ops.tensors import export_dvc

        if not as_dvc:
            raise ValidationError("cpv export needs --dvc (the one export format)", fix=f"cpv {kind} export --dvc -o DIR")
        found, count = export_dvc(manager(kind, ctx, where, dry_run), version, Path(output_dir).expanduser().resolve(), dry_run=dry_run)
        if as_json:
            emit_json({"kind": kind, "version": found, "objects": count, "output_dir": str(Path(output_dir).resolve()), "dry_run": dry_run})

    return export

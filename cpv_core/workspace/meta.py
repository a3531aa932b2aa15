"""``.cpv/workspace.json``: what it may hold (team, model, backends, target paths, the
storage layout) and its check. It is committed, so written by anyone with push access:
everything in it is data, checked here before any of it is used."""

from __future__ import annotations

from typing import Any

from cpv_core.domain.backend_values import LAYOUT_KEY, STORAGE_LAYOUTS
from cpv_core.domain.metrics import METRICS_FILE
from cpv_core.domain.names import validate_name
from cpv_core.errors import ValidationError
from cpv_core.trust import check_relpath, json_object, visible

META_DIR = ".cpv"
META_FILE = f"{META_DIR}/workspace.json"
FORMAT_VERSION = 1
DEFAULT_FILES = {"model": "model.bin", "data": "data"}
MAX_META_BYTES = 64 * 1024
#: directories that belong to git, DVC and cpv: never a model or data path
RESERVED_TOP = {".git", ".dvc", ".cpv"}


def check_meta(raw: bytes, where: str) -> dict[str, Any]:
    """Parse and check ``.cpv/workspace.json`` (committed, so written by anyone with push access).

    ``team`` and ``model`` must be valid names, ``backends`` a mapping of
    names, and every ``files`` value a plain relative path inside the
    workspace (no absolute path, no ``..``, not under .git/.dvc/.cpv).
    Anything else is a :class:`ValidationError` naming the file and key;
    nothing is touched.
    """
    fix = f"restore {where} from a version you trust (git checkout) and push"
    meta = json_object(raw, where, fix)
    for key in ("team", "model"):
        if key in meta:
            try:
                validate_name(meta[key], f"{where} {key}")
            except ValidationError as exc:
                raise ValidationError(exc.message, fix=fix) from None
    backends = meta.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in backends.items()):
        raise ValidationError(f"{where} backends is not a mapping of backend names", fix=fix)
    if meta.get(LAYOUT_KEY, "dvc") not in STORAGE_LAYOUTS:
        raise ValidationError(
            f"{where} {LAYOUT_KEY} is {visible(repr(meta.get(LAYOUT_KEY)))[:60]}, not one of {', '.join(STORAGE_LAYOUTS)}", fix=fix
        )
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise ValidationError(f"{where} files is not a mapping", fix=fix)
    for kind, value in files.items():
        try:
            check_target_rel(value, f"{where} files.{visible(kind)}")
        except ValidationError as exc:
            raise ValidationError(exc.message, fix=fix) from None
    rels = [str(v) for v in files.values()]
    if any(a == b or b.startswith(f"{a}/") for i, a in enumerate(rels) for j, b in enumerate(rels) if i != j):
        raise ValidationError(f"{where} files: two kinds share a path ({', '.join(map(visible, rels))})", fix=fix)
    return meta


def check_target_rel(value: object, where: str) -> str:
    """``value`` as a path a model or data target may have inside the workspace.

    A plain relative path (:func:`check_relpath`) that is none of the files
    cpv manages itself: not under .git/.dvc/.cpv, no ``.dvc`` suffix, not
    metrics.log, README.md or .gitignore.
    """
    rel = check_relpath(value, where)
    if rel.split("/", 1)[0] in RESERVED_TOP or rel.endswith(".dvc") or rel in {METRICS_FILE, "README.md", ".gitignore", ".gitattributes"}:
        raise ValidationError(
            f"{where} {visible(repr(value))} names a file cpv manages itself",
            fix="rename the model file or directory (e.g. model.bin, checkpoint/) and upload it again",
        )
    return rel

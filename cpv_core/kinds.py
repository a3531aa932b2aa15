"""What differs between model and data checkpoints, and what a manager accepts as input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .sources import scan_directory, scan_file


@dataclass(frozen=True)
class KindSpec:
    """What differs between model and data checkpoints."""

    kind: str
    is_dir: bool


MODEL = KindSpec("model", is_dir=False)
DATA = KindSpec("data", is_dir=True)


def check_source(spec: KindSpec, source: Path) -> tuple[int, int]:
    """Size and file count of ``source``; :class:`ValidationError` unless it is a
    non-empty regular file (model) or a directory cpv can store faithfully (data)."""
    kind = spec.kind
    if not source.exists():
        raise ValidationError(f"{kind} path {str(source)!r} does not exist", fix=f"pass the path of the {kind} to upload")
    if spec.is_dir and not source.is_dir():
        raise ValidationError(
            f"data path {str(source)!r} is not a directory", fix="pass a directory (e.g. data/ with train/, validation/, test/)"
        )
    if not spec.is_dir and source.is_dir():
        raise ValidationError(f"model path {str(source)!r} is not a file", fix="pass the model weights file")
    size, nfiles = scan_directory(source) if spec.is_dir else scan_file(source, kind)
    if nfiles == 0 or (not spec.is_dir and size == 0):
        raise ValidationError(f"{kind} path {str(source)!r} is empty", fix=f"write the {kind} before uploading it")
    return size, nfiles


#: keyword arguments every seed method accepts (the seeds pass them to each call)
SEED_KWARGS = frozenset({"verbose", "dry_run", "force"})


def check_kwargs(method: str, kwargs: Mapping[str, Any], *extra: str) -> None:
    """Raise TypeError, as Python does, for a keyword argument ``method`` does not take
    (a misspelt ``dryrun=True`` must not be silently ignored)."""
    unknown = sorted(set(kwargs) - SEED_KWARGS - set(extra))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")

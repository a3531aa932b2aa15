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
    """What differs between model and data checkpoints.

    :param dir_only: the content must be a directory (data); otherwise a file
        of any name or a directory (a model: ``ckpt.pt``, a Hugging Face folder).
    :param keeps_name: an upload from elsewhere keeps its name in the workspace
        (``~/runs/hf-model`` becomes ``hf-model/``) instead of replacing the
        kind's fixed path (``data/``).
    """

    kind: str
    dir_only: bool
    keeps_name: bool


MODEL = KindSpec("model", dir_only=False, keeps_name=True)
DATA = KindSpec("data", dir_only=True, keeps_name=False)

#: every kind of version a model's repository can hold: models, data, combined checkpoints
VERSION_KINDS = ("model", "data", "checkpoint")


def check_source(spec: KindSpec, source: Path) -> tuple[int, int]:
    """Size and file count of ``source``; :class:`ValidationError` unless it is a
    non-empty regular file (models only) or a directory cpv can store faithfully."""
    kind = spec.kind
    if not source.exists():
        raise ValidationError(f"{kind} path {str(source)!r} does not exist", fix=f"pass the path of the {kind} to upload")
    if spec.dir_only and not source.is_dir():
        raise ValidationError(
            f"data path {str(source)!r} is not a directory", fix="pass a directory (e.g. data/ with train/, validation/, test/)"
        )
    is_dir = source.is_dir()
    size, nfiles = scan_directory(source) if is_dir else scan_file(source, kind)
    if nfiles == 0 or (not is_dir and size == 0):
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

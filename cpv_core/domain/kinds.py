"""What differs between model and data checkpoints, and what a manager accepts as input."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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


#: keyword arguments every seed method accepts (the seeds pass them to each call)
SEED_KWARGS = frozenset({"verbose", "dry_run", "force"})


def check_kwargs(method: str, kwargs: Mapping[str, Any], *extra: str) -> None:
    """Raise TypeError, as Python does, for a keyword argument ``method`` does not take
    (a misspelt ``dryrun=True`` must not be silently ignored)."""
    unknown = sorted(set(kwargs) - SEED_KWARGS - set(extra))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")

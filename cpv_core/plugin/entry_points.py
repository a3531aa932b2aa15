"""The entry points of one group, found without importing :mod:`importlib.metadata`.

Importing ``importlib.metadata`` and asking it for one group costs ~45 ms on
this project's machine (it imports ``email``, ``zipfile`` and ``csv`` and
builds a distribution object for every installed package): half of the 100 ms
start-up budget of ``cpv --help``. The answer is a few lines of a few files,
so this reads them directly: every ``*.dist-info`` / ``*.egg-info`` directory
on ``sys.path``, in ``sys.path`` order, the first distribution of a name
winning, as ``importlib.metadata`` does (tested to agree with it). A
distribution's version, needed only by ``cpv plugins``, is read through
``importlib.metadata`` then.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

_DIST_SUFFIXES = (".dist-info", ".egg-info")


@dataclass(frozen=True)
class EntryPoint:
    """One ``name = module:attr`` line of a distribution's ``entry_points.txt``."""

    name: str
    value: str
    group: str
    dist_path: str

    def load(self) -> Any:
        """Import the module and return the named attribute (the module itself without one)."""
        module, _, attr = self.value.partition(":")
        loaded: Any = importlib.import_module(module.strip())
        for part in attr.split("[")[0].strip().split("."):
            if part:
                loaded = getattr(loaded, part)
        return loaded

    @property
    def version(self) -> str | None:
        """The version of the distribution that declares this entry point."""
        from importlib import metadata
        from pathlib import Path

        try:
            return metadata.PathDistribution(Path(self.dist_path)).version
        except Exception:  # noqa: BLE001 - a damaged METADATA file: no version shown
            return None


def _normalized(dist_dir: str) -> str:
    name = dist_dir.rsplit(".", 1)[0].split("-")[0]
    return re.sub(r"[-_.]+", "_", name).lower()


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``(name, value)`` of every entry of ``[group]`` in an ``entry_points.txt``."""
    pairs, current = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def find(group: str, path: list[str] | None = None) -> list[EntryPoint]:
    """Every entry point of ``group`` the distributions on ``path`` (default ``sys.path``) declare."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        folder = entry or "."
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(_DIST_SUFFIXES))
        except OSError:  # not a directory (a zip file), or gone
            continue
        for name in names:
            dist = _normalized(name)
            if dist in seen:
                continue
            seen.add(dist)
            dist_path = os.path.join(folder, name)
            try:
                with open(os.path.join(dist_path, "entry_points.txt"), encoding="utf-8") as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError):
                continue
            found.extend(EntryPoint(n, v, group, dist_path) for n, v in _section(text, group))
    return found

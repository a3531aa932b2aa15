"""Small helpers shared by the tests."""

from __future__ import annotations

import os
from pathlib import Path


def write_model(path: Path, size: int = 4096, seed: int | None = None) -> bytes:
    """Write random (or seeded) bytes to ``path`` and return them."""
    data = os.urandom(size) if seed is None else bytes((seed + i) % 251 for i in range(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def write_data_dir(root: Path, nfiles: int = 6) -> None:
    """A small data/ directory with train/, validation/ and test/."""
    for i in range(nfiles):
        split = ("train", "validation", "test")[i % 3]
        f = root / split / f"sample_{i}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"sample {i}\n" * (i + 1))


def git(path: Path, *args: str) -> str:
    """Run git in ``path`` and return its stdout (raises on failure)."""
    import subprocess

    return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True).stdout


def write_many_files(root: Path, count: int) -> None:
    """``count`` small files spread over train/, validation/ and test/ (i % 3)."""
    for i in range(count):
        f = root / ("train", "validation", "test")[i % 3] / f"f{i:04}.txt"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"row {i}\n")

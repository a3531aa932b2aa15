"""Small helpers shared by the tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def write_model(path: Path, size: int = 4096, seed: int | None = None) -> bytes:
    """Write random (or seeded) bytes to ``path`` and return them."""
    data = os.urandom(size) if seed is None else bytes((seed + i) % 251 for i in range(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def upload_model(m: Any, seed: int, size: int = 1000, **kwargs: Any) -> bytes:
    """Write a model of ``size`` bytes from ``seed`` into ``m``'s workspace and upload it
    (``kwargs`` go to ``upload_model_checkpoint``); returns the bytes."""
    data = write_model(m.repo_path / "model.bin", size, seed=seed)
    m.upload_model_checkpoint(**kwargs)
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


def tree_state(*roots: Path) -> dict[str, str]:
    """Content hashes of every file under ``roots`` (git internals included),
    for before/after comparisons. DVC's own scratch directory (``.dvc/tmp``:
    read locks, hash state database) and cpv's lock file are left out: they
    change on reads and hold no user data."""
    state: dict[str, str] = {}
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "lock" and ".dvc/tmp" not in p.as_posix():
                state[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


# -- the real S3 server (SeaweedFS) the session fixture starts --------------------

S3_ACCESS_KEY = "AKIACPVTESTKEY000001"
S3_SECRET_KEY = "cpv-canary-secret-3f9a1c7e5b"  # asserted never to leak anywhere
S3_BUCKET = "vmo-model-checkpoints"


def worktree(root: Path) -> dict[str, str]:
    """What a user sees of a workspace: its files outside .git and the cache, and its HEAD."""
    state = {k: v for k, v in tree_state(root).items() if "/.git/" not in k and "/.dvc/cache/" not in k}
    return {**state, "HEAD": git(root, "rev-parse", "HEAD")}


def write_aws_credentials(home: Path, profile: str = "cpv-test", secret: str = S3_SECRET_KEY) -> Path:
    """An AWS credentials file in the test HOME."""
    path = home / ".aws" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    text += f"[{profile}]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {secret}\n"
    path.write_text(text)
    path.chmod(0o600)
    return path


def s3_client(seaweed):
    import boto3

    return boto3.client(
        "s3", endpoint_url=seaweed.endpoint, aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1"
    )


def s3_keys(seaweed, bucket: str = S3_BUCKET, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` under ``prefix``."""
    client = s3_client(seaweed)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys

"""Where cpv keeps its files, and atomic writes."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HOME_ENV = "CPV_HOME"


_HASH_CHUNK = 8 * 1024 * 1024


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (what DVC 3 records), read in 8 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_size(path: Path) -> tuple[int, int]:
    """Total bytes and number of files of a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def cpv_home() -> Path:
    """``$CPV_HOME`` if set, else ``~/.cpv``."""
    value = os.environ.get(HOME_ENV)
    if value:
        return Path(value).expanduser().resolve()
    return Path.home() / ".cpv"


def make_private_dirs(path: Path) -> Path:
    """Create ``path`` and its missing parents, each new one 0700.

    Directories that already exist keep their mode: cpv only ever changes
    the permissions of what it created (a shared parent such as /tmp must
    never be locked down).
    """
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    return path


@contextmanager
def atomic_path(dest: Path, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest``.

    On any exception the temporary file is removed and ``dest`` is untouched,
    so readers never see a partial file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".cpv-tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dest: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest, mode=mode) as tmp:
        tmp.write_bytes(data)


KEEP_SUFFIX = ".cpv-keep"


def keep_path(target: Path) -> Path:
    """Where :func:`preserved` keeps its hard-link backup of ``target``."""
    return target.parent / f".{target.name}{KEEP_SUFFIX}"


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_file():
        os.link(src, dst)
        return
    for path in src.rglob("*"):
        out = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            out.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, out)


def restore_preserved(target: Path) -> bool:
    """Put back files of ``target`` that a killed or interrupted operation
    removed, from the backup :func:`preserved` made; then drop the backup.

    Files are copied (new inodes), so a restored file never shares storage
    with a read-only cache object. Returns True when something was restored.
    """
    keep = keep_path(target)
    if not keep.exists():
        return False
    restored = False
    pairs = [(keep, target)] if keep.is_file() else [(p, target / p.relative_to(keep)) for p in keep.rglob("*") if p.is_file()]
    for src, dst in pairs:
        if not dst.exists():
            with atomic_path(dst, mode=0o644) as tmp:
                shutil.copyfile(src, tmp)
            restored = True
    shutil.rmtree(keep) if keep.is_dir() else keep.unlink()
    return restored


@contextmanager
def preserved(target: Path) -> Iterator[None]:
    """Keep a hard-link backup of ``target`` (instant, no extra space) while a
    tool that moves files around (DVC's add moves them into its cache and
    copies them back) runs; on any interruption the files come back, and a
    SIGKILL is repaired by :func:`restore_preserved` on the next run."""
    keep = keep_path(target)
    if keep.exists():
        restore_preserved(target)
    if target.is_dir():
        keep.mkdir()
    _link_tree(target, keep)
    try:
        yield
    except BaseException:
        restore_preserved(target)
        raise
    shutil.rmtree(keep) if keep.is_dir() else keep.unlink(missing_ok=True)

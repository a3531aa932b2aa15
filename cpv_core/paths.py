"""Where cpv keeps its files, and atomic writes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote

HOME_ENV = "CPV_HOME"


#: read size of every hashing loop: small enough that the bytes are still in the CPU's cache
#: when they are written (measured on 1 GiB: hash and copy 3.3 s with 8 MiB reads, 1.8 s
#: with 256 KiB ones; hashing alone 1.55 s either way)
HASH_CHUNK = 256 * 1024


def read_chunks(reader: BinaryIO, size: int = HASH_CHUNK) -> Iterator[memoryview]:
    """``reader``'s bytes as views of one reused buffer (valid until the next one is read):
    no new allocation, and so no new page faults, per chunk."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    readinto = getattr(reader, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buffer)
            chunk = view[:n] if n else view[:0]
        else:  # a stream without readinto (an HTTP body)
            data = reader.read(size)
            n, chunk = len(data), memoryview(data)
        if not n:
            return
        yield chunk


def md5_stream(reader: BinaryIO, writer: BinaryIO | None = None, on_bytes: Callable[[int], object] | None = None) -> str:
    """MD5 of everything ``reader`` yields, copying it to ``writer`` and reporting each
    chunk's size to ``on_bytes`` on the way: the one hashing loop of cpv."""
    digest = hashlib.md5()
    for chunk in read_chunks(reader):
        digest.update(chunk)
        if writer is not None:
            writer.write(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (what DVC 3 records)."""
    with open(path, "rb") as handle:
        return md5_stream(handle)


def tree_size(path: Path) -> tuple[int, int]:
    """Total bytes and number of files of a file or a directory tree."""
    if path.is_file():
        return path.stat().st_size, 1
    if not path.is_dir():
        return 0, 0
    sizes = [st.st_size for _, st in _tree_files(str(path), "")]
    return sum(sizes), len(sizes)


def fingerprint(path: Path) -> str:
    """A cheap identity of a file's or tree's current content: size, mtime and
    inode of every file (git's index heuristic), hashed; "" when absent."""
    if not path.exists():
        return ""
    digest = hashlib.md5()
    if path.is_file():
        st = path.stat()
        digest.update(f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
        return digest.hexdigest()
    for rel, st in sorted(_tree_files(str(path), ""), key=lambda item: item[0].split("/")):
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return digest.hexdigest()


def _tree_files(folder: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """``(relpath, stat)`` of every file below ``folder`` (links to files followed, links to
    folders not entered), on string paths: a 20 000-file directory costs one stat per file."""
    with os.scandir(folder) as entries:
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                yield from _tree_files(entry.path, rel + "/")
            elif entry.is_file():
                yield rel, entry.stat()


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
        os.chmod(tmp, mode if mode is not None else _default_mode(dest))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: what :func:`atomic_path` names its temporary files: ``.NAME.XXXXXXXX.cpv-tmp``
_ATOMIC_TMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.cpv-tmp$")


def atomic_leftovers(folder: Path, name: str | None = None) -> list[Path]:
    """The temporary files killed :func:`atomic_path` writes left in ``folder`` (of the file
    ``name`` only, when given): regular files, never links, for the caller to remove."""
    found: list[Path] = []
    if not folder.is_dir():
        return found
    for entry in os.scandir(folder):
        match = _ATOMIC_TMP_RE.fullmatch(entry.name)
        if match and (name is None or match["name"] == name) and entry.is_file(follow_symlinks=False):
            found.append(Path(entry.path))
    return found


def _default_mode(dest: Path) -> int:
    """The mode a plain ``open(dest, "w")`` would give: the existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(dest: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest, mode=mode) as tmp:
        tmp.write_bytes(data)


def state_name(rel: str) -> str:
    """A workspace-relative path as one file name (``data/x`` -> ``data%2Fx``), for
    entries in the private state directory that stand for that path."""
    return quote(rel, safe="")


def path_from_state_name(name: str) -> str:
    """Inverse of :func:`state_name`."""
    return unquote(name)


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link the file or the regular files of the tree ``src`` at ``dst`` (no links followed)."""
    if src.is_file():
        os.link(src, dst)
        return
    for path in src.rglob("*"):
        out = dst / path.relative_to(src)
        if path.is_dir() and not path.is_symlink():
            out.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.is_symlink():
            out.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, out)


def restore_preserved(target: Path, keep: Path, root: Path) -> bool:
    """Put back files of ``target`` that a killed or interrupted operation
    removed, from the hard-link backup ``keep`` (cpv 0.1 kept one around
    ``dvc add``, which moved files; a workspace killed then is still repaired);
    then drop the backup.

    Files are copied (new inodes), so a restored file never shares storage
    with a read-only cache object. Nothing is written through a symbolic
    link: every destination is checked to stay under ``root`` (the
    workspace), and a target that became a link keeps the backup and raises.
    Returns True when something was restored.
    """
    from cpv_core.trust import contained

    if not keep.exists():
        return False
    rel = target.relative_to(root).as_posix()
    restored = False
    if keep.is_file():
        pairs = [(keep, contained(root, rel, "recovery"))]
    else:
        contained(root, rel, "recovery")
        pairs = [
            (p, contained(root, f"{rel}/{p.relative_to(keep).as_posix()}", "recovery"))
            for p in keep.rglob("*")
            if p.is_file() and not p.is_symlink()
        ]
    for src, dst in pairs:
        if not dst.exists() and not dst.is_symlink():
            with atomic_path(dst, mode=0o644) as tmp:
                shutil.copyfile(src, tmp)
            restored = True
    shutil.rmtree(keep) if keep.is_dir() else keep.unlink()
    return restored


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree (never following a symbolic link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

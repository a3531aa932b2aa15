"""The per-file work of a data directory of many small files, as functions a worker
process of :mod:`cpv_core.bulk` runs on a chunk of files: hashing them (into the
cache), storing cache objects in a local store, and copying objects out with
their hash checked. Each takes and returns plain values only.

Every write goes to a temporary name in the destination folder and is renamed
into place, so a killed worker leaves only temporaries, which the next command
removes (the cache's ``.cpv-*.tmp`` beside its object folders; a download's staging directory).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cpv_core.trust import open_regular
from cpv_plugins.dvc.layout import OBJECTS_DIR, object_relpath
from cpv_plugins.dvc.stat_cache import settled_stat

#: what a hashed file reports: its MD5, its size, and (hashed in place) its stat before the read
Hashed = tuple[str, int, "os.stat_result | None"]


def _write_new(folder: str, name: str, data: bytes, mode: int, made: set[str], tmp_dir: str | None = None) -> str:
    """``data`` written to a new temporary file (in ``tmp_dir``, default ``folder``; same file
    system) then renamed to ``folder/name``; the path."""
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    final = os.path.join(folder, name)
    tmp = os.path.join(tmp_dir or folder, f".cpv-{os.getpid()}-{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def read_regular(path: str) -> bytes:
    """The bytes of ``path`` if it is a regular file (:func:`cpv_core.trust.open_regular`)."""
    with open_regular(Path(path)) as handle:
        return handle.read()


def hash_files(paths: Sequence[str], cache_root: str | None) -> list[Hashed]:
    """Hash each file (small: read whole); with ``cache_root`` copy it into that DVC cache
    as a read-only object, else keep the stat taken before the read (the upload checks
    that the file is still so). Results in the order of ``paths``."""
    out: list[Hashed] = []
    made: set[str] = set()
    objects = os.path.join(cache_root, OBJECTS_DIR) if cache_root is not None else None  # where the cache's temporaries go
    for path in paths:
        before = None if cache_root is not None else settled_stat(path)  # type: ignore[arg-type]  # taken before the read
        data = read_regular(path)
        md5 = hashlib.md5(data).hexdigest()
        if cache_root is not None:
            folder, name = os.path.split(os.path.join(cache_root, object_relpath(md5)))
            _write_new(folder, name, data, 0o444, made, objects)  # read-only, as DVC keeps cache objects
        out.append((md5, len(data), before))
    return out


def copy_objects(pairs: Sequence[tuple[str, str]], mode: int) -> list[str]:
    """Copy each ``(source, destination)`` (atomically, file mode ``mode``); the MD5 of
    the bytes each destination received, for the caller to check against the object id."""
    out = []
    made: set[str] = set()
    for src, dest in pairs:
        data = read_regular(src)
        folder, name = os.path.split(dest)
        _write_new(folder, name, data, mode, made)
        out.append(hashlib.md5(data).hexdigest())
    return out

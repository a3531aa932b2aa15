"""The MD5 of workspace files that have not changed since cpv last hashed them.

The same heuristic as git's index and DVC's state database: a file whose
size, modification time and inode are what they were when it was hashed has
the same content, so a status check or a re-upload of a directory where one
file of 2,000 changed hashes one file. A file modified within a second of
being hashed is not trusted (its next change could keep the same timestamp:
git's "racily clean" case) and is hashed again.

The cache lives in the workspace's ``.dvc/tmp`` (never committed). It is a
cache, so what it says is checked (object ids) and a damaged file is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cpv_core.errors import ValidationError
from cpv_core.paths import atomic_write_bytes
from cpv_core.trust import check_oid

_FORMAT = 2
_RACY_NS = 1_000_000_000


def _key(path: str | os.PathLike[str]) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class StatCache:
    """``{workspace relpath: md5}`` for files whose stat is unchanged since they were hashed."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._entries = self._load()
        self._dirty = False

    def _load(self) -> dict[str, list[object]]:
        try:
            data = json.loads(self.file.read_bytes()) if self.file.is_file() and not self.file.is_symlink() else {}
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return {k: v for k, v in data["files"].items() if isinstance(k, str) and isinstance(v, list) and len(v) == 5}

    def get(self, rel: str, path: str | os.PathLike[str]) -> str | None:
        """The recorded MD5 of ``path`` (workspace path ``rel``) if it is unchanged, else None."""
        entry = self._entries.get(rel)
        if entry is None:
            return None
        md5, size, mtime, ino, hashed_at = entry
        try:
            if _key(path) != [size, mtime, ino] or not isinstance(mtime, int) or not isinstance(hashed_at, int):
                return None
        except OSError:
            return None
        if hashed_at - mtime < _RACY_NS:
            return None
        try:
            return check_oid(md5, "stat cache", allow_dir=False)
        except ValidationError:
            return None

    def put(self, rel: str, path: str | os.PathLike[str], md5: str, hashed_at: int) -> None:
        """Record that ``path`` had MD5 ``md5`` when hashing started at ``hashed_at`` (ns)."""
        self._entries[rel] = [md5, *_key(path), hashed_at]
        self._dirty = True

    def save(self) -> None:
        """Write the cache if anything was recorded (a failure to write only costs speed)."""
        if not self._dirty:
            return
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.file, json.dumps({"format": _FORMAT, "files": self._entries}).encode(), mode=0o600)
        except OSError:
            return
        self._dirty = False


def now_ns() -> int:
    """The wall-clock time the file system stamps modification times with."""
    return time.time_ns()


#: how old a file's modification time must be before its stat can vouch for its
#: content: longer than one tick of the file system's clock (ext4, XFS: a few ms)
_SETTLE_NS = 20_000_000


def settled_stat(path: Path) -> os.stat_result:
    """``path``'s stat once its modification time is older than one clock tick, so any
    later write shows as a different time. A file system that keeps whole seconds
    (its times end in nine zeros) waits a second: the racily-clean rule, applied
    before the file is read rather than after."""
    for _ in range(3):
        st = os.stat(path)
        settle = _RACY_NS if st.st_mtime_ns % _RACY_NS == 0 else _SETTLE_NS
        age = time.time_ns() - st.st_mtime_ns
        if age >= settle:
            return st
        time.sleep((settle - age) / 1e9)
    return os.stat(path)


def same_file_state(path: Path, before: os.stat_result) -> bool:
    """Whether ``path`` is still the file ``before`` describes: same inode, size, and
    modification and change times (a write in place changes both)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    fields = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(st, name) == getattr(before, name) for name in fields)

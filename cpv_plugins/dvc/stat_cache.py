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
import re
import time
from pathlib import Path
from typing import cast

from cpv_core.errors import ValidationError
from cpv_core.paths import atomic_write_bytes
from cpv_core.trust import check_oid

_FORMAT = 3
_RACY_NS = 1_000_000_000
_MD5_COLUMN = re.compile(r"(?:[0-9a-f]{32}\n)*")
_COLUMNS = ("md5", "size", "mtime", "ino", "hashed")


def _key(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


class StatCache:
    """``{workspace relpath: md5}`` for files whose stat is unchanged since they were hashed,
    and ``{tracked directory: manifest id}`` for whole trees whose scan is unchanged.

    The files' entries are kept column by column (one JSON list per field), read only
    when a lookup needs them: an unchanged tree of 200 000 files is told by its
    fingerprint alone. Anything malformed is ignored, never trusted.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.trees_file = file.with_name(file.stem + "-trees.json")
        self._entries: dict[str, tuple[str, int, int, int, int]] | None = None
        self._trees = self._load_trees()
        self._dirty = False
        self._trees_dirty = False

    # -- reading -------------------------------------------------------------------
    def _read_json(self, file: Path) -> object:
        try:
            return json.loads(file.read_bytes()) if file.is_file() and not file.is_symlink() else None
        except (OSError, ValueError, RecursionError):
            return None

    def _load_trees(self) -> dict[str, list[object]]:
        data = self._read_json(self.trees_file)
        if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("trees"), dict):
            return {}
        return {k: v for k, v in data["trees"].items() if isinstance(k, str) and isinstance(v, list) and len(v) == 4}

    def _load_entries(self) -> dict[str, tuple[str, int, int, int, int]]:
        data = self._read_json(self.file)
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return {}
        rels = data.get("rels")
        columns = [data.get(name) for name in _COLUMNS]
        if not isinstance(rels, list) or not all(isinstance(c, list) and len(c) == len(rels) for c in columns):
            return {}
        lists = cast("list[list[object]]", columns)
        if not all(type(r) is str for r in rels) or not all(type(x) is int for column in lists[1:] for x in column):
            return {}
        if not all(type(m) is str for m in lists[0]) or not _MD5_COLUMN.fullmatch("".join(f"{m}\n" for m in lists[0])):
            return {}
        return cast("dict[str, tuple[str, int, int, int, int]]", dict(zip(rels, zip(*lists, strict=True), strict=True)))

    @property
    def entries(self) -> dict[str, tuple[str, int, int, int, int]]:
        if self._entries is None:
            self._entries = self._load_entries()
        return self._entries

    # -- files -----------------------------------------------------------------------
    def get(self, rel: str, path: str | os.PathLike[str]) -> str | None:
        """The recorded MD5 of ``path`` (workspace path ``rel``) if it is unchanged, else None."""
        try:
            size, mtime, ino = _key(path)
        except OSError:
            return None
        return self.get_scanned(rel, size, mtime, ino)

    def get_scanned(self, rel: str, size: int, mtime: int, ino: int) -> str | None:
        """As :meth:`get`, for a file whose stat a scan has just read."""
        entry = self.entries.get(rel)
        if entry is None:
            return None
        md5, e_size, e_mtime, e_ino, hashed_at = entry
        if e_size != size or e_mtime != mtime or e_ino != ino or hashed_at - mtime < _RACY_NS:
            return None
        return md5

    def put(self, rel: str, path: str | os.PathLike[str], md5: str, hashed_at: int) -> None:
        """Record that ``path`` had MD5 ``md5`` when hashing started at ``hashed_at`` (ns)."""
        self.put_scanned(rel, *_key(path), md5, hashed_at)

    def put_scanned(self, rel: str, size: int, mtime: int, ino: int, md5: str, hashed_at: int) -> None:
        """As :meth:`put`, with the stat the file had before it was read."""
        self.entries[rel] = (check_oid(md5, "stat cache", allow_dir=False), size, mtime, ino, hashed_at)
        self._dirty = True

    # -- trees -----------------------------------------------------------------------
    def tree(self, path: str, fingerprint: str, newest_mtime_ns: int) -> str | None:
        """The manifest id recorded for directory ``path`` if its scan's fingerprint is the one
        recorded, and was recorded over a second after its newest file was modified."""
        entry = self._trees.get(path)
        if entry is None:
            return None
        recorded, oid, newest, hashed_at = entry
        if recorded != fingerprint or newest != newest_mtime_ns or not isinstance(hashed_at, int) or not isinstance(oid, str):
            return None
        if hashed_at - newest_mtime_ns < _RACY_NS:
            return None
        try:
            return check_oid(oid, "stat cache")
        except ValidationError:
            return None

    def put_tree(self, path: str, fingerprint: str, newest_mtime_ns: int, oid: str, hashed_at: int) -> None:
        """Record that directory ``path``, scanned with ``fingerprint``, has manifest ``oid``."""
        self._trees[path] = [fingerprint, oid, newest_mtime_ns, hashed_at]
        self._trees_dirty = True

    # -- writing ---------------------------------------------------------------------
    def save(self) -> None:
        """Write what was recorded (a failure to write only costs speed)."""
        try:
            if self._dirty and self._entries is not None:
                rels = list(self._entries)
                columns = list(zip(*self._entries.values(), strict=True)) or [() for _ in _COLUMNS]
                data = {"format": _FORMAT, "rels": rels, **{name: list(col) for name, col in zip(_COLUMNS, columns, strict=True)}}
                self._write(self.file, data)
                self._dirty = False
            if self._trees_dirty:
                self._write(self.trees_file, {"format": _FORMAT, "trees": self._trees})
                self._trees_dirty = False
        except OSError:
            return

    def _write(self, file: Path, data: dict[str, object]) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(file, json.dumps(data, separators=(",", ":")).encode(), mode=0o600)


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

"""What cpv accepts as the content of a model or data checkpoint.

A directory is walked without following links, so nothing outside it is read
by accident: a symbolic link must point to a regular file inside the same
directory (links to directories could loop, links outside would store a
stranger's files); FIFOs, sockets and devices are refused (reading them
blocks or never ends); entries that DVC would silently leave out of a
version (``.git``, ``.hg``, ``.dvc``, ``.dvcignore``) are refused instead of
dropped. The count this scan returns is checked against the stored version.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from cpv_core import bulk
from cpv_core.domain.kinds import KindSpec
from cpv_core.errors import ValidationError
from cpv_core.paths import fingerprint
from cpv_core.trust import visible

#: names DVC never stores (or that change what it stores) inside a tracked directory
DVC_SKIPPED_NAMES = {".git", ".hg", ".dvc", ".dvcignore"}


def _refuse(path: Path, why: str, fix: str) -> ValidationError:
    return ValidationError(f"{visible(path)} {why}", fix=fix)


def scan_file(path: Path, kind: str) -> tuple[int, int]:
    """Size and count (1) of a single-file checkpoint; it must be a regular file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror})", f"pass the path of the {kind} to upload") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "is not a regular file (a FIFO, socket or device cannot be versioned)", f"pass the {kind} file itself")
    return st.st_size, 1


#: a file of a scan: ``(relpath, path to read or None for root/relpath, size, mtime_ns, inode)``
ScanEntry = tuple[str, "str | None", int, int, int]

#: a serial walk that has found this many files hands the folders still to walk to
#: the worker processes (:mod:`cpv_core.bulk`)
_SERIAL_WALK_FILES = 20_000


class TreeScan:
    """One walk of a data directory: every file it versions, sorted by relpath, with the
    stat (size, modification time, inode) that lets a cache vouch for its content."""

    def __init__(self, root: Path, files: list[ScanEntry], scanned_at: int) -> None:
        self.root = root
        self.files = files
        #: wall-clock time (ns) before the walk began: what a cache records as "hashed at"
        self.scanned_at = scanned_at
        self._root_prefix = str(root) + os.sep
        self._fingerprint: str | None = None

    def path_of(self, entry: ScanEntry) -> str:
        """The path to read ``entry``'s bytes from (a link's target, checked to be inside)."""
        return entry[1] if entry[1] is not None else self._root_prefix + entry[0]

    @property
    def size(self) -> int:
        return sum(entry[2] for entry in self.files)

    @property
    def fingerprint(self) -> str:
        """A cheap identity of the tree's content: every file's relpath, size, mtime and
        inode (git's index heuristic), hashed. Equal fingerprints, taken long enough after
        the last modification (the racily-clean rule, applied by the caller), mean equal content."""
        if self._fingerprint is None:
            text = "".join(f"{rel}\0{size}\0{mtime}\0{ino}\n" for rel, _, size, mtime, ino in self.files)
            self._fingerprint = "tree:" + hashlib.md5(text.encode("utf-8", "surrogateescape")).hexdigest()
        return self._fingerprint

    @property
    def newest_mtime_ns(self) -> int:
        return max((entry[3] for entry in self.files), default=0)


def walk_files(root: Path) -> list[tuple[str, str, int]]:
    """Every file a data directory versions: ``(relpath, path to read, size)``, relpaths
    in ``/`` form, sorted. A link inside the directory is read through its target;
    whatever cannot be stored faithfully is refused (see the module docstring)."""
    scan = scan_tree(root)
    return [(entry[0], scan.path_of(entry), entry[2]) for entry in scan.files]


def scan_tree(root: Path) -> TreeScan:
    """Walk ``root`` once (on every core when it is large), refusing what cannot be stored
    faithfully. Inside :func:`scan_scope` a walk of the same root is reused."""
    key = os.path.abspath(root)
    scope: dict[str, TreeScan] | None = getattr(_scopes, "scans", None)
    if scope is not None and key in scope:
        return scope[key]
    scanned_at = time.time_ns()
    real_root = str(Path(root).resolve())
    found, pending = _walk([(str(root), "")], real_root, budget=_SERIAL_WALK_FILES)
    if pending:
        if bulk.worker_count() > 1:
            for result in bulk.map_unordered(_walk_folder_task, [(folder, prefix, real_root) for folder, prefix in pending]):
                found.extend(_unpack(result))
        else:
            found.extend(_walk(pending, real_root, budget=None)[0])
    found.sort()
    scan = TreeScan(Path(root), found, scanned_at)
    if scope is not None:
        scope[key] = scan
    return scan


_scopes = threading.local()


@contextmanager
def scan_scope() -> Iterator[None]:
    """Within this block (one upload, under the workspace lock) a directory is walked once:
    the scan that checked the source is the one hashed and fingerprinted. Whoever writes
    into a scanned tree inside the block calls :func:`forget_scan`."""
    outer = getattr(_scopes, "scans", None)
    _scopes.scans = {} if outer is None else outer
    try:
        yield
    finally:
        _scopes.scans = outer


def forget_scan(root: Path) -> None:
    """Drop a remembered walk of ``root`` (its content is about to change)."""
    scope = getattr(_scopes, "scans", None)
    if scope is not None:
        scope.pop(os.path.abspath(root), None)


def tree_fingerprint(path: Path) -> str:
    """A cheap identity of the content at ``path`` (a file or a directory): "" when absent."""
    if path.is_dir() and not path.is_symlink():
        try:
            return scan_tree(path).fingerprint
        except (ValidationError, OSError):
            pass  # a tree cpv would refuse: the plain walk still tells a change
    return fingerprint(path)


def _walk_folder_task(task: tuple[str, str, str]) -> tuple[str, object]:
    """A worker's walk of one folder: its files, or the refusal (errors carry their fix)."""
    folder, prefix, real_root = task
    try:
        return "files", _walk([(folder, prefix)], real_root, budget=None)[0]
    except ValidationError as exc:
        return "refused", (exc.message, exc.fix)


def _unpack(result: tuple[str, object]) -> list[ScanEntry]:
    kind, value = result
    if kind == "refused":
        message, fix = cast("tuple[str, str | None]", value)
        raise ValidationError(message, fix=fix)
    return cast("list[ScanEntry]", value)


def _walk(pending: list[tuple[str, str]], real_root: str, *, budget: int | None) -> tuple[list[ScanEntry], list[tuple[str, str]]]:
    """Walk the folders in ``pending`` (folder, its relpath prefix) until ``budget`` files are
    found; the files and the folders left. String paths: no ``Path`` per entry."""
    found: list[ScanEntry] = []
    pending = list(pending)
    while pending and (budget is None or len(found) < budget):
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in DVC_SKIPPED_NAMES:
                    raise _refuse(
                        Path(entry.path),
                        "would be left out of the version by DVC",
                        f"move {entry.name} out of the directory (cpv stores every file, or none)",
                    )
                st = entry.stat(follow_symlinks=False)
                rel = prefix + entry.name
                if stat.S_ISDIR(st.st_mode):
                    pending.append((entry.path, rel + "/"))
                elif stat.S_ISREG(st.st_mode):
                    found.append((rel, None, st.st_size, st.st_mtime_ns, st.st_ino))
                elif stat.S_ISLNK(st.st_mode):
                    target, tst = _check_link(Path(entry.path), Path(real_root))
                    found.append((rel, str(target), tst.st_size, tst.st_mtime_ns, tst.st_ino))
                else:
                    raise _refuse(
                        Path(entry.path),
                        "is not a regular file (a FIFO, socket or device cannot be versioned)",
                        "remove it from the directory",
                    )
    return found, pending


def scan_directory(root: Path) -> tuple[int, int]:
    """Total bytes and number of files of a data directory, refusing what cannot be stored faithfully."""
    scan = scan_tree(root)
    return scan.size, len(scan.files)


def _check_link(path: Path, real_root: Path) -> tuple[Path, os.stat_result]:
    """The file a symbolic link names and its stat, if it is a regular file inside the directory."""
    fix = "replace the link with the file itself (cpv stores content, not links)"
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _refuse(path, "is a broken or looping symbolic link", fix) from None
    if real_root not in target.parents:
        raise _refuse(path, f"is a symbolic link to {visible(target)}, outside the directory", fix)
    st = target.stat()
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "is a symbolic link to a directory or special file (it could loop)", fix)
    return target, st


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

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

import os
import stat
from pathlib import Path

from cpv_core.domain.kinds import KindSpec
from cpv_core.errors import ValidationError
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


def walk_files(root: Path) -> list[tuple[str, str, int]]:
    """Every file a data directory versions: ``(relpath, path to read, size)``, relpaths
    in ``/`` form, sorted. A link inside the directory is read through its target;
    whatever cannot be stored faithfully is refused (see the module docstring). Paths
    are strings: a 20 000-file directory would spend ~0.2 s building ``Path`` objects."""
    real_root = root.resolve()
    found: list[tuple[str, str, int]] = []
    pending = [(str(root), "")]  # (folder, its relpath prefix): no Path arithmetic per entry
    while pending:
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
                    found.append((rel, entry.path, st.st_size))
                elif stat.S_ISLNK(st.st_mode):
                    target, size = _check_link(Path(entry.path), real_root)
                    found.append((rel, str(target), size))
                else:
                    raise _refuse(
                        Path(entry.path),
                        "is not a regular file (a FIFO, socket or device cannot be versioned)",
                        "remove it from the directory",
                    )
    return sorted(found)


def scan_directory(root: Path) -> tuple[int, int]:
    """Total bytes and number of files of a data directory, refusing what cannot be stored faithfully."""
    files = walk_files(root)
    return sum(size for _, _, size in files), len(files)


def _check_link(path: Path, real_root: Path) -> tuple[Path, int]:
    """The file a symbolic link names and its size, if it is a regular file inside the directory."""
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
    return target, st.st_size


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

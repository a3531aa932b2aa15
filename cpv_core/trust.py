"""The trust boundary: checks for values that someone else could have written.

Everything cpv reads from the shared repository (``.cpv/workspace.json``,
pointer files, ``metrics.log``, tag messages), from a storage remote
(directory manifests, object keys) or from a local cache is *data, never
authority*: it never becomes a path outside the workspace or output
directory, never becomes a command-line option and never changes how other
values are parsed. The helpers here are the one place those rules are
spelled out; backends and managers call them at the point of use (a path is
checked where it is written, not only where it was read).
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cpv_core.errors import ValidationError

#: a content hash as DVC names objects: 32 lower-case hex digits, ``.dir`` for a manifest
OID_RE = re.compile(r"^[0-9a-f]{32}(\.dir)?$")
#: the largest pointer file cpv parses (DVC writes a few hundred bytes)
MAX_POINTER_BYTES = 64 * 1024
#: the largest directory manifest cpv parses (about 100 bytes per file)
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


def check_oid(value: object, where: str, *, allow_dir: bool = True) -> str:
    """Return ``value`` if it is an object id (``^[0-9a-f]{32}(\\.dir)?$``).

    An id read from a pointer or manifest becomes a cache path and an object
    key, so nothing else (``../../x``, an absolute path) is accepted.

    :param where: where the value came from, for the message (``"data.dvc"``).
    :raises ValidationError: naming the value and its source.
    """
    if not isinstance(value, str) or not OID_RE.fullmatch(value) or (not allow_dir and value.endswith(".dir")):
        raise ValidationError(
            f"{where}: {visible(repr(value))} is not a content hash (32 hex digits" + (", optionally .dir)" if allow_dir else ")"),
            fix="the file was not written by cpv or DVC: restore it from a version you trust (git checkout)",
        )
    return value


def check_relpath(value: object, where: str, what: str = "path") -> str:
    """Return ``value`` as a normalised relative POSIX path, or raise.

    Refused: non-strings, empty values, NUL or other control characters,
    absolute paths, backslashes, ``.`` or ``..`` components, empty
    components (``a//b``) and a trailing slash.

    :param where: where the value came from, for the message.
    :param what: what the value is ("manifest entry", "sub-path").
    """
    problem = None
    if not isinstance(value, str):
        problem = "it is not a string"
    elif not value:
        problem = "it is empty"
    elif not (value.isascii() and value.isprintable()) and any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        problem = "it contains a control character"
    elif "\\" in value:
        problem = "it contains a backslash"
    elif value.startswith("/"):
        problem = "it is absolute"
    else:
        parts = value.split("/")
        if any(p in {"", ".", ".."} for p in parts):
            problem = "it has an empty, '.' or '..' component"
    if problem:
        raise ValidationError(
            f"{where}: {what} {visible(repr(value))} is not allowed: {problem}",
            fix="use a plain relative path inside the directory (no '..', no leading '/')",
        )
    # what passed has no empty, "." or ".." component and no leading "/": already the
    # normal form PurePosixPath would give (not built: a manifest has 20 000 entries)
    return value  # type: ignore[return-value]


def select_sub_path(files: dict[str, str], sub: str, where: str) -> dict[str, str]:
    """The entries of ``files`` at or below ``sub``, relative to it.

    :raises ValidationError: when ``sub`` names no entry, listing the top-level ones.
    """
    sub = check_relpath(sub, where, "sub-path")
    chosen = {rel: md5 for rel, md5 in files.items() if rel == sub or rel.startswith(sub + "/")}
    if not chosen:
        top = sorted({rel.split("/", 1)[0] for rel in files})
        raise ValidationError(
            f"sub-path {visible(sub)!s} is not in {where}",
            fix="choose one of: " + ", ".join(visible(t) for t in top[:20]) + (" ..." if len(top) > 20 else ""),
        )
    if sub in chosen:
        return {"": chosen[sub]}
    return {rel[len(sub) + 1 :]: md5 for rel, md5 in chosen.items()}


def contained(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` after checking that writing there stays under ``root``.

    ``rel`` must pass :func:`check_relpath`, and no existing component
    between ``root`` and the result may be a symbolic link (a link could
    point anywhere, so writing through it is never done).
    """
    rel = check_relpath(rel, where)
    out = root
    for part in PurePosixPath(rel).parts:
        out = out / part
        if out.is_symlink():
            raise ValidationError(
                f"{where}: {out} is a symbolic link; cpv never writes through one",
                fix=f"remove the link {out}, or choose another directory",
            )
    return out


def require_inside(root: Path, path: Path, where: str) -> Path:
    """Return ``path`` if its resolved form lies under ``root``'s resolved form."""
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise ValidationError(
            f"{where}: {path} lies outside {root}",
            fix="this value was not written by cpv: restore the file from a version you trust",
        )
    return path


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file.

    A FIFO, socket or device in a cache or store would block a plain
    ``open`` (or feed it endless bytes); a symbolic link is not followed.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in {getattr(os, "ELOOP", -1)}:
            raise ValidationError(
                f"{path} is a symbolic link, not a stored object", fix="remove it; cpv stores objects as regular files"
            ) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValidationError(f"{path} is not a regular file", fix="remove it; cpv stores objects as regular files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def visible(text: object) -> str:
    """``text`` with every control or format character shown as an escape.

    Used on every value from the repository, a remote or a cache before it
    reaches a terminal: ``\\x1b[2J`` prints as ``\\e[2J`` and cannot clear the
    screen, a newline cannot forge a table row, and bidi overrides show.
    """
    s = str(text)
    if s.isascii() and s.isprintable():  # the common case, checked in C: nothing to escape
        return s
    out = []
    for ch in s:
        if unicodedata.category(ch) in {"Cc", "Cf"} or ch in "\u2028\u2029":
            out.append(_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"))
        else:
            out.append(ch)
    return "".join(out)


def visible_lines(text: object) -> str:
    """Like :func:`visible`, but keeps line breaks (for multi-line output cpv built itself)."""
    return "\n".join(visible(line) for line in str(text).split("\n"))


def json_object(raw: bytes | str, where: str, fix: str) -> dict[str, Any]:
    """``raw`` (read from a repository or a remote) parsed as a JSON object; anything
    else, a deeply nested document included, is a :class:`ValidationError` naming ``where``."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} is not valid JSON ({type(exc).__name__})", fix=fix) from None
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not a JSON object", fix=fix)
    return data

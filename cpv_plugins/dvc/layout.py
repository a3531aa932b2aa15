"""DVC 3's on-disk format, in one place: what a plain ``git`` + ``dvc`` user reads.

* objects: ``files/md5/ab/cdef…`` below a cache or a remote root, a directory's
  manifest as ``….dir`` (a JSON list of ``{"md5", "relpath"}`` sorted by path,
  serialised exactly as DVC does, so both compute the same directory hash);
* pointer files: ``{path}.dvc`` with one ``outs`` entry;
* the ``.dvc/`` directory: ``config`` (committed), ``config.local`` (this
  machine's), ``.gitignore``, and ``.dvcignore`` beside it.

Everything read here comes from a repository or a store, so every parser checks
what it returns (object ids, relative paths, counts) and fails with a
:class:`ValidationError` naming the file, never a traceback. Nothing here
imports DVC: cpv writes the format itself and the DVC CLI reads it (tested).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from pathlib import Path, PurePosixPath
from typing import Any, cast

from cpv_core.errors import DVCError, ValidationError
from cpv_core.paths import atomic_path, atomic_write_bytes
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.trust import MAX_MANIFEST_BYTES, MAX_POINTER_BYTES, check_oid, check_relpath, open_regular, visible
from cpv_plugins.dvc.part_digests import ENTRY_META_KEY, META_KEY, PartDigests, entry_parts_from_meta, entry_parts_to_meta, from_meta

#: the name of the remote cpv configures in ``.dvc/config``
REMOTE_NAME = "cpv"
#: the pointer's ``meta`` key naming a file's chunk manifest (the tensor layout)
CHUNKS_META_KEY = "cpv_chunks"
#: the pointer's ``meta`` key naming a whole safetensors file's tensor index
INDEX_META_KEY = "cpv_index"
#: a directory pointer's ``meta`` key: ``{entry md5: its chunk manifest}`` (the tensor layout)
ENTRY_CHUNKS_META_KEY = "cpv_entry_chunks"
#: where DVC 3 keeps content-addressed objects, in a cache and on a remote alike
OBJECTS_DIR = "files/md5"
#: what ``dvc init`` writes to ``.dvc/.gitignore`` and ``.dvcignore``
DVC_DIR_GITIGNORE = "/config.local\n/tmp\n/cache\n"
DVCIGNORE_HEADER = (
    "# Add patterns of files dvc should ignore, which could improve\n"
    "# the performance. Learn more at\n"
    "# https://dvc.org/doc/user-guide/dvcignore\n"
)
_RESTORE = "restore it from a version you trust (git checkout)"


def object_relpath(oid: str) -> str:
    """``files/md5/ab/cdef…`` (``….dir`` for a manifest): an object's path below a cache
    or remote root, as DVC 3 lays it out. ``oid`` is checked to be an object id first."""
    oid = check_oid(oid, "object id")
    return f"{OBJECTS_DIR}/{oid[:2]}/{oid[2:]}"


def oid_from_relpath(relpath: str) -> str | None:
    """Inverse of :func:`object_relpath`; None for anything that is not an object's path."""
    parts = relpath.split("/")
    if len(parts) != 4 or "/".join(parts[:2]) != OBJECTS_DIR or len(parts[2]) != 2:
        return None
    try:
        return check_oid(parts[2] + parts[3], "object path")
    except ValidationError:
        return None


# --------------------------------------------------------------------------
# pointer files
# --------------------------------------------------------------------------


def pointer_path(path: str) -> str:
    """The pointer file of a tracked path (``model.bin`` -> ``model.bin.dvc``)."""
    return f"{path}.dvc"


def parse_pointer(content: bytes | str, where: str = "pointer file") -> dict[str, Any] | None:
    """The first ``outs`` entry of a ``.dvc`` file, or None when it has none.

    Parsed with ruamel.yaml (what DVC itself uses) rather than through DVC, so
    reading a version's hash and size costs ~20 ms instead of importing DVC.
    The file comes from the repository, so its shape is checked: anything
    that is not a mapping with a list of mappings under ``outs`` is a
    :class:`ValidationError` naming ``where``, never a traceback.
    """
    from ruamel.yaml import YAML

    raw = content.encode() if isinstance(content, str) else content
    if len(raw) > MAX_POINTER_BYTES:
        raise ValidationError(f"{where} is {len(raw)} bytes, more than a pointer file can be ({MAX_POINTER_BYTES})", fix=_RESTORE)
    try:
        data = YAML(typ="safe", pure=True).load(raw.decode("utf-8")) or {}
    except Exception as exc:  # noqa: BLE001 - YAMLError, RecursionError, UnicodeDecodeError ...
        raise ValidationError(f"{where} is not a readable pointer file ({type(exc).__name__})", fix=_RESTORE) from None
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not a mapping", fix=_RESTORE)
    outs = data.get("outs")
    if outs is None:
        return None
    if not isinstance(outs, list) or not outs or not isinstance(outs[0], dict):
        raise ValidationError(f"{where}: 'outs' is not a list of outputs", fix=_RESTORE)
    return dict(outs[0])


def _count(out: dict[str, Any], key: str, default: int, where: str) -> int:
    value = out.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValidationError(f"{where}: {key} {visible(repr(value))} is not a whole number of bytes/files", fix=_RESTORE)
    return value


def artifact_from_out(path: str, out: dict[str, Any], where: str = "pointer file") -> TrackedArtifact:
    """A :class:`TrackedArtifact` from a ``.dvc`` ``outs`` entry (hash, size and count checked)."""
    md5 = check_oid(out.get("md5"), where)
    return TrackedArtifact(
        path=path,
        digest=f"md5:{md5}",
        size=_count(out, "size", 0, where),
        nfiles=max(1, _count(out, "nfiles", 1, where)),
        pointer=pointer_path(path),
    )


def pointer_part_digests(out: dict[str, Any], size: int) -> PartDigests | None:
    """The part digests a pointer's output records for its ``size`` bytes, if any are
    well-formed (:func:`cpv_plugins.dvc.part_digests.from_meta`)."""
    meta = out.get("meta")
    return from_meta(meta.get(META_KEY), size) if isinstance(meta, dict) else None


def pointer_entry_parts(out: dict[str, Any]) -> dict[str, PartDigests]:
    """``{entry md5: part digests}`` a directory pointer's output records (well-formed ones only)."""
    meta = out.get("meta")
    return entry_parts_from_meta(meta.get(ENTRY_META_KEY)) if isinstance(meta, dict) else {}


def pointer_chunk_manifest(out: dict[str, Any], where: str, key: str = CHUNKS_META_KEY) -> str | None:
    """The object id of the chunk manifest a file's pointer names (the tensor layout), or
    None for a file stored whole. A value that is not an object id is refused: the file's
    bytes are not stored whole, so there is nothing else to fall back on. ``key`` =
    :data:`INDEX_META_KEY`: the tensor index of a file stored whole."""
    meta = out.get("meta")
    if not isinstance(meta, dict) or key not in meta:
        return None
    return check_oid(meta[key], f"{where} meta.{key}", allow_dir=False)


def pointer_entry_chunks(out: dict[str, Any], where: str) -> dict[str, str]:
    """``{entry md5: chunk manifest id}`` of a directory pointer in the tensor layout. Its
    files are not stored whole, so a malformed map is refused, not ignored."""
    meta = out.get("meta")
    value = meta.get(ENTRY_CHUNKS_META_KEY) if isinstance(meta, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(
            f"{where} meta.{ENTRY_CHUNKS_META_KEY} is {visible(repr(value))[:60]}, not a mapping of MD5s to chunk manifests",
            fix=f"{_RESTORE} and upload again",
        )
    return {
        check_oid(md5, f"{where} meta.{ENTRY_CHUNKS_META_KEY}", allow_dir=False): check_oid(
            moid, f"{where} meta.{ENTRY_CHUNKS_META_KEY}", allow_dir=False
        )
        for md5, moid in value.items()
    }


def read_pointer(workspace: Path, path: str) -> TrackedArtifact:
    """The artifact the workspace's pointer file of ``path`` records."""
    pointer = workspace / pointer_path(path)
    with open_regular(pointer) as handle:
        raw = handle.read(MAX_POINTER_BYTES + 1)
    out = parse_pointer(raw, pointer_path(path))
    if out is None:
        raise DVCError(f"pointer file {pointer} has no outputs", fix=f"re-run the upload of {path}")
    return artifact_from_out(path, out, pointer_path(path))


def write_pointer(
    workspace: Path,
    path: str,
    oid: str,
    size: int,
    nfiles: int | None,
    parts: PartDigests | None = None,
    entry_parts: dict[str, PartDigests] | None = None,
    chunks: str | None = None,
    index: str | None = None,
    entry_chunks: dict[str, str] | None = None,
) -> None:
    """``{path}.dvc`` as DVC 3 writes it (``nfiles`` for a directory); other keys of
    an existing pointer (a ``desc``, a ``remote``) are kept. ``parts`` (a file's) and
    ``entry_parts`` (a directory's large entries', by MD5) go under the output's
    ``meta`` (which DVC keeps and ignores), as does ``chunks``, the object id of a file's
    chunk manifest in the tensor layout (:mod:`cpv_plugins.dvc.chunking`), and ``index``, that
    of a whole safetensors file's tensor index (its chunks' SHA-256s, read from the whole
    object); ``entry_chunks``, a directory's chunked files' manifests by MD5; older lists are
    always replaced or removed, so no pointer names one object with another's parts."""
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: keeps comments and keys DVC or the user added
    pointer = workspace / pointer_path(path)
    try:
        data = yaml.load(pointer.read_text()) if pointer.is_file() and not pointer.is_symlink() else None
    except Exception:  # noqa: BLE001 - an unreadable old pointer is simply replaced
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("outs"), list) or not data["outs"] or not isinstance(data["outs"][0], dict):
        data = {"outs": [{}]}
    out = data["outs"][0]
    for key in ("md5", "size", "nfiles", "hash", "path"):
        out.pop(key, None)
    out.update({"md5": oid, "size": size})
    if nfiles is not None:
        out["nfiles"] = nfiles
    out.update({"hash": "md5", "path": PurePosixPath(path).name})
    meta = out.get("meta")
    if isinstance(meta, dict):
        meta.pop(META_KEY, None)
        meta.pop(ENTRY_META_KEY, None)
        meta.pop(CHUNKS_META_KEY, None)
        meta.pop(INDEX_META_KEY, None)
        meta.pop(ENTRY_CHUNKS_META_KEY, None)
        if not meta:
            del out["meta"]
    recorded: dict[str, Any] = {META_KEY: parts.to_meta()} if parts is not None else {}
    if entry_parts:
        recorded[ENTRY_META_KEY] = entry_parts_to_meta(entry_parts)
    if chunks is not None:
        recorded[CHUNKS_META_KEY] = chunks
    if index is not None:
        recorded[INDEX_META_KEY] = index
    if entry_chunks:
        recorded[ENTRY_CHUNKS_META_KEY] = dict(sorted(entry_chunks.items()))
    if recorded:
        if not isinstance(out.get("meta"), dict):
            out["meta"] = {}
        out["meta"].update(recorded)
    with atomic_path(pointer, mode=0o644) as tmp, open(tmp, "w") as handle:
        yaml.dump(data, handle)


def ignore_in_git(workspace: Path, path: str) -> str:
    """Keep tracked content out of git as ``dvc add`` does (``/name`` in the sibling
    ``.gitignore``); returns that ``.gitignore``'s path relative to the workspace."""
    rel = PurePosixPath(path).parent / ".gitignore"
    gitignore = workspace / rel
    entry = f"/{PurePosixPath(path).name}"
    lines = gitignore.read_text().splitlines() if gitignore.is_file() else []
    if entry not in lines:
        atomic_write_bytes(gitignore, ("\n".join([*lines, entry]) + "\n").encode(), mode=0o644)
    return str(rel)


# --------------------------------------------------------------------------
# directory manifests
# --------------------------------------------------------------------------


def parse_manifest(raw: bytes, where: str) -> dict[str, str]:
    """A ``.dir`` manifest as ``{relpath: md5}``, every entry checked.

    Each relpath must be a normalised relative path (no ``..``, no absolute
    path, no NUL); each md5 an object id; no path may appear twice or be both
    a file and a directory of another entry.
    """
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ValidationError(f"{where} is larger than {MAX_MANIFEST_BYTES} bytes", fix="re-upload that version")
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} is not a JSON manifest ({type(exc).__name__})", fix="re-upload that version") from None
    if not isinstance(entries, list):
        raise ValidationError(f"{where} is not a list of files", fix="re-upload that version")
    files = _checked_fast(entries)
    if files is None:  # something unusual: every entry checked one by one, for the precise message
        files = {}
        for entry in entries:
            if not isinstance(entry, dict):
                raise ValidationError(f"{where}: an entry is not an object", fix="re-upload that version")
            rel = check_relpath(entry.get("relpath"), where, "manifest entry")
            if rel in files:
                raise ValidationError(f"{where}: {visible(rel)!s} is listed twice", fix="re-upload that version")
            files[rel] = check_oid(entry.get("md5"), f"{where} ({visible(rel)})", allow_dir=False)
    clash = _file_and_directory(files)
    if clash is not None:
        raise ValidationError(f"{where}: {visible(clash)} is both a file and a directory", fix="re-upload that version")
    return files


#: a list of relpaths of printable ASCII without backslashes or empty components, one per line
_PLAIN_RELPATHS = re.compile(r"(?:[\x20-\x2e\x30-\x5b\x5d-\x7e]+(?:/[\x20-\x2e\x30-\x5b\x5d-\x7e]+)*\n)*")
_DOT_COMPONENT = re.compile(r"(?:^|/)\.\.?(?:/|$)", re.MULTILINE)
_MD5_LINES = re.compile(r"(?:[0-9a-f]{32}\n)*")


def _checked_fast(entries: list[object]) -> dict[str, str] | None:
    """The manifest's ``{relpath: md5}`` when every entry is plainly valid (checked with a
    few regular expressions over all entries at once: 200 000 entries in ~0.1 s instead of
    ~2 s one by one); None when any entry needs the detailed check."""
    if not all(type(entry) is dict for entry in entries):
        return None
    dicts = cast("list[dict[str, object]]", entries)
    rels = [entry.get("relpath") for entry in dicts]
    md5s = [entry.get("md5") for entry in dicts]
    if not all(type(rel) is str for rel in rels) or not all(type(md5) is str for md5 in md5s):
        return None
    texts = cast("tuple[list[str], list[str]]", (rels, md5s))
    joined = "".join(rel + "\n" for rel in texts[0])
    # one line per entry: a value holding a newline would pass as two plain lines
    if joined.count("\n") != len(rels) or not _PLAIN_RELPATHS.fullmatch(joined) or _DOT_COMPONENT.search(joined):
        return None
    joined_md5s = "".join(md5 + "\n" for md5 in texts[1])
    if joined_md5s.count("\n") != len(md5s) or not _MD5_LINES.fullmatch(joined_md5s):
        return None
    files = dict(zip(*texts, strict=True))
    return files if len(files) == len(rels) else None


def manifest_md5s(raw: bytes, where: str) -> set[str]:
    """The object ids a ``.dir`` manifest names, each checked (its relpaths are not: what
    only vouches for stored objects never becomes a path). Quicker than :func:`parse_manifest`."""
    try:
        entries = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"{where} is not a JSON manifest ({type(exc).__name__})", fix="re-upload that version") from None
    if not isinstance(entries, list) or not all(type(entry) is dict for entry in entries):
        raise ValidationError(f"{where} is not a list of files", fix="re-upload that version")
    md5s = [entry.get("md5") for entry in cast("list[dict[str, object]]", entries)]
    if not all(type(md5) is str for md5 in md5s) or not _MD5_LINES.fullmatch("".join(f"{md5}\n" for md5 in md5s)):
        raise ValidationError(f"{where}: an entry's md5 is not a content hash", fix="re-upload that version")
    return cast("set[str]", set(md5s))


def _file_and_directory(files: Mapping[str, str]) -> str | None:
    """The first relpath (sorted) that is both a file and a parent directory of another, if any."""
    dirs: set[str] = set()
    for rel in files:
        parent = rel
        while (cut := parent.rfind("/")) != -1:
            parent = parent[:cut]
            if parent in dirs:
                break
            dirs.add(parent)
    clash = sorted(dirs.intersection(files))
    return clash[0] if clash else None


def manifest_bytes(files: Mapping[str, str]) -> tuple[bytes, str]:
    """The ``.dir`` manifest of ``{relpath: md5}`` and its object id, byte for byte as
    DVC writes it (dvc-data's ``Tree.as_bytes``), so DVC computes the same hash."""
    # what json.dumps(entries, sort_keys=True) writes, built without a dict per entry
    quote = encode_basestring_ascii
    text = "[" + ", ".join(f'{{"md5": {quote(files[rel])}, "relpath": {quote(rel)}}}' for rel in sorted(files)) + "]"
    raw = text.encode("ascii")
    return raw, hashlib.md5(raw).hexdigest() + ".dir"


# --------------------------------------------------------------------------
# the .dvc directory
# --------------------------------------------------------------------------

Sections = dict[str, dict[str, str]]


def read_dvc_config(path: Path, where: str, *, missing_ok: bool = False) -> Sections:
    """A DVC config file as ``{section: {key: value}}`` (quotes around section names dropped)."""
    if path.is_symlink():
        raise DVCError(f"{where} is a symbolic link", fix="replace it with the file cpv wrote (git checkout)")
    if missing_ok and not path.exists():
        return {}
    parser = configparser.RawConfigParser()
    try:
        with open_regular(path) as handle:
            parser.read_string(handle.read(MAX_POINTER_BYTES).decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError, ValidationError) as exc:
        raise DVCError(
            f"{where} is not a readable DVC config ({type(exc).__name__})", fix="undo the change that broke it (git checkout .dvc/config)"
        ) from None
    return {_unquote(name): dict(parser.items(name)) for name in parser.sections()}


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) > 1 and name[0] == name[-1] == "'" else name


def write_dvc_config(path: Path, sections: Sections, *, mode: int = 0o600) -> None:
    """Write a DVC config file in DVC's own format, atomically."""
    lines = []
    for name, keys in sections.items():
        lines.append(f"['{name}']" if " " in name else f"[{name}]")
        lines.extend(f"    {key} = {value}" for key, value in keys.items())
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode(), mode=mode)


def init_dvc_dir(workspace: Path) -> None:
    """What ``dvc init`` creates, written directly: ``.dvc/`` with its ``.gitignore``,
    an empty ``config``, and a ``.dvcignore`` with DVC's comment header. Existing
    files are left alone (a clone's are checked by the storage backend)."""
    dvc_dir = workspace / ".dvc"
    dvc_dir.mkdir(exist_ok=True)
    for path, content in (
        (dvc_dir / ".gitignore", DVC_DIR_GITIGNORE),
        (dvc_dir / "config", ""),
        (workspace / ".dvcignore", DVCIGNORE_HEADER),
    ):
        if not path.exists() and not path.is_symlink():
            atomic_write_bytes(path, content.encode(), mode=0o644)


def tracked_root(path: str, pointer: bytes) -> str:
    """The tracked path within ``path`` (which may be a sub-path of it, ``data/test``):
    the shortest leading part of ``path`` whose last name is the pointer's own ``path``
    (a pointer names its output relative to its directory: ``best`` in
    ``checkpoints/best.dvc``); the first component when the pointer names none."""
    out = parse_pointer(pointer) or {}
    name = out.get("path")
    parts = PurePosixPath(path).parts
    for end in range(1, len(parts) + 1):
        if parts[end - 1] == name:
            return "/".join(parts[:end])
    return parts[0]

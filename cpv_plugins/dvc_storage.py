"""What the DVC-based storage backends (``local``, ``dvc-s3``) share.

DVC is used through its Python API (``dvc.repo.Repo``), imported on first use.
Committed configuration (``.dvc/config``) holds only the remote's name and,
where it is the same for every team member, its URL; everything
machine-specific or credential-related goes to ``.dvc/config.local``, which
git ignores.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from cpv_core.backends import BackendContext, TrackedArtifact, TransferStats
from cpv_core.errors import DVCError, ValidationError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_path, atomic_write_bytes, md5_stream, preserved, state_name, tree_size
from cpv_core.progress import Progress
from cpv_core.trust import (
    MAX_MANIFEST_BYTES,
    MAX_POINTER_BYTES,
    check_oid,
    check_relpath,
    contained,
    open_regular,
    require_inside,
    select_sub_path,
    visible,
)

logger = logging.getLogger("cpv.storage")

REMOTE_NAME = "cpv"
_DVC_TMP_RE = re.compile(r"\.[A-Za-z0-9_-]{22}\.tmp")


#: where DVC 3 keeps content-addressed objects, in a cache and on a remote alike
OBJECTS_DIR = "files/md5"


def object_relpath(oid: str) -> str:
    """``files/md5/ab/cdef…`` (``….dir`` for a manifest): an object's path below a cache
    or remote root, as DVC 3 lays it out. ``oid`` is checked to be an object id first."""
    oid = check_oid(oid, "object id")
    return f"{OBJECTS_DIR}/{oid[:2]}/{oid[2:]}"


def copy_hashing(src: Path, out: Path | None, on_bytes: Callable[[int], Any] | None = None) -> str:
    """MD5 of ``src`` (a regular file, never a FIFO or link), copying it to ``out`` as it is read."""
    with open_regular(src) as reader:
        if out is None:
            return md5_stream(reader, None, on_bytes)
        with open(out, "wb") as writer:
            return md5_stream(reader, writer, on_bytes)


def _quiet_dvc() -> None:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    import dvc.repo  # noqa: F401 - DVC configures its logger on import

    # DVC logs hints meant for its own CLI ("To track the changes with git...").
    logging.getLogger("dvc").setLevel(logging.WARNING)


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
        raise ValidationError(
            f"{where} is {len(raw)} bytes, more than a pointer file can be ({MAX_POINTER_BYTES})",
            fix="restore it from a version you trust (git checkout)",
        )
    try:
        data = YAML(typ="safe", pure=True).load(raw.decode("utf-8")) or {}
    except Exception as exc:  # noqa: BLE001 - YAMLError, RecursionError, UnicodeDecodeError ...
        raise ValidationError(
            f"{where} is not a readable pointer file ({type(exc).__name__})", fix="restore it from a version you trust (git checkout)"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"{where} is not a mapping", fix="restore it from a version you trust (git checkout)")
    outs = data.get("outs")
    if outs is None:
        return None
    if not isinstance(outs, list) or not outs or not isinstance(outs[0], dict):
        raise ValidationError(f"{where}: 'outs' is not a list of outputs", fix="restore it from a version you trust (git checkout)")
    return dict(outs[0])


def _count(out: dict[str, Any], key: str, default: int, where: str) -> int:
    value = out.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValidationError(
            f"{where}: {key} {visible(repr(value))} is not a whole number of bytes/files",
            fix="restore it from a version you trust (git checkout)",
        )
    return value


def artifact_from_out(path: str, out: dict[str, Any], where: str = "pointer file") -> TrackedArtifact:
    """A :class:`TrackedArtifact` from a ``.dvc`` ``outs`` entry (hash, size and count checked)."""
    md5 = check_oid(out.get("md5"), where)
    return TrackedArtifact(
        path=path,
        digest=f"md5:{md5}",
        size=_count(out, "size", 0, where),
        nfiles=max(1, _count(out, "nfiles", 1, where)),
        pointer=f"{path}.dvc",
    )


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
    files: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValidationError(f"{where}: an entry is not an object", fix="re-upload that version")
        rel = check_relpath(entry.get("relpath"), where, "manifest entry")
        if rel in files:
            raise ValidationError(f"{where}: {visible(rel)!s} is listed twice", fix="re-upload that version")
        files[rel] = check_oid(entry.get("md5"), f"{where} ({visible(rel)})", allow_dir=False)
    dirs = {str(parent) for rel in files for parent in PurePosixPath(rel).parents if str(parent) != "."}
    clash = sorted(dirs & set(files))
    if clash:
        raise ValidationError(f"{where}: {visible(clash[0])} is both a file and a directory", fix="re-upload that version")
    return files


@contextmanager
def staged(dest: Path, staging_root: Path | None = None) -> Iterator[Path]:
    """Yield a path in a staging directory (beside ``dest``, or under
    ``staging_root`` on the same file system); on success it replaces
    ``dest`` by renames only, on failure nothing is left at ``dest``.
    Staging directories of a killed earlier run are removed first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    root = staging_root or dest.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{dest.name}.*.cpv-tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".cpv-tmp", dir=root))
    try:
        target = staging / dest.name
        yield target
        if dest.is_dir() and not dest.is_symlink():
            os.replace(dest, staging / ".replaced")  # out of the way by a rename; removed with the staging directory
        os.replace(target, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_dvc_config(path: Path, where: str, *, missing_ok: bool = False) -> dict[str, dict[str, str]]:
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


def write_dvc_config(path: Path, sections: dict[str, dict[str, str]], *, mode: int = 0o600) -> None:
    """Write a DVC config file in DVC's own format, atomically."""
    lines = []
    for name, keys in sections.items():
        lines.append(f"['{name}']" if " " in name else f"[{name}]")
        lines.extend(f"    {key} = {value}" for key, value in keys.items())
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode(), mode=mode)


class DvcStorage:
    """Storage through DVC; subclasses say where the remote is."""

    name = "dvc"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.path = Path(ctx.workspace)

    # -- what subclasses provide ---------------------------------------------
    def remote_url(self) -> str:
        """The DVC remote URL for this team/model."""
        raise NotImplementedError

    def url_is_shared(self) -> bool:
        """Whether the URL is the same for every team member (then it is committed)."""
        return True

    def local_remote_options(self) -> dict[str, str]:
        """Machine-local remote options (endpoint, profile, credential path)."""
        return {}

    def map_error(self, action: str, exc: Exception) -> Exception:
        """Turn a DVC exception into a cpv error; subclasses refine it."""
        return DVCError(f"DVC could not {action}: {exc}", fix=f"check the remote {self.describe_remote()} and `cpv validate`")

    # -- helpers ---------------------------------------------------------------
    @contextmanager
    def _repo(self) -> Iterator[Any]:
        self.check_settings()
        _quiet_dvc()
        from dvc.repo import Repo

        repo = Repo(str(self.path))
        try:
            yield repo
        finally:
            repo.close()

    def _abs(self, paths: Sequence[str]) -> list[str]:
        return [str(self.path / p) for p in paths]

    # -- StorageBackend ------------------------------------------------------------
    def describe_remote(self) -> str:
        return self.remote_url()

    def committed_files(self) -> list[str]:
        return [".dvc/config", ".dvc/.gitignore", ".dvcignore"]

    def init(self) -> None:
        _quiet_dvc()
        from dvc.repo import Repo

        if not (self.path / ".dvc").is_dir():
            Repo.init(str(self.path), subdir=False).close()
        # cpv writes both files itself from its own configuration (what
        # check_settings later insists on): the shared part is committed,
        # the machine-specific part (endpoint, profile, a local path) is not
        committed, local = self.expected_settings()
        config = self.path / ".dvc" / "config"
        if not read_dvc_config(config, ".dvc/config", missing_ok=True):  # new, or DVC's empty file; a clone's is checked below
            write_dvc_config(config, committed, mode=0o644)
        (self.path / ".dvc" / "config.local").unlink(missing_ok=True)
        if local:
            write_dvc_config(self.path / ".dvc" / "config.local", local)
        self.check_settings()

    # -- the repository does not choose the storage settings ---------------------
    def expected_settings(self) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        """The committed and the machine-local DVC settings cpv derives from its own configuration."""
        section = f'remote "{REMOTE_NAME}"'
        committed: dict[str, dict[str, str]] = {"core": {"remote": REMOTE_NAME}}
        local = {k.lower(): str(v) for k, v in self.local_remote_options().items()}
        if self.url_is_shared():
            committed[section] = {"url": self.remote_url()}
        else:
            local["url"] = self.remote_url()
        return committed, ({section: local} if local else {})

    def check_settings(self) -> None:
        """Refuse storage settings that came from the repository instead of cpv.

        ``.dvc/config`` arrives with every clone and rebase; a teammate's
        ``cache.dir``, ``cache.type = symlink`` or another remote URL there
        would move this machine's cache or redirect its uploads. Only what
        cpv itself derives is accepted; ``.dvc/config.local`` (this machine's
        own file) is rewritten when it differs; a ``.dvcignore`` with
        patterns, which would silently drop files from versions, is refused.
        """
        dvc_dir = self.path / ".dvc"
        for private in (dvc_dir, dvc_dir / "cache", dvc_dir / "tmp"):
            if private.is_symlink():  # a committed link would send cache writes anywhere on this machine
                raise DVCError(
                    f"{private.relative_to(self.path)} is a symbolic link (committed by someone?); cpv never writes through one",
                    fix=f"remove the link ({private}) and undo the commit that added it, then run the command again",
                )
        committed_path = dvc_dir / "config"
        if not committed_path.exists() and not committed_path.is_symlink():
            return
        fix = (
            "cpv derives storage settings from its own configuration (`cpv config show`): "
            "undo the commit that changed it (git revert) and push"
        )
        committed, local = self.expected_settings()
        actual = read_dvc_config(committed_path, "the committed .dvc/config")
        if actual != committed:
            extra = sorted(f"{sec}.{key}" for sec, keys in actual.items() for key in keys if committed.get(sec, {}).get(key) != keys[key])
            missing = sorted(f"{sec}.{key}" for sec, keys in committed.items() for key in keys if key not in actual.get(sec, {}))
            raise DVCError(
                f"the committed .dvc/config sets {visible(', '.join(extra or missing))} differently from "
                f"what cpv configured ({self.describe_remote()}); refusing to use it",
                fix=fix,
            )
        ignore = self.path / ".dvcignore"
        if ignore.is_symlink() or (
            ignore.exists()
            and any(
                line.strip() and not line.lstrip().startswith("#")
                for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines()
            )
        ):
            raise DVCError(
                "the committed .dvcignore has patterns: DVC would leave matching files out of every version",
                fix="remove the patterns (cpv stores every file of a directory) or undo that commit, and push",
            )
        local_path = dvc_dir / "config.local"
        if local_path.is_symlink() or read_dvc_config(local_path, ".dvc/config.local", missing_ok=True) != local:
            local_path.unlink(missing_ok=True)
            if local:
                write_dvc_config(local_path, local)

    def pointer_path(self, path: str) -> str:
        return f"{path}.dvc"

    def commit_paths(self, paths: Sequence[str]) -> list[str]:
        files = []
        for p in paths:
            files.append(self.pointer_path(p))
            ignore = Path(p).parent / ".gitignore"
            if (self.path / ignore).exists():
                files.append(str(ignore))
        return sorted(set(files))

    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        self.check_settings()
        files = [p for p in paths if (self.path / p).is_file() and not (self.path / p).is_symlink()]
        dirs = [p for p in paths if p not in files]
        for p in files:
            self._track_file(p)
        if dirs:
            self._track_with_dvc(dirs)
        artifacts = [self._read_pointer(p) for p in paths]
        self._remember_stats(artifacts)
        return artifacts

    def _track_file(self, path: str) -> None:
        """Hash a file while copying it into the cache, in one read; write its pointer.

        The same cache object, pointer and .gitignore entry as ``dvc add``, but
        the file is read once (``dvc add`` hashes it, moves it into the cache
        and copies it back) and the user's file is never moved, so an
        interruption cannot lose it. DVC is not even imported.
        """
        src = self.path / path
        size = src.stat().st_size
        objects = self._cache_dir() / OBJECTS_DIR
        objects.mkdir(parents=True, exist_ok=True)
        for leftover in objects.glob(".cpv-*.tmp"):  # a killed run's; the workspace lock is held
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()
        fd, tmp_name = tempfile.mkstemp(prefix=".cpv-", suffix=".tmp", dir=objects)
        tmp = Path(tmp_name)
        try:
            with (
                open(src, "rb") as reader,
                os.fdopen(fd, "wb") as writer,
                Progress(f"hash and cache {path}", size, self.ctx.progress) as progress,
            ):
                oid = md5_stream(reader, writer, progress.update)
            final = objects / oid[:2] / oid[2:]
            final.parent.mkdir(parents=True, exist_ok=True)
            # always the fresh copy, even when the object exists: an existing
            # (possibly damaged) cache object is never trusted for an upload
            os.chmod(tmp, 0o444)  # cache objects are read-only, as DVC keeps them
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._write_pointer(path, oid, size)
        self._ignore(path)

    def _write_pointer(self, path: str, md5: str, size: int) -> None:
        """``{path}.dvc`` as DVC 3 writes it; other keys of an existing pointer are kept."""
        from ruamel.yaml import YAML

        yaml = YAML()  # round-trip: keeps comments and keys DVC or the user added
        pointer = self.path / self.pointer_path(path)
        data = yaml.load(pointer.read_text()) if pointer.exists() else None
        if not data or not data.get("outs"):
            data = {"outs": [{}]}
        out = data["outs"][0]
        for key in ("md5", "size", "hash", "path", "nfiles"):
            out.pop(key, None)
        out.update({"md5": md5, "size": size, "hash": "md5", "path": Path(path).name})
        with atomic_path(pointer) as tmp:
            with open(tmp, "w") as handle:
                yaml.dump(data, handle)

    def _ignore(self, path: str) -> None:
        """Keep the content out of git, as ``dvc add`` does (``/name`` in the sibling .gitignore)."""
        gitignore = (self.path / path).parent / ".gitignore"
        entry = f"/{Path(path).name}"
        lines = gitignore.read_text().splitlines() if gitignore.exists() else []
        if entry not in lines:
            gitignore.write_text("\n".join([*lines, entry]) + "\n")

    def _track_with_dvc(self, paths: Sequence[str]) -> None:
        """Directories go through ``dvc add`` (it writes the .dir manifest)."""
        for p in paths:  # partial copies a killed DVC left beside the target
            for stale in (self.path / p).parent.iterdir():
                if _DVC_TMP_RE.fullmatch(stale.name) and stale.is_file():
                    stale.unlink()
        with self._repo() as repo, ExitStack() as stack:
            # DVC moves files into its cache and copies them back: keep a
            # hard-link backup so an interruption never loses the user's file
            for p in paths:
                if self.ctx.state_dir is not None:
                    keep = self.ctx.state_dir / "keep" / state_name(p)
                    stack.enter_context(preserved(self.path / p, keep, self.path))
            total = sum(tree_size(self.path / p)[0] for p in paths)
            try:
                with Progress(f"hash and cache {', '.join(paths)}", total, self.ctx.progress) as progress:
                    # relink=False: DVC copies new objects into its cache and leaves the
                    # workspace files alone (relinking rewrote all 2000 files of a
                    # directory in which one had changed: 1.6 s of 2.2)
                    repo.add(self._abs(paths), relink=False)
                    progress.update(total)  # DVC reports no byte progress: the bar completes at the end
            except Exception as exc:  # noqa: BLE001 - DVC raises many types
                raise DVCError(f"DVC could not track {', '.join(paths)}: {exc}", fix="check the files exist and are readable") from None

    def _cache_dir(self) -> Path:
        """DVC's cache directory: always ``.dvc/cache`` of this workspace.

        A ``cache.dir`` from the committed ``.dvc/config`` is refused by
        :meth:`check_settings`; cpv never lets the repository move the cache.
        """
        return self.path / ".dvc" / "cache"

    def _cached(self, oid: str) -> Path:
        """The cache file of object ``oid`` (DVC 3 layout); ``oid`` is checked first."""
        return self._cache_dir() / object_relpath(oid)

    # -- a stat cache, so that status() of an unchanged file needs no DVC import --
    # (the same heuristic as git's index and DVC's state database: a file whose
    # size, mtime and inode are what they were when it was hashed is unchanged)

    def _stat_file(self) -> Path:
        return self.path / ".dvc" / "tmp" / "cpv-stat.json"

    @staticmethod
    def _stat_key(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def _remember_stats(self, artifacts: Sequence[TrackedArtifact]) -> None:
        import json

        known = self._known_stats()
        for art in artifacts:
            target = self.path / art.path
            if target.is_file():
                known[art.path] = {"digest": art.digest, "stat": self._stat_key(target)}
        self._stat_file().parent.mkdir(parents=True, exist_ok=True)
        self._stat_file().write_text(json.dumps(known))

    def _known_stats(self) -> dict[str, Any]:
        import json

        try:
            return dict(json.loads(self._stat_file().read_text()))
        except (OSError, ValueError):
            return {}

    def _unchanged_by_stat(self, path: str) -> bool:
        record = self._known_stats().get(path)
        target = self.path / path
        if not record or not target.is_file():
            return False
        try:
            pointer = self._read_pointer(path)
        except (OSError, DVCError):
            return False
        return bool(record["digest"] == pointer.digest and record["stat"] == self._stat_key(target))

    def _read_pointer(self, path: str) -> TrackedArtifact:
        pointer = self.path / f"{path}.dvc"
        out = parse_pointer(pointer.read_bytes())
        if out is None:
            raise DVCError(f"pointer file {pointer} has no outputs", fix=f"re-run the upload of {path}")
        return artifact_from_out(path, out)

    def objects(self, path: str) -> list[str]:
        """Object ids of a tracked path: the file, or the .dir manifest and its files."""
        info = self._read_pointer(path)
        oid = info.digest.removeprefix("md5:")
        if not oid.endswith(".dir"):
            return [oid]
        return [oid, *sorted(set(self.load_manifest(oid, path).values()))]

    def remote_size(self, oid: str) -> int | None:
        """Size of the remote's copy of ``oid``, or None when it has none."""
        raise NotImplementedError

    def remote_put(self, oid: str, src: Path, on_bytes: Callable[[int], Any]) -> None:
        """Store cache object ``src`` as ``oid`` on the remote, checking its md5 on the way."""
        raise NotImplementedError

    def push(self, paths: Sequence[str]) -> TransferStats:
        """Upload every object of ``paths`` the remote lacks (manifests last), then confirm
        that every object is there: no pointer is committed for bytes that are not stored."""
        self.check_settings()
        oids = list(dict.fromkeys(oid for p in paths for oid in self.objects(p)))
        missing = [oid for oid in oids if self.remote_size(oid) != self._cached(oid).stat().st_size]
        total = sum(self._cached(oid).stat().st_size for oid in missing)
        with Progress(f"upload {', '.join(paths)}", total, self.ctx.progress) as progress:
            for oid in sorted(missing, key=lambda o: o.endswith(".dir")):  # a manifest on the remote means its files are there
                self.remote_put(oid, self._cached(oid), progress.update)
        self.confirm_stored(oids)
        return TransferStats(transferred=len(missing), skipped=len(oids) - len(missing))

    def confirm_stored(self, oids: Sequence[str]) -> None:
        """Raise unless the remote holds every object at its cached size."""
        absent = [oid for oid in oids if self.remote_size(oid) != self._cached(oid).stat().st_size]
        if absent:
            raise DVCError(
                f"{len(absent)} object(s) are not on {self.describe_remote()} after the upload (first: {absent[0]}); nothing was committed",
                fix="run the upload again; if it fails again, run `cpv verify --remote` and check the store",
            )

    def copy_verified(self, oid: str, src: Path, out: Path, on_bytes: Callable[[int], Any]) -> None:
        """Copy cache object ``src`` to ``out`` checking that its md5 is ``oid`` (a damaged
        cache object is evicted and reported, never stored)."""
        actual = copy_hashing(src, out, on_bytes)
        if actual != oid.removesuffix(".dir"):
            out.unlink(missing_ok=True)
            self._evict(oid)
            raise DVCError(
                f"the cached copy of {oid} is damaged (md5 {actual}); it was not uploaded",
                fix="upload again: cpv re-reads your file into the cache",
            )

    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        where = self.pointer_path(path)
        out = parse_pointer(pointer, where)
        return artifact_from_out(path, out, where) if out else None

    # -- reading objects: the cache first, then the remote ----------------------------
    # Subclasses say how the remote is reached: ``remote_read`` (small
    # objects: manifests), ``remote_fetch`` (into a file, returning its md5)
    # and ``remote_md5`` (None when the object is missing).

    def remote_read(self, oid: str) -> bytes:
        """The bytes of a small object (a manifest) on the remote."""
        raise NotImplementedError

    def remote_fetch(self, oid: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool) -> str:
        """Write object ``oid`` from the remote to ``out``; return the md5 of what was written."""
        raise NotImplementedError

    def remote_md5(self, oid: str) -> str | None:
        """The md5 of the remote's copy of ``oid``, or None when it has none."""
        raise NotImplementedError

    def _cached_copy_md5(self, oid: str, out: Path | None, on_bytes: Callable[[int], Any] | None = None) -> str | None:
        """Hash the cache object (copying it to ``out`` when given); None when it is not cached."""
        cached = self._cached(oid)
        if not cached.exists() and not cached.is_symlink():
            return None
        return copy_hashing(cached, out, on_bytes)

    def _evict(self, oid: str) -> None:
        """Drop a corrupt object from the local cache so the next try fetches it again."""
        path = require_inside(self._cache_dir(), self._cached(oid), "cache eviction")
        if path.is_symlink() or path.is_file():
            path.unlink()

    def load_manifest(self, oid: str, where: str, *, remote_only: bool = False) -> dict[str, str]:
        """The checked manifest of directory object ``oid``.

        A manifest's md5 is its name: a cached copy that does not match is
        evicted and fetched again, a remote copy that does not match is an error.
        """
        check_oid(oid, where)
        md5 = oid.removesuffix(".dir")
        if not remote_only:
            cached = self._cached(oid)
            if cached.exists() or cached.is_symlink():
                with open_regular(cached) as handle:
                    raw = handle.read(MAX_MANIFEST_BYTES + 1)
                if hashlib.md5(raw).hexdigest() == md5:
                    return parse_manifest(raw, where)
                logger.warning("the cached manifest %s is damaged; fetching it again", oid)
                self._evict(oid)
        try:
            raw = self.remote_read(oid)
        except FileNotFoundError:
            raise DVCError(
                f"the manifest {oid} of {where} is missing on {self.describe_remote()}",
                fix="re-upload that version from a machine that still has it",
            ) from None
        if hashlib.md5(raw).hexdigest() != md5:
            raise DVCError(
                f"the manifest {oid} of {where} on {self.describe_remote()} does not match its hash "
                "(replaced or damaged); nothing was placed",
                fix="re-upload that version from a machine that still has it",
            )
        return parse_manifest(raw, where)

    def _files_of(self, info: TrackedArtifact, path: str, rev: str) -> dict[str, str]:
        """``{relpath: md5}`` of ``path`` (a tracked file or directory, or a sub-path of one)."""
        oid = info.digest.removeprefix("md5:")
        where = f"{info.path} at {rev.removeprefix('refs/tags/')}"
        sub = path[len(info.path) + 1 :] if path != info.path else ""
        if not oid.endswith(".dir"):
            if sub:
                raise ValidationError(
                    f"{info.path} is a single file: it has no sub-path {visible(sub)}", fix="download it without --sub-path"
                )
            return {"": oid}
        files = self.load_manifest(oid, where)
        return select_sub_path(files, sub, where) if sub else files

    # -- StorageBackend: materialize, manifest, verify, checkout ----------------------
    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        return self._materialize(rev, path, pointer, dest, None)

    def _materialize(self, rev: str, path: str, pointer: bytes, dest: Path, staging_root: Path | None) -> TrackedArtifact:
        self.check_settings()
        tracked = PurePosixPath(path).parts[0]
        info = self.describe_pointer(tracked, pointer)
        if info is None:
            raise DVCError(f"{path} is not tracked at {rev}", fix="choose a version that contains it")
        files = self._files_of(info, path, rev)
        total = info.size if path == tracked else 0
        with staged(Path(dest), staging_root) as target, Progress(f"download {path}", total, self.ctx.progress) as progress:
            if "" not in files:
                target.mkdir()
            for rel, md5 in files.items():
                out = contained(target, rel, f"{path} at {rev.removeprefix('refs/tags/')}") if rel else target
                out.parent.mkdir(parents=True, exist_ok=True)
                self._place_object(md5, out, progress.update, single=len(files) == 1)
                crash_point("download.object-placed")
        size = tree_size(Path(dest))[0]
        return TrackedArtifact(path=path, digest=info.digest, size=size, nfiles=len(files), pointer=info.pointer)

    def _place_object(self, md5: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool) -> None:
        """Write object ``md5`` to ``out`` and check its hash: from the cache when it
        holds a good copy (a damaged one is evicted), else from the remote."""
        actual = self._cached_copy_md5(md5, out, on_bytes)
        if actual is not None and actual != md5:
            logger.warning("the cached copy of %s is damaged; fetching it from %s", md5, self.describe_remote())
            self._evict(md5)
        if actual != md5:
            try:
                actual = self.remote_fetch(md5, out, on_bytes, single=single)
            except FileNotFoundError:
                actual = "missing"
        if actual != md5:
            raise DVCError(
                f"downloaded file {out.name} is corrupt or truncated: expected md5 {md5}, got {actual} "
                f"(object {object_relpath(md5)} in {self.describe_remote()}); nothing was placed",
                fix="the stored copy is damaged: re-upload that version from a machine that still has it",
            )

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        info = self.describe_pointer(PurePosixPath(path).parts[0], pointer)
        if info is None:
            raise DVCError(f"{path} is not tracked at {rev}", fix="choose a version that contains it")
        return self._files_of(info, path, rev)

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        self.check_settings()
        info = self.describe_pointer(PurePosixPath(path).parts[0], pointer)
        if info is None:
            return [f"{path}: not tracked at {rev}"]
        oid = info.digest.removeprefix("md5:")
        where = "remote" if remote else "local cache"
        expected: dict[str, str] = {}
        if oid.endswith(".dir"):
            try:
                expected = {
                    f"{path}/{rel}": md5
                    for rel, md5 in self.load_manifest(oid, f"{path} at {rev.removeprefix('refs/tags/')}", remote_only=remote).items()
                }
            except DVCError as exc:
                return [f"{path} (.dir manifest {oid}): {exc.message}"]
            except ValidationError as exc:
                return [f"{path} (.dir manifest {oid}): {exc.message}"]
        else:
            expected = {path: oid}
        problems: list[str] = []
        for name, md5 in expected.items():
            try:
                actual = self.remote_md5(md5) if remote else self._cached_copy_md5(md5, None)
            except ValidationError as exc:
                problems.append(f"{name}: {exc.message}")
                continue
            if actual is None:
                problems.append(f"{name}: missing in the {where} (md5 {md5})")
            elif actual != md5:
                problems.append(f"{name}: corrupt in the {where} (object {object_relpath(md5)}: md5 {actual})")
        return problems

    def checkout(self, paths: Sequence[str]) -> None:
        """Place the content each pointer in the workspace names, verified, replacing the current files."""
        for p in paths:
            dest = contained(self.path, p, "workspace")
            pointer = (self.path / self.pointer_path(p)).read_bytes()
            staging_root = self.ctx.state_dir / "new" if self.ctx.state_dir is not None else None
            artifact = self._materialize("HEAD", p, pointer, dest, staging_root)
            self._remember_stats([artifact])

    def status(self, paths: Sequence[str]) -> dict[str, str]:
        self.check_settings()
        result: dict[str, str] = {}
        existing = []
        for p in paths:
            if not (self.path / f"{p}.dvc").exists():
                result[p] = "untracked" if (self.path / p).exists() else "missing"
            elif not (self.path / p).exists():
                result[p] = "missing"
            elif self._unchanged_by_stat(p):
                result[p] = "unchanged"
            else:
                existing.append(p)
        if existing:
            with self._repo() as repo:
                try:
                    changes = repo.status(targets=self._abs(existing))
                except Exception as exc:  # noqa: BLE001
                    raise DVCError(
                        f"DVC could not read the status of {', '.join(existing)}: {exc}",
                        fix="check that the files are readable and .dvc/ is intact (`dvc status -v` says more)",
                    ) from None
            changed = {p for p in existing if any(p in str(k) for k in changes)}
            for p in existing:
                result[p] = "modified" if p in changed else "unchanged"
        return result

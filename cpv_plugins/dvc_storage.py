"""The storage engine of the DVC-format backends (``local``, ``dvc-s3``).

It speaks DVC 3's format (:mod:`cpv_plugins.dvc_layout`) itself: it hashes
files and directories into the workspace's ``.dvc/cache``, writes the pointer
files and ``.dir`` manifests exactly as ``dvc add`` would, and moves objects
to and from the remote through a small :class:`~cpv_plugins.transport.Transport`
(a local directory, or S3 through boto3). DVC itself is never imported: a
plain ``git`` + ``dvc`` user reads what cpv wrote (the interop tests run the
real DVC CLI on it).

Every object read back (from the cache or the remote) is checked against its
MD5 before it is placed; a version is materialised from its pointer alone,
so storage does not depend on how the versioning backend keeps history.
Committed configuration (``.dvc/config``) holds only the remote's name and,
where it is the same for every team member, its URL; everything
machine-specific goes to ``.dvc/config.local``, which git ignores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cpv_core.errors import CPVError, DVCError, ValidationError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_write_bytes, md5_stream, tree_size
from cpv_core.plugin.bases import StorageBackendBase
from cpv_core.plugin.progress import Progress, human_bytes
from cpv_core.plugin.protocols import BackendContext, IncompleteUpload, StoredObject, TrackedArtifact, TransferStats
from cpv_core.plugin.sources import walk_files
from cpv_core.trust import MAX_MANIFEST_BYTES, check_oid, contained, open_regular, require_inside, select_sub_path, visible

from .dvc_layout import (
    OBJECTS_DIR,
    REMOTE_NAME,
    Sections,
    artifact_from_out,
    ignore_in_git,
    init_dvc_dir,
    manifest_bytes,
    object_relpath,
    parse_manifest,
    parse_pointer,
    pointer_entry_parts,
    pointer_part_digests,
    pointer_path,
    read_dvc_config,
    read_pointer,
    write_dvc_config,
    write_pointer,
)
from .early_uploads import EarlyUploads
from .part_digests import PartDigests, PartMismatchError, entry_part_size, md5_with_parts
from .stat_cache import StatCache, now_ns, same_file_state, settled_stat
from .transport import OnBytes, Transport, hash_file, regular_file_size

logger = logging.getLogger("cpv.storage")


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


#: boto3 sends a file this small in one request: files of a version whose average size is
#: below it are downloaded several at a time, and a directory's files from this size up are
#: sent while the rest is hashed (for smaller ones the push's batches cost less)
SMALL_FILE_BYTES = 8 * 1024 * 1024


#: an incomplete multipart upload this old is abandoned (``cpv gc``'s default grace)
STALE_UPLOAD_SECONDS = 24 * 3600


class DvcStorage(StorageBackendBase):
    """Storage in DVC's format; subclasses say where the remote is and how it is reached."""

    name = "dvc"

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.path = self.workspace
        self._cache_root = str(self.path / ".dvc" / "cache")
        self._transport: Transport | None = None
        #: objects the last :meth:`track` wrote into the cache from the user's files (known good)
        self._fresh: set[str] = set()
        #: without a cache copy: object id -> the workspace file it was hashed from, and its stat then
        self._sources: dict[str, tuple[str | Path, os.stat_result]] = {}
        #: objects sent from workspace files whose stat check after the send passed
        self._checked: set[str] = set()
        #: a directory's manifest before the last :meth:`track` replaced it (see :meth:`push`)
        self._previous: dict[str, str] = {}
        #: part digests of the large files the last :meth:`track` hashed (see :meth:`wants_part_digests`)
        self._part_digests: dict[str, PartDigests] = {}
        #: during one :meth:`push`: manifests already read and checked against their hash, by
        #: object id (a 20 000-file manifest costs ~0.2 s to parse; a push reads it twice).
        #: Never kept longer: a later read must see the store as it is then.
        self._manifests: dict[str, dict[str, str]] | None = None
        self._sessions = 0
        #: during a track for a push: large files sent while the rest is hashed (see :meth:`push`)
        self._early: EarlyUploads | None = None
        self._early_sent = 0  # bytes the early sends stored (reported by the push)
        self._track_started = 0.0
        self._journal_lock = threading.Lock()

    # -- what subclasses provide ---------------------------------------------
    @abstractmethod
    def remote_url(self) -> str:
        """The DVC remote URL for this team/model (what ``.dvc/config`` names)."""

    def url_is_shared(self) -> bool:
        """Whether the URL is the same for every team member (then it is committed)."""
        return True

    def local_remote_options(self) -> dict[str, str]:
        """Machine-local remote options (endpoint, profile, credential path) for ``.dvc/config.local``."""
        return {}

    @abstractmethod
    def make_transport(self) -> Transport:
        """The transport that reaches the remote."""

    def keeps_cache_copy(self) -> bool:
        """Whether :meth:`track` copies each file into the workspace's cache (as DVC does)
        before it is pushed. Without a copy a file is hashed where it is and uploaded
        from there, guarded by its stat; reverts and downloads then fetch from the remote."""
        return True

    def wants_part_digests(self) -> bool:
        """Whether a large file's pointer records part digests, so its download can check
        the parts in parallel instead of one sequential MD5 (:mod:`cpv_plugins.part_digests`):
        worth it where downloads are ranged reads over the network."""
        return False

    @property
    def transport(self) -> Transport:
        """The remote's transport, made on first use."""
        if self._transport is None:
            self._transport = self.make_transport()
        return self._transport

    @contextmanager
    def remote(self, action: str) -> Iterator[None]:
        """Every call to the remote happens inside this: the transport's session (reachability
        checked once, its exceptions turned into one-line cpv errors naming ``action``),
        entered only by the outermost caller."""
        if self._sessions:
            yield
            return
        self._sessions += 1
        try:
            with self.transport.session(action):
                yield
        finally:
            self._sessions -= 1

    # -- set-up and settings -----------------------------------------------------
    def describe_remote(self) -> str:
        return self.remote_url()

    def object_url(self, oid: str) -> str:
        root = self.remote_url()
        if root.startswith("/"):
            root = Path(root).as_uri()
        return f"{root.rstrip('/')}/{object_relpath(oid.removeprefix('md5:'))}"

    def committed_files(self) -> list[str]:
        return [".dvc/config", ".dvc/.gitignore", ".dvcignore"]

    def init(self) -> None:
        init_dvc_dir(self.path)
        # cpv writes both files itself from its own configuration (what
        # check_settings later insists on): the shared part is committed,
        # the machine-specific part (endpoint, profile, a local path) is not
        committed, local = self.expected_settings()
        config = self.path / ".dvc" / "config"
        if not read_dvc_config(config, ".dvc/config", missing_ok=True):  # new, or empty; a clone's is checked below
            write_dvc_config(config, committed, mode=0o644)
        (self.path / ".dvc" / "config.local").unlink(missing_ok=True)
        if local:
            write_dvc_config(self.path / ".dvc" / "config.local", local)
        self.check_settings()

    def expected_settings(self) -> tuple[Sections, Sections]:
        """The committed and the machine-local DVC settings cpv derives from its own configuration."""
        section = f'remote "{REMOTE_NAME}"'
        committed: Sections = {"core": {"remote": REMOTE_NAME}}
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
        would move a DVC user's cache or redirect their uploads. Only what
        cpv itself derives is accepted; ``.dvc/config.local`` (this machine's
        own file) is rewritten when it differs; a ``.dvcignore`` with
        patterns, which would make DVC drop files from versions, is refused.
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
        return pointer_path(path)

    def commit_paths(self, paths: Sequence[str]) -> list[str]:
        files = []
        for p in paths:
            files.append(self.pointer_path(p))
            ignore = PurePosixPath(p).parent / ".gitignore"
            if (self.path / ignore).exists():
                files.append(str(ignore))
        return sorted(set(files))

    # -- the cache ---------------------------------------------------------------
    def _cache_dir(self) -> Path:
        """The cache: always ``.dvc/cache`` of this workspace (a committed ``cache.dir``
        is refused by :meth:`check_settings`; the repository never moves it)."""
        return self.path / ".dvc" / "cache"

    def _cached(self, oid: str) -> Path:
        """The cache file of object ``oid`` (DVC 3 layout); ``oid`` is checked first."""
        return self._cache_dir() / object_relpath(oid)

    def _has_cached(self, oid: str) -> bool:
        return self._cached_size(oid) is not None

    def _cached_size(self, oid: str) -> int | None:
        """The size of the cache object ``oid`` if the cache holds it as a regular file (one
        lstat on a string path: re-uploading 20 000 files asks this for each)."""
        return regular_file_size(os.path.join(self._cache_root, object_relpath(oid)))

    def _stat_cache(self) -> StatCache:
        return StatCache(self.path / ".dvc" / "tmp" / "cpv-stat.json")

    def _objects_dir(self) -> Path:
        objects = self._cache_dir() / OBJECTS_DIR
        objects.mkdir(parents=True, exist_ok=True)
        return objects

    def _cache_file(self, src: Path, on_bytes: OnBytes, part_size: int | None = None) -> str:
        """Hash ``src`` while copying it into the cache, in one read; its object id.

        Always a fresh copy, even when the object exists: an existing (possibly
        damaged) cache object is never trusted for an upload. The user's file
        is only read, never moved, so an interruption cannot lose it.
        """
        fd, tmp_name = tempfile.mkstemp(prefix=".cpv-", suffix=".tmp", dir=self._objects_dir())
        tmp = Path(tmp_name)
        try:
            with open_regular(src) as reader, os.fdopen(fd, "wb") as writer:
                oid = self._hash_stream(reader, writer, on_bytes, part_size)
            final = self._cached(oid)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)  # cache objects are read-only, as DVC keeps them
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._fresh.add(oid)
        return oid

    def _hash_in_place(self, src: Path, on_bytes: OnBytes, part_size: int | None = None) -> str:
        """Hash ``src`` without copying it (a store that keeps no cache copy); its object id.
        The file's stat is kept so the upload can tell whether it changed meanwhile."""
        before = settled_stat(src)
        with open_regular(src) as reader:
            oid = self._hash_stream(reader, None, on_bytes, part_size)
        self._sources[oid] = (src, before)
        self._fresh.add(oid)
        return oid

    def _hash_stream(self, reader: BinaryIO, writer: BinaryIO | None, on_bytes: OnBytes, part_size: int | None = None) -> str:
        """The MD5 of ``reader``'s bytes (copied to ``writer``), and their part digests
        when this store wants them (kept for the pointer), in parts of at least ``part_size``."""
        if not self.wants_part_digests():
            return md5_stream(reader, writer, on_bytes)
        oid, parts = md5_with_parts(reader, os.fstat(reader.fileno()).st_size, writer, on_bytes, part_size)
        if parts is not None:
            self._part_digests[oid] = parts
        return oid

    def _remove_partial_cache_files(self) -> None:
        for leftover in self._objects_dir().glob(".cpv-*.tmp"):  # a killed run's; the workspace lock is held
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()

    def _evict(self, oid: str) -> None:
        """Drop a corrupt object from the local cache so the next try fetches it again."""
        if self._manifests is not None:
            self._manifests.pop(oid, None)
        path = require_inside(self._cache_dir(), self._cached(oid), "cache eviction")
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)  # two downloads of the same object may both evict it

    # -- track ---------------------------------------------------------------------
    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """Hash ``paths`` into the cache (always a copy: a revert saves unsaved work this way)."""
        return self._track(paths, copy=True)

    def track_for_push(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """Hash ``paths`` for the upload that follows: into the cache, or, for a store that
        keeps no cache copy, where they are (the push then reads the workspace files).
        The remote's check starts meanwhile (:meth:`Transport.prepare`)."""
        self.transport.prepare()
        copy = self.keeps_cache_copy()
        return self._track(paths, copy=copy, send_early=not copy)

    def _track(self, paths: Sequence[str], *, copy: bool, send_early: bool = False) -> list[TrackedArtifact]:
        self._stop_early_uploads()
        self.check_settings()
        self._remove_partial_cache_files()
        self._fresh.clear()  # only what this call hashes is known good for the push that follows
        self._sources.clear()
        self._previous.clear()
        self._part_digests.clear()
        stats = self._stat_cache()
        self._early_sent = 0
        self._track_started = time.monotonic()
        if send_early:
            self._early = EarlyUploads(self._send_early, self.transport.parallel)
        try:
            for p in paths:
                source = self.path / p
                if source.is_file() and not source.is_symlink():
                    self._track_file(p, stats, copy)
                else:
                    self._track_dir(p, stats, copy)
        except BaseException:
            self._stop_early_uploads()
            raise
        stats.save()
        return [read_pointer(self.path, p) for p in paths]

    def _watching_remote(self, on_bytes: OnBytes) -> OnBytes:
        """``on_bytes``, and then stop the hashing if the remote's background check
        (:meth:`track_for_push`) has already failed: a mistyped endpoint is reported
        at once, not after hashing a large checkpoint."""

        def watched(n: int) -> None:
            on_bytes(n)
            if self._transport is not None:  # none made yet: nothing was started
                self._transport.check_prepared()

        return watched

    def _track_file(self, path: str, stats: StatCache, copy: bool) -> None:
        src = self.path / path
        size = src.stat().st_size
        started = now_ns()
        with Progress(f"hash and cache {path}" if copy else f"hash {path}", size, self.ctx.progress) as progress:
            on_bytes = self._watching_remote(progress.update)
            oid = self._cache_file(src, on_bytes) if copy else self._hash_in_place(src, on_bytes)
        stats.put(path, src, oid, started)
        write_pointer(self.path, path, oid, size, None, self._part_digests.get(oid))
        ignore_in_git(self.path, path)

    def _track_dir(self, path: str, stats: StatCache, copy: bool) -> None:
        """Hash a directory's changed files into the cache, write its ``.dir`` manifest and pointer.

        Files whose stat is as when they were last hashed and whose object is
        cached are not read again, so re-uploading a directory costs what changed.
        """
        files = walk_files(self.path / path)
        md5s: dict[str, str] = {}
        changed = []
        for rel, src, size in files:
            known = stats.get(f"{path}/{rel}", src)
            if known is not None and (self._has_cached(known) or not copy):
                md5s[rel] = known
                if not copy:
                    self._sources.setdefault(known, (src, os.stat(src)))  # not fresh: re-hashed if it must be uploaded
            else:
                changed.append((rel, src, size))
        with Progress(
            f"hash and cache {path}" if copy else f"hash {path}", sum(size for _, _, size in changed), self.ctx.progress
        ) as progress:
            on_bytes = self._watching_remote(progress.update)
            part_size = entry_part_size(size for _, _, size in changed)  # a large model's shards all get parts
            hash_one = self._cache_file if copy else self._hash_in_place
            for rel, src, size in changed:
                started = now_ns()
                md5s[rel] = hash_one(Path(src), on_bytes, part_size)
                stats.put(f"{path}/{rel}", src, md5s[rel], started)
                if self._early is not None and size >= SMALL_FILE_BYTES:
                    self._early.submit(md5s[rel])
        raw, oid = manifest_bytes(md5s)
        atomic_write_bytes(self._cached(oid), raw, mode=0o444)
        self._fresh.add(oid)
        previous = self._recorded_oid(path)
        if previous is not None and previous.endswith(".dir") and previous != oid:
            self._previous[path] = previous
        # part digests of the large entries hashed now (a file the stat cache vouched for was
        # not read, so it gets none and its download checks its MD5)
        entry_parts = {md5: self._part_digests[md5] for md5 in set(md5s.values()) if md5 in self._part_digests}
        write_pointer(self.path, path, oid, sum(size for _, _, size in files), len(files), entry_parts=entry_parts)
        ignore_in_git(self.path, path)

    def status(self, paths: Sequence[str]) -> dict[str, str]:
        self.check_settings()
        stats = self._stat_cache()
        result: dict[str, str] = {}
        for p in paths:
            if not (self.path / self.pointer_path(p)).exists():
                result[p] = "untracked" if (self.path / p).exists() else "missing"
            elif not (self.path / p).exists():
                result[p] = "missing"
            else:
                recorded = read_pointer(self.path, p).digest.removeprefix("md5:")
                result[p] = "unchanged" if self._current_oid(p, stats) == recorded else "modified"
        stats.save()
        return result

    def _current_files(self, path: str, stats: StatCache) -> dict[str, str]:
        """``{relpath: md5}`` of ``path`` as it is now (``{"": md5}`` for a file), hashing only
        what the stat cache cannot vouch for."""

        def md5_of(rel: str, src: str | Path) -> str:
            known = stats.get(rel, src)
            if known is None:
                started = now_ns()
                known = hash_file(Path(src))
                stats.put(rel, src, known, started)
            return known

        source = self.path / path
        if source.is_file() and not source.is_symlink():
            return {"": md5_of(path, source)}
        return {rel: md5_of(f"{path}/{rel}", src) for rel, src, _ in walk_files(source)}

    def _current_oid(self, path: str, stats: StatCache) -> str:
        """The object id ``path`` would get if tracked now."""
        files = self._current_files(path, stats)
        return files[""] if "" in files else manifest_bytes(files)[1]

    def changes(self, path: str) -> dict[str, str]:
        """How the files of ``path`` differ from its committed pointer: ``{relpath:
        "added" | "removed" | "modified"}`` (``""`` is the path itself when it is a file)."""
        self.check_settings()
        stats = self._stat_cache()
        current = self._current_files(path, stats) if (self.path / path).exists() else {}
        stats.save()
        info = read_pointer(self.path, path)
        oid = info.digest.removeprefix("md5:")
        recorded = self.load_manifest(oid, path) if oid.endswith(".dir") else {"": oid}
        changed = {rel: "added" for rel in current.keys() - recorded.keys()}
        changed.update({rel: "removed" for rel in recorded.keys() - current.keys()})
        changed.update({rel: "modified" for rel in current.keys() & recorded.keys() if current[rel] != recorded[rel]})
        return dict(sorted(changed.items()))

    # -- push ------------------------------------------------------------------------
    def objects(self, path: str) -> list[str]:
        """Object ids of a tracked path: the file, or the .dir manifest and its files."""
        oid = read_pointer(self.path, path).digest.removeprefix("md5:")
        if not oid.endswith(".dir"):
            return [oid]
        return [oid, *sorted(set(self.load_manifest(oid, path).values()))]

    def _recorded_oid(self, path: str) -> str | None:
        """The object id the pointer of ``path`` records now, or None without a readable one."""
        if not (self.path / self.pointer_path(path)).is_file():
            return None
        try:
            return read_pointer(self.path, path).digest.removeprefix("md5:")
        except (CPVError, OSError):
            return None

    def _vouched_files(self, manifests: Sequence[str]) -> set[str]:
        """The files vouched for by those of ``manifests`` the remote holds and this cache has.

        A manifest is uploaded only once all its files are confirmed on the remote, and
        ``cpv gc`` deletes manifests before files (:meth:`delete_objects`), so a manifest
        there means its files are there (DVC's rule too). One HEAD per manifest, instead
        of listing every object of the version."""
        local = [oid for oid in dict.fromkeys(manifests) if self._has_cached(oid)]
        if not local:
            return set()
        stored = self.transport.sizes(local)
        vouched: set[str] = set()
        for oid in local:
            if oid in stored:
                try:
                    vouched.update(self.load_manifest(oid, "a manifest on the remote").values())
                except CPVError:
                    continue  # a damaged cache copy vouches for nothing
        return vouched

    def push(self, paths: Sequence[str]) -> TransferStats:
        """Upload every object of ``paths`` the remote lacks, then confirm that every object
        is there (no pointer is committed for bytes that are not stored); manifests go last,
        once their files are confirmed: a manifest on the remote means its files are there.

        Only the objects this process just hashed can be new, so only they are asked for
        before the upload. The confirmation covers every object a manifest on the remote
        does not vouch for (this version's, or the one its last track replaced): it finds
        any older one the remote lost, which is then uploaded too. Re-uploading one changed
        file of 20 000 costs a few HEAD requests, not a listing of the remote."""
        self._manifests = {}
        try:
            return self._push(paths)
        finally:
            self._manifests = None

    def reconfirm(self, paths: Sequence[str]) -> TransferStats:
        """After a gc overlapped the upload of ``paths`` (:mod:`cpv_core.gc_fence`): ask the
        store about every object, trusting no manifest (the gc may have removed files a
        manifest it did not see names), and send again whatever is missing."""
        self._manifests = {}
        try:
            return self._push(paths, vouch=False)
        finally:
            self._manifests = None

    def _push(self, paths: Sequence[str], *, vouch: bool = True) -> TransferStats:
        if self._early is not None:  # what they stored is found below like any stored object
            self._early.finish()
            self._early = None
        self.check_settings()
        oids = list(dict.fromkeys(oid for p in paths for oid in self.objects(p)))
        sizes = {oid: self._local_size(oid) for oid in oids}
        files = [oid for oid in oids if not oid.endswith(".dir")]
        manifests = [oid for oid in oids if oid.endswith(".dir")]
        transport = self.transport
        uploaded: list[str] = []

        def lacking(batch: list[str]) -> list[str]:
            stored = transport.sizes(batch) if batch else {}
            return [oid for oid in batch if stored.get(oid) != sizes[oid]]

        def put_all(batch: list[str], progress: Progress) -> None:
            # objects sent from workspace files are journaled until their stat check passed:
            # a kill in between leaves them to the next push (_settle_unverified)
            in_place = [oid for oid in batch if self._uploads_in_place(oid)]
            self._journal_unverified(add=in_place)
            try:
                with ThreadPoolExecutor(max_workers=max(1, min(transport.parallel, len(batch)))) as pool:
                    list(pool.map(lambda oid: self._put(oid, progress.update), batch))
            finally:
                self._journal_unverified(remove=[oid for oid in in_place if oid in self._checked])
            uploaded.extend(batch)

        with self.remote(f"upload {', '.join(paths)}"):
            self._settle_unverified()
            vouched = self._vouched_files([*manifests, *(self._previous[p] for p in paths if p in self._previous)]) if vouch else set()
            unvouched = [oid for oid in files if oid not in vouched]
            new = lacking([oid for oid in unvouched if oid in self._fresh])
            early, self._early_sent = self._early_sent, 0  # sent while the rest was hashed: counted, and timed from then
            with Progress(
                f"upload {', '.join(paths)}",
                early + sum(sizes[oid] for oid in new),
                self.ctx.progress,
                started=self._track_started if early else None,
            ) as progress:
                progress.update(early)
                put_all(new, progress)
                lost = lacking(unvouched)  # the confirmation: every file no stored manifest vouches for
                put_all(lost, progress)
                absent = lacking(lost)
                if not absent:  # manifests last, once all their files are confirmed
                    missing_manifests = lacking(manifests)
                    for oid in missing_manifests:
                        self._put(oid, progress.update)
                    uploaded.extend(missing_manifests)
                    absent = lacking(missing_manifests)
                sent = set(uploaded)
                kept = sum(sizes[oid] for oid in oids if oid not in sent) - early
                progress.note = f"; {human_bytes(max(0, kept))} already stored" if kept > 0 else ""
        if absent:
            raise DVCError(
                f"{len(absent)} object(s) are not on {self.describe_remote()} after the upload (first: {absent[0]}); nothing was committed",
                fix="run the upload again; if it fails again, run `cpv verify --remote` and check the store",
            )
        return TransferStats(transferred=len(uploaded), skipped=len(oids) - len(uploaded))

    def _local_size(self, oid: str) -> int:
        """Bytes of object ``oid`` here: its cache copy, else the workspace file it was hashed from."""
        size = self._cached_size(oid)
        if size is not None:
            return size
        if oid in self._sources:
            return self._sources[oid][1].st_size
        return self._cached(oid).stat().st_size  # raises FileNotFoundError naming the object

    def _put(self, oid: str, on_bytes: OnBytes) -> None:
        """Upload object ``oid``: from the cache, or (no cache copy) from the workspace file.

        A cache object this process did not just hash from the user's files is
        checked first (a damaged one is evicted and reported, never stored). A
        workspace file is uploaded only while its stat is as when it was hashed;
        one that changed during the upload is taken off the remote again, so no
        object is ever stored under a hash its bytes do not have."""
        if self._uploads_in_place(oid):
            self._put_in_place(oid, on_bytes)
            return
        cached = self._cached(oid)
        if oid not in self._fresh:
            actual = hash_file(cached)
            if actual != oid.removesuffix(".dir"):
                self._evict(oid)
                raise DVCError(
                    f"the cached copy of {oid} is damaged (md5 {actual}); it was not uploaded",
                    fix="upload again: cpv re-reads your files into the cache",
                )
        self.transport.put(oid, cached, on_bytes)

    def _put_in_place(self, oid: str, on_bytes: OnBytes) -> None:
        src = Path(self._sources[oid][0])
        hashed = self._sources[oid][1]
        # a linked file of a data directory may live elsewhere: name it as it is then
        rel = src.relative_to(self.path).as_posix() if self.path in src.parents else visible(src)
        if oid not in self._fresh:  # known from the stat cache only: the bytes are checked before they are trusted
            hashed = settled_stat(src)  # taken before the read, so a change from here on shows
            actual = hash_file(src)
            if actual != oid:
                raise DVCError(f"{rel} no longer has the content it was hashed with; nothing was uploaded", fix="upload again")
        if not same_file_state(src, hashed):
            raise DVCError(f"{rel} changed after it was hashed; nothing was uploaded", fix="upload again once it is written")
        self.transport.put(oid, src, on_bytes)
        if not same_file_state(src, hashed):
            self.transport.delete(oid)
            raise DVCError(
                f"{rel} changed while it was uploaded (is a training job still writing it?); the partial object was removed "
                "and nothing was committed",
                fix="upload again once the file is complete (the Checkpointer uploads a snapshot instead)",
            )
        self._checked.add(oid)

    def _send_early(self, oid: str) -> None:
        """Send one just-hashed workspace file (see :mod:`cpv_plugins.early_uploads`): journaled
        and stat-checked exactly as the push's own sends are."""
        if self.transport.sizes([oid]).get(oid) == self._local_size(oid):
            return
        self._journal_unverified(add=[oid])
        self._put(oid, lambda n: None)
        with self._journal_lock:
            self._early_sent += self._local_size(oid)
        if oid in self._checked:
            self._journal_unverified(remove=[oid])

    def _stop_early_uploads(self) -> None:
        if self._early is not None:
            self._early.abandon()
            self._early = None

    def _uploads_in_place(self, oid: str) -> bool:
        """Whether object ``oid`` is sent from the workspace file it was hashed from (no cache copy)."""
        return oid in self._sources and not self._has_cached(oid)

    def _unverified_path(self) -> Path | None:
        return self.ctx.state_dir / "unverified-uploads" if self.ctx.state_dir is not None else None

    def _journal_unverified(self, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Record (or clear) objects sent from workspace files whose stat check has not passed
        yet: a kill in that window could leave bytes under a hash they do not have. Written
        once per batch, not per object (a directory may send 20 000)."""
        path = self._unverified_path()
        if path is None or not (add or remove):
            return
        with self._journal_lock:  # early sends record theirs from other threads
            oids = set(path.read_text(encoding="utf-8").split()) if path.is_file() and not path.is_symlink() else set()
            oids = (oids | set(add)) - set(remove)
            if oids:
                atomic_write_bytes(path, "\n".join(sorted(oids)).encode() + b"\n")
            else:
                path.unlink(missing_ok=True)

    def _settle_unverified(self) -> None:
        """Check what a killed upload left unverified (see :meth:`_journal_unverified`): an
        object whose bytes do not have its hash is removed from the remote, so the next push
        uploads it again instead of trusting it; one line says so."""
        path = self._unverified_path()
        if path is None or not path.is_file() or path.is_symlink():
            return
        # a kill may also have left a multipart upload on the store: abort those old enough
        # that no teammate's upload can still be writing them (gc's default grace)
        stale = self.abort_incomplete_uploads(time.time() - STALE_UPLOAD_SECONDS)
        if stale:
            logger.warning("aborted %d incomplete upload(s) an interrupted run left on %s", len(stale), self.describe_remote())
        for oid in path.read_text(encoding="utf-8").split():
            try:
                check_oid(oid, str(path))
            except ValidationError:
                continue  # not ours to act on
            actual = self.transport.md5(oid)
            if actual is not None and actual != oid.removesuffix(".dir"):
                self.transport.delete(oid)
                logger.warning("an upload killed before its check left %s on %s with other bytes; removed it", oid, self.describe_remote())
        path.unlink(missing_ok=True)

    # -- reading objects: the cache first, then the remote ----------------------------
    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        where = self.pointer_path(path)
        out = parse_pointer(pointer, where)
        return artifact_from_out(path, out, where) if out else None

    def load_manifest(self, oid: str, where: str, *, remote_only: bool = False) -> dict[str, str]:
        """The checked manifest of directory object ``oid``.

        A manifest's md5 is its name: a cached copy that does not match is
        evicted and fetched again, a remote copy that does not match is an error.
        """
        check_oid(oid, where)
        md5 = oid.removesuffix(".dir")
        if not remote_only and self._manifests is not None and oid in self._manifests:
            return dict(self._manifests[oid])
        if not remote_only and self._has_cached(oid):
            with open_regular(self._cached(oid)) as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
            if hashlib.md5(raw).hexdigest() == md5:
                return self._remember_manifest(oid, parse_manifest(raw, where))
            logger.warning("the cached manifest %s is damaged; fetching it again", oid)
            self._evict(oid)
        try:
            with self.remote(f"read the manifest of {where}"):
                raw = self.transport.read(oid)
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
        files = parse_manifest(raw, where)
        self._keep_manifest(oid, raw)
        return self._remember_manifest(oid, files)

    def _remember_manifest(self, oid: str, files: dict[str, str]) -> dict[str, str]:
        if self._manifests is not None:
            self._manifests[oid] = files
        return dict(files)

    def _keep_manifest(self, oid: str, raw: bytes) -> None:
        """Cache a checked manifest read from the remote: the next upload of that directory
        then needs no listing to know which of its files are stored (:meth:`_vouched_files`)."""
        if not (self.path / ".dvc").is_dir() or self._has_cached(oid):
            return
        try:
            atomic_write_bytes(self._cached(oid), raw, mode=0o444)
        except OSError as exc:  # a read-only workspace still downloads
            logger.debug("could not cache manifest %s: %s", oid, exc)

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

    def objects_of(self, rev: str, path: str, pointer: bytes) -> list[str]:
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        oid = info.digest.removeprefix("md5:")
        if not oid.endswith(".dir"):
            return [oid]
        with self.remote(f"read the manifest of {path}"):
            files = self.load_manifest(oid, f"{path} at {rev.removeprefix('refs/tags/')}")
        return [oid, *sorted(set(files.values()))]

    def vouched_by(self, oid: str) -> list[str]:
        """The files stored object ``oid`` vouches for: a manifest's entries (none for a file,
        or for a manifest that cannot be read back, which vouches for nothing to an upload either)."""
        if not oid.endswith(".dir"):
            return []
        try:
            return sorted(set(self.load_manifest(oid, "a manifest on the store").values()))
        except CPVError as exc:
            logger.warning("%s", exc.message)
            return []

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Multipart uploads under this model's prefix that were never completed."""
        with self.remote("list incomplete uploads"):
            return [IncompleteUpload(*upload) for upload in self.transport.incomplete_uploads()]

    def abort_incomplete_uploads(self, started_before: float) -> list[IncompleteUpload]:
        """Abort every incomplete upload started before ``started_before`` (POSIX time);
        returns them. A younger one may be a teammate's upload in flight."""
        stale = [u for u in self.incomplete_uploads() if u.started < started_before]
        if stale:
            with self.remote("abort incomplete uploads"):
                for upload in stale:
                    self.transport.abort_upload(upload.key, upload.upload_id)
        return stale

    def inventory(self) -> list[StoredObject]:
        self.check_settings()
        with self.remote("list the stored objects"):
            return [StoredObject(oid, size, modified) for oid, size, modified in self.transport.inventory()]

    def delete_objects(self, oids: Sequence[str]) -> None:
        """Delete manifests before files: a manifest on the remote vouches for its files
        (:meth:`push`), so a kill part-way leaves files without a manifest, never a
        manifest without its files."""
        self.check_settings()
        for oid in oids:
            check_oid(oid, "object to delete")
        with self.remote("delete objects"):
            for oid in sorted(oids, key=lambda oid: not oid.endswith(".dir")):
                self.transport.delete(oid)

    def _tracked(self, rev: str, path: str, pointer: bytes) -> TrackedArtifact:
        info = self.describe_pointer(tracked_root(path, pointer), pointer)
        if info is None:
            raise DVCError(f"{path} is not tracked at {rev}", fix="choose a version that contains it")
        return info

    # -- StorageBackend: materialize, manifest, verify, checkout ----------------------
    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        return self._materialize(rev, path, pointer, dest, None)

    def materialize_selected(self, rev: str, path: str, pointer: bytes, dest: Path, names: Sequence[str]) -> TrackedArtifact:
        """Only the entries ``names`` of directory ``path`` into ``dest`` (each verified as any download)."""
        return self._materialize(rev, path, pointer, dest, None, only=set(names))

    def _materialize(
        self, rev: str, path: str, pointer: bytes, dest: Path, staging_root: Path | None, *, only: set[str] | None = None
    ) -> TrackedArtifact:
        self.check_settings()
        info = self._tracked(rev, path, pointer)
        with self.remote(f"download {path}"):
            files = self._files_of(info, path, rev)
            if only is not None:
                files = {rel: md5 for rel, md5 in files.items() if rel in only}
            total = info.size if path == info.path and only is None else 0
            with staged(Path(dest), staging_root) as target, Progress(f"download {path}", total, self.ctx.progress) as progress:
                if "" not in files:
                    target.mkdir()
                parts = self._recorded_parts(pointer, info) if "" in files else None
                entry_parts = {} if "" in files else self._recorded_entry_parts(pointer, info)
                where = f"{path} at {rev.removeprefix('refs/tags/')}"

                def place(item: tuple[str, str]) -> None:
                    rel, md5 = item
                    out = contained(target, rel, where) if rel else target  # checked where it is written
                    out.parent.mkdir(parents=True, exist_ok=True)
                    self._place_object(md5, out, progress.update, single=len(files) == 1, parts=parts if not rel else entry_parts.get(md5))
                    crash_point("download.object-placed")

                # many small files: several requests at once (a file above the multipart size
                # is already fetched in parallel parts, so those go one at a time)
                workers = self.transport.parallel if len(files) > 1 and info.size < len(files) * SMALL_FILE_BYTES else 1
                if workers == 1 and len(files) > 1 and entry_parts:
                    workers = 2  # shards checked by their MD5 in order: one's hashing overlaps the next one's download
                if workers > 1:
                    with ThreadPoolExecutor(max_workers=min(workers, len(files))) as pool:
                        list(pool.map(place, files.items()))
                else:
                    for item in files.items():
                        place(item)
        size = tree_size(Path(dest))[0]
        return TrackedArtifact(path=path, digest=info.digest, size=size, nfiles=len(files), pointer=info.pointer)

    def _recorded_entry_parts(self, pointer: bytes, info: TrackedArtifact) -> dict[str, PartDigests]:
        """The part digests a directory's pointer records for its large entries, by MD5."""
        out = parse_pointer(pointer, info.pointer or self.pointer_path(info.path))
        return pointer_entry_parts(out) if out else {}

    def _recorded_parts(self, pointer: bytes, info: TrackedArtifact) -> PartDigests | None:
        """The part digests a single file's pointer records, if well-formed (else None: the
        download checks the whole MD5)."""
        out = parse_pointer(pointer, info.pointer or self.pointer_path(info.path))
        return pointer_part_digests(out, info.size) if out else None

    def _place_object(self, md5: str, out: Path, on_bytes: Callable[[int], Any], *, single: bool, parts: PartDigests | None = None) -> None:
        """Write object ``md5`` to ``out`` and check it: from the cache when it holds a good
        copy (a damaged one is evicted), else from the remote, which checks ``parts``
        (the version's part digests) when given, else the whole MD5."""
        actual = hash_file(self._cached(md5), out, on_bytes) if self._has_cached(md5) else None
        if actual is not None and actual != md5:
            logger.warning("the cached copy of %s is damaged; fetching it from %s", md5, self.describe_remote())
            self._evict(md5)
        if actual != md5:
            try:
                actual = self.transport.get(md5, out, on_bytes, single=single, parts=parts)
            except FileNotFoundError:
                actual = "missing"
            except PartMismatchError as exc:
                raise DVCError(
                    f"downloaded file {out.name} is corrupt: {exc} (object {object_relpath(md5)} in "
                    f"{self.describe_remote()}); nothing was placed",
                    fix="the stored copy is damaged: re-upload that version from a machine that still has it",
                ) from None
        if actual != md5:
            raise DVCError(
                f"downloaded file {out.name} is corrupt or truncated: expected md5 {md5}, got {actual} "
                f"(object {object_relpath(md5)} in {self.describe_remote()}); nothing was placed",
                fix="the stored copy is damaged: re-upload that version from a machine that still has it",
            )

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        return self._files_of(self._tracked(rev, path, pointer), path, rev)

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        self.check_settings()
        info = self.describe_pointer(tracked_root(path, pointer), pointer)
        if info is None:
            return [f"{path}: not tracked at {rev}"]
        if not remote:
            return self._verify(info, path, rev, remote=False)
        with self.remote(f"read {path}"):
            return self._verify(info, path, rev, remote=True)

    #: how many files the last local verify checked on the remote because they were not cached here
    last_verify_remote_checked = 0

    def _verify(self, info: TrackedArtifact, path: str, rev: str, *, remote: bool) -> list[str]:
        oid = info.digest.removeprefix("md5:")
        where = "remote" if remote else "local cache"
        self.last_verify_remote_checked = 0
        expected: dict[str, str] = {path: oid}
        if oid.endswith(".dir"):
            try:
                manifest = self.load_manifest(oid, f"{path} at {rev.removeprefix('refs/tags/')}", remote_only=remote)
            except (DVCError, ValidationError) as exc:
                return [f"{path} (.dir manifest {oid}): {exc.message}"]
            expected = {f"{path}/{rel}": md5 for rel, md5 in manifest.items()}
        problems: list[str] = []
        uncached: dict[str, str] = {}
        if remote and not oid.endswith(".dir"):  # the pointer's size is data too: a smaller one would make a download stop short
            stored = self.transport.sizes([oid]).get(oid)
            if stored is not None and stored != info.size:
                problems.append(f"{path}: its pointer records {info.size} bytes but the stored object {object_relpath(oid)} has {stored}")
        for name, md5 in expected.items():
            try:
                if remote:
                    actual = self.transport.md5(md5)
                elif self._has_cached(md5) or self._cached(md5).is_symlink():
                    actual = hash_file(self._cached(md5))
                else:
                    actual = self._workspace_copy_md5(name, md5)
            except ValidationError as exc:
                problems.append(f"{name}: {exc.message}")
                continue
            if actual is None and not remote:
                uncached[name] = md5  # not cached here is not damage: the remote copy is checked instead
            elif actual is None:
                problems.append(f"{name}: missing in the {where} (md5 {md5})")
            elif actual != md5:
                problems.append(f"{name}: corrupt in the {where} (object {object_relpath(md5)}: md5 {actual})")
        if uncached:
            with self.remote(f"check {len(uncached)} file(s) not cached here"):
                for name, md5 in uncached.items():
                    actual = self.transport.md5(md5)
                    if actual is None:
                        problems.append(f"{name}: neither cached here nor on the remote (md5 {md5})")
                    elif actual != md5:
                        problems.append(f"{name}: not cached here, and corrupt on the remote (object {object_relpath(md5)}: md5 {actual})")
            self.last_verify_remote_checked = len(uncached)
        return problems

    def _workspace_copy_md5(self, name: str, md5: str) -> str | None:
        """Without a cache copy, the local copy of an object is the workspace file it was
        uploaded from: its MD5 when the file at ``name`` is that object, else None (missing)."""
        if self.keeps_cache_copy():
            return None
        try:
            candidate = contained(self.path, name, "workspace")
        except ValidationError:
            return None
        if not candidate.is_file() or candidate.is_symlink():
            return None
        actual = hash_file(candidate)
        return actual if actual == md5 else None

    def checkout(self, paths: Sequence[str]) -> None:
        """Place the content each pointer in the workspace names, verified, replacing the current files."""
        for p in paths:
            dest = contained(self.path, p, "workspace")
            pointer = (self.path / self.pointer_path(p)).read_bytes()
            staging_root = self.ctx.state_dir / "new" if self.ctx.state_dir is not None else None
            self._materialize("HEAD", p, pointer, dest, staging_root)

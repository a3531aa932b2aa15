"""The engine's ground floor: the remote and its transport, ``.dvc`` settings,
the workspace cache (hashing into it, evicting from it) and reading manifests."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cpv_core.errors import CPVError, DVCError, ValidationError
from cpv_core.paths import atomic_write_bytes, md5_stream
from cpv_core.plugin.bases import StorageBackendBase
from cpv_core.plugin.protocols import BackendContext, TrackedArtifact
from cpv_core.trust import MAX_MANIFEST_BYTES, check_oid, open_regular, require_inside, select_sub_path, visible
from cpv_plugins.dvc.chunking import ChunkIndexer, safetensors_header_of, tensor_cuts
from cpv_plugins.dvc.layout import (
    OBJECTS_DIR,
    REMOTE_NAME,
    Sections,
    artifact_from_out,
    init_dvc_dir,
    manifest_md5s,
    object_relpath,
    parse_manifest,
    parse_pointer,
    pointer_path,
    read_dvc_config,
    read_pointer,
    tracked_root,
    write_dvc_config,
)
from cpv_plugins.dvc.part_digests import md5_with_parts
from cpv_plugins.dvc.stat_cache import StatCache, settled_stat
from cpv_plugins.dvc.upload_session import UploadSession
from cpv_plugins.transports.base import OnBytes, Transport, regular_file_size

logger = logging.getLogger("cpv.storage")


#: boto3 sends a file this small in one request: files of a version whose average size is
#: below it are downloaded several at a time, and a directory's files from this size up are
#: sent while the rest is hashed (for smaller ones the push's batches cost less)
SMALL_FILE_BYTES = 8 * 1024 * 1024


#: an incomplete multipart upload this old is abandoned (``cpv gc``'s default grace)
STALE_UPLOAD_SECONDS = 24 * 3600


class CacheStore(StorageBackendBase):
    """The DVC cache and settings of one workspace; subclasses say where the remote is and how it is reached."""

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.path = self.workspace
        self._cache_root = str(self.path / ".dvc" / "cache")
        self._transport: Transport | None = None
        #: what the last :meth:`track` learnt, for the :meth:`push` that follows it
        self.session = UploadSession()
        #: objects sent from workspace files whose stat check after the send passed
        self._checked: set[str] = set()
        #: during one :meth:`push`: manifests already read and checked against their hash, by
        #: object id (a 20 000-file manifest costs ~0.2 s to parse; a push reads it twice).
        #: Never kept longer: a later read must see the store as it is then.
        self._manifests: dict[str, dict[str, str]] | None = None
        self._sessions = 0
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
        the parts in parallel instead of one sequential MD5 (:mod:`cpv_plugins.dvc.part_digests`):
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

    def _cache_file(self, src: Path, on_bytes: OnBytes, part_size: int | None = None, *, index: bool = False) -> str:
        """Hash ``src`` while copying it into the cache, in one read; its object id.

        Always a fresh copy, even when the object exists: an existing (possibly
        damaged) cache object is never trusted for an upload. The user's file
        is only read, never moved, so an interruption cannot lose it.
        """
        fd, tmp_name = tempfile.mkstemp(prefix=".cpv-", suffix=".tmp", dir=self._objects_dir())
        tmp = Path(tmp_name)
        try:
            with open_regular(src) as reader, os.fdopen(fd, "wb") as writer:
                oid = self._hash_stream(reader, writer, on_bytes, part_size, index=index)
            final = self._cached(oid)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)  # cache objects are read-only, as DVC keeps them
            size = tmp.stat().st_size
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.session.fresh.add(oid)
        self.session.cached[oid] = size
        return oid

    def _hash_in_place(self, src: Path, on_bytes: OnBytes, part_size: int | None = None, *, index: bool = False) -> str:
        """Hash ``src`` without copying it (a store that keeps no cache copy); its object id.
        The file's stat is kept so the upload can tell whether it changed meanwhile."""
        before = settled_stat(src)
        with open_regular(src) as reader:
            oid = self._hash_stream(reader, None, on_bytes, part_size, index=index)
        self.session.sources[oid] = (src, before)
        self.session.fresh.add(oid)
        return oid

    def _hash_stream(
        self, reader: BinaryIO, writer: BinaryIO | None, on_bytes: OnBytes, part_size: int | None = None, *, index: bool = False
    ) -> str:
        """The MD5 of ``reader``'s bytes (copied to ``writer``), and their part digests
        when this store wants them (kept for the pointer), in parts of at least ``part_size``;
        with ``index``, a safetensors file's tensor index too (its chunks' SHA-256s, so some
        tensors can be read from the whole object verified), all in one read."""
        size = os.fstat(reader.fileno()).st_size
        header = safetensors_header_of(reader, size) if index else None
        indexer = ChunkIndexer(tensor_cuts(header)) if header is not None else None
        wants_parts = self.wants_part_digests()
        if not wants_parts and indexer is None:
            return md5_stream(reader, writer, on_bytes)
        no_parts = 2**62  # a minimum part size no file reaches
        oid, parts = md5_with_parts(
            reader, size, writer, on_bytes, part_size if wants_parts else no_parts, also=indexer.update if indexer else None
        )
        if parts is not None:
            self.session.part_digests[oid] = parts
        built = indexer.manifest(oid, size) if indexer is not None else None
        if built is not None:
            self.session.indexes[oid] = built
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

    # -- reading objects: the cache first, then the remote ----------------------------
    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        where = self.pointer_path(path)
        out = parse_pointer(pointer, where)
        return artifact_from_out(path, out, where) if out else None

    def load_manifest(self, oid: str, where: str, *, remote_only: bool = False) -> dict[str, str]:
        """The checked manifest of directory object ``oid`` (see :meth:`read_small_object`)."""
        check_oid(oid, where)
        if not remote_only and self._manifests is not None and oid in self._manifests:
            return dict(self._manifests[oid])
        raw, fetched = self.read_small_object(oid, "manifest", where, remote_only=remote_only)
        files = parse_manifest(raw, where)
        if fetched:
            self._keep_manifest(oid, raw)
        return self._remember_manifest(oid, files)

    def read_small_object(self, oid: str, what: str, where: str, *, remote_only: bool = False) -> tuple[bytes, bool]:
        """The bytes of small object ``oid`` (a manifest), and whether they came from the store.

        Its MD5 is its name: a cached copy that does not match is evicted and fetched
        again, a store's copy that does not match is an error (nothing is placed)."""
        md5 = oid.removesuffix(".dir")
        if not remote_only and self._has_cached(oid):
            with open_regular(self._cached(oid)) as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
            if hashlib.md5(raw).hexdigest() == md5:
                return raw, False
            logger.warning("the cached %s %s is damaged; fetching it again", what, oid)
            self._evict(oid)
        try:
            with self.remote(f"read the {what} of {where}"):
                raw = self.transport.read(oid)
        except FileNotFoundError:
            raise DVCError(
                f"the {what} {oid} of {where} is missing on {self.describe_remote()}",
                fix="re-upload that version from a machine that still has it",
            ) from None
        if hashlib.md5(raw).hexdigest() != md5:
            raise DVCError(
                f"the {what} {oid} of {where} on {self.describe_remote()} does not match its hash "
                "(replaced or damaged); nothing was placed",
                fix="re-upload that version from a machine that still has it",
            )
        return raw, True

    def manifest_objects(self, oid: str, where: str) -> set[str]:
        """The object ids manifest ``oid`` names (for vouching: its relpaths are not needed,
        so a cached copy whose hash matches is read without checking every path)."""
        if self._manifests is not None and oid in self._manifests:
            return set(self._manifests[oid].values())
        if self._has_cached(oid):
            with open_regular(self._cached(oid)) as handle:
                raw = handle.read(MAX_MANIFEST_BYTES + 1)
            if hashlib.md5(raw).hexdigest() == oid.removesuffix(".dir"):
                return manifest_md5s(raw, where)
        return set(self.load_manifest(oid, where).values())  # evicts a damaged copy, reads the remote's

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

    def _tracked(self, rev: str, path: str, pointer: bytes) -> TrackedArtifact:
        info = self.describe_pointer(tracked_root(path, pointer), pointer)
        if info is None:
            raise DVCError(f"{path} is not tracked at {rev}", fix="choose a version that contains it")
        return info

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        return self._files_of(self._tracked(rev, path, pointer), path, rev)

"""What the DVC-based storage backends (``local``, ``dvc-s3``) share.

DVC is used through its Python API (``dvc.repo.Repo``), imported on first use.
Committed configuration (``.dvc/config``) holds only the remote's name and,
where it is the same for every team member, its URL; everything
machine-specific or credential-related goes to ``.dvc/config.local``, which
git ignores.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from cpv_core.backends import BackendContext, TrackedArtifact, TransferStats
from cpv_core.errors import CPVError, DVCError
from cpv_core.paths import atomic_path, file_md5, preserved, tree_size
from cpv_core.progress import Progress

logger = logging.getLogger("cpv.storage")

REMOTE_NAME = "cpv"
_COPY_CHUNK = 8 * 1024 * 1024
_DVC_TMP_RE = re.compile(r"\.[A-Za-z0-9_-]{22}\.tmp")


def _quiet_dvc() -> None:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    import dvc.repo  # noqa: F401 - DVC configures its logger on import

    # DVC logs hints meant for its own CLI ("To track the changes with git...").
    logging.getLogger("dvc").setLevel(logging.WARNING)






def parse_pointer(content: bytes | str) -> dict[str, Any] | None:
    """The first ``outs`` entry of a ``.dvc`` file.

    Parsed with ruamel.yaml (what DVC itself uses) rather than through DVC, so
    reading a version's hash and size costs ~20 ms instead of importing DVC.
    """
    from ruamel.yaml import YAML

    text = content.decode() if isinstance(content, bytes) else content
    data = YAML(typ="safe", pure=True).load(text) or {}
    outs = data.get("outs") if isinstance(data, dict) else None
    return dict(outs[0]) if outs else None


def artifact_from_out(path: str, out: dict[str, Any]) -> TrackedArtifact:
    """A :class:`TrackedArtifact` from a ``.dvc`` ``outs`` entry."""
    md5 = str(out.get("md5", ""))
    return TrackedArtifact(
        path=path,
        digest=f"md5:{md5}",
        size=int(out.get("size", 0) or 0),
        nfiles=int(out.get("nfiles", 1) or 1),
        pointer=f"{path}.dvc",
    )


@contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """Yield a path in a staging directory beside ``dest``; on success it
    replaces ``dest`` with one rename, on failure nothing is left at ``dest``.
    Staging directories of a killed earlier run are removed first."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.cpv-tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".cpv-tmp", dir=dest.parent))
    try:
        target = staging / dest.name
        yield target
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(target, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
        local = dict(self.local_remote_options())
        if not self.url_is_shared():
            local["url"] = self.remote_url()

        def write_shared(repo: Any) -> None:
            with repo.config.edit("repo") as conf:
                conf["core"]["remote"] = REMOTE_NAME
                if self.url_is_shared():
                    conf["remote"].setdefault(REMOTE_NAME, {})["url"] = self.remote_url()

        def write_local(repo: Any) -> None:
            if local:
                with repo.config.edit("local") as conf:
                    conf["remote"].setdefault(REMOTE_NAME, {}).update(local)

        # DVC validates the merged config after each edit, so the level that
        # holds the url is written first.
        order = (write_shared, write_local) if self.url_is_shared() else (write_local, write_shared)
        with self._repo() as repo:
            try:
                for write in order:
                    write(repo)
            except Exception as exc:  # noqa: BLE001 - dvc.config.ConfigError and friends
                raise DVCError(f"could not configure the DVC remote {self.describe_remote()}: {exc}",
                               fix="check the storage settings in the cpv config") from None

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
        objects = self._cache_dir() / "files" / "md5"
        objects.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".cpv-", suffix=".tmp", dir=objects)
        tmp = Path(tmp_name)
        digest = hashlib.md5()
        try:
            with open(src, "rb") as reader, os.fdopen(fd, "wb") as writer, \
                    Progress(f"hash and cache {path}", size, self.ctx.progress) as progress:
                for chunk in iter(lambda: reader.read(_COPY_CHUNK), b""):
                    digest.update(chunk)
                    writer.write(chunk)
                    progress.update(len(chunk))
            oid = digest.hexdigest()
            final = objects / oid[:2] / oid[2:]
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
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
                stack.enter_context(preserved(self.path / p))
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
        """DVC's cache directory (``cache.dir`` if configured, else ``.dvc/cache``)."""
        import configparser

        parser = configparser.RawConfigParser()
        parser.read([self.path / ".dvc" / "config", self.path / ".dvc" / "config.local"])
        value = parser.get("cache", "dir", fallback=None)
        base = Path(value) if value else Path("cache")
        return base if base.is_absolute() else (self.path / ".dvc" / base)

    def _cached(self, oid: str) -> Path:
        """The cache file of object ``oid`` (DVC 3 layout)."""
        return self._cache_dir() / "files" / "md5" / oid[:2] / oid[2:]

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
        return record["digest"] == pointer.digest and record["stat"] == self._stat_key(target)

    def _read_pointer(self, path: str) -> TrackedArtifact:
        pointer = self.path / f"{path}.dvc"
        out = parse_pointer(pointer.read_bytes())
        if out is None:
            raise DVCError(f"pointer file {pointer} has no outputs", fix=f"re-run the upload of {path}")
        return artifact_from_out(path, out)

    def push(self, paths: Sequence[str]) -> TransferStats:
        total = sum(tree_size(self.path / p)[0] for p in paths)
        with self._repo() as repo, Progress(f"upload {', '.join(paths)}", total, self.ctx.progress) as progress:
            try:
                count = repo.push(targets=self._abs(paths), remote=REMOTE_NAME)
            except Exception as exc:  # noqa: BLE001
                raise self.map_error(f"upload {', '.join(paths)} to {self.describe_remote()}", exc) from None
            progress.update(total)
        return TransferStats(transferred=int(count or 0))

    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        out = parse_pointer(pointer)
        return artifact_from_out(path, out) if out else None

    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        tracked = Path(path).parts[0]
        info = self.describe_pointer(tracked, pointer)
        if info is None:
            raise DVCError(f"{path} is not tracked at {rev}", fix="choose a version that contains it")
        if path != tracked:
            info = TrackedArtifact(path=path, digest="", size=0, nfiles=0, pointer=info.pointer)
        _quiet_dvc()
        from dvc.fs import DVCFileSystem

        with staged(Path(dest)) as target, Progress(f"download {path}", info.size, self.ctx.progress) as progress:
            try:
                fs = DVCFileSystem(url=str(self.path), rev=rev)
                is_dir = fs.isdir(path)
                expected = self._expected_hashes(fs, path, is_dir)
                fs.get(path, str(target), recursive=is_dir)
                progress.update(info.size)
            except CPVError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self.map_error(f"download {path} at {rev.removeprefix('refs/tags/')}", exc) from None
            try:
                self._verify(expected, target, is_dir)
            except DVCError as exc:
                self._evict(exc.bad_md5)  # type: ignore[attr-defined]
                raise
            size = tree_size(target)[0]
            info = TrackedArtifact(path=path, digest=info.digest, size=size, nfiles=len(expected), pointer=info.pointer)
        return info

    @staticmethod
    def _expected_hashes(fs: Any, path: str, is_dir: bool) -> dict[str, str]:
        """Relative file path -> md5, from the pointer / directory manifest."""
        if not is_dir:
            return {"": str(fs.info(path).get("md5", ""))}
        prefix = path.rstrip("/") + "/"
        return {p[len(prefix):]: str(fs.info(p).get("md5", "")) for p in fs.find(path)}

    def _verify(self, expected: dict[str, str], target: Path, is_dir: bool) -> None:
        """Every materialised file must have the hash the version recorded."""
        for rel, md5 in expected.items():
            local = target / rel if is_dir else target
            actual = file_md5(local) if local.is_file() else "missing"
            if actual != md5:
                error = DVCError(
                    f"downloaded file {local.name} is corrupt or truncated: expected md5 {md5}, got {actual} "
                    f"(object files/md5/{md5[:2]}/{md5[2:]} in {self.describe_remote()}); nothing was placed",
                    fix="the stored copy is damaged: re-upload that version from a machine that still has it",
                )
                error.bad_md5 = md5  # type: ignore[attr-defined]
                raise error

    def _cache_path(self, repo: Any, md5: str) -> Path:
        return Path(repo.cache.local.oid_to_path(md5))

    def _evict(self, md5: str) -> None:
        """Drop a corrupt object from the local cache so the next try fetches it again."""
        with self._repo() as repo:
            path = self._cache_path(repo, md5)
        if path.exists():
            path.chmod(0o600)
            path.unlink()

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        _quiet_dvc()
        from dvc.fs import DVCFileSystem

        try:
            fs = DVCFileSystem(url=str(self.path), rev=rev)
            return self._expected_hashes(fs, path, fs.isdir(path))
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(f"read the file list of {path}", exc) from None

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        _quiet_dvc()
        from dvc.fs import DVCFileSystem

        fs = DVCFileSystem(url=str(self.path), rev=rev)
        is_dir = fs.isdir(path)
        expected = self._expected_hashes(fs, path, is_dir)
        info = self.describe_pointer(Path(path).parts[0], pointer)
        if is_dir and info is not None:
            expected[".dir manifest"] = info.digest.removeprefix("md5:")
        problems: list[str] = []
        with self._repo() as repo:
            odb = None
            if remote:
                try:
                    odb = repo.cloud.get_remote_odb(REMOTE_NAME)
                except Exception as exc:  # noqa: BLE001
                    raise self.map_error("open the remote", exc) from None
            for rel, md5 in expected.items():
                name = f"{path}/{rel}" if is_dir and not rel.startswith(".dir") else path
                cached = self._cache_path(repo, md5)
                if not remote:
                    if not cached.exists():
                        problems.append(f"{name}: not in the local cache (md5 {md5})")
                    elif file_md5(cached) != md5.removesuffix(".dir") and not md5.endswith(".dir"):
                        problems.append(f"{name}: corrupt in the local cache ({cached})")
                    continue
                key = odb.oid_to_path(md5)
                try:
                    digest = hashlib.md5()
                    with odb.fs.open(key, "rb") as handle:
                        for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
                            digest.update(chunk)
                except FileNotFoundError:
                    problems.append(f"{name}: missing on the remote ({key})")
                    continue
                except Exception as exc:  # noqa: BLE001
                    raise self.map_error(f"read {key}", exc) from None
                if not md5.endswith(".dir") and digest.hexdigest() != md5:
                    problems.append(f"{name}: corrupt on the remote ({key}: md5 {digest.hexdigest()}, expected {md5})")
        return problems

    def checkout(self, paths: Sequence[str]) -> None:
        with self._repo() as repo:
            try:
                repo.pull(targets=self._abs(paths), remote=REMOTE_NAME, force=True)
            except Exception as exc:  # noqa: BLE001
                raise self.map_error(f"restore {', '.join(paths)}", exc) from None

    def status(self, paths: Sequence[str]) -> dict[str, str]:
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
                    raise DVCError(f"DVC could not read the status of {', '.join(existing)}: {exc}",
                                   fix="check that the files are readable and .dvc/ is intact (`dvc status -v` says more)") from None
            changed = {p for p in existing if any(p in str(k) for k in changes)}
            for p in existing:
                result[p] = "modified" if p in changed else "unchanged"
        return result

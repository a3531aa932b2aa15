"""The seed manager classes: ModelsCheckpointsManage, DataCheckpointsManage,
CombinedCheckpointsManage.

They validate input, hold the workspace lock and drive the backends chosen by
configuration (see :mod:`cpv_core.backends`); they never run git, DVC, boto3
or a subprocess themselves.

Order of effects, so that an interruption never publishes a version whose
data is not stored: content is hashed and uploaded first, the pointer commit
is pushed next, the version tag last.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .artifacts import CheckpointMetadata, DataArtifacts, ModelArtifacts, UploadResult
from .backends import PushRejected, TrackedArtifact, VersionRecord
from .config import CPVConfig
from .errors import (
    CheckpointNotFoundError,
    CPVError,
    GitError,
    RepositoryError,
    ValidationError,
    VersionExistsError,
    WorkspaceDirtyError,
)
from .metrics import METRICS_FILE, encode_record, latest_metrics, make_record, parse_log, validate_metrics
from .paths import atomic_path
from .versions import Version, next_version
from .workspace import SCAFFOLD, Workspace, readme_text

logger = logging.getLogger("cpv")

TAG_ATTEMPTS = 8


@dataclass(frozen=True)
class KindSpec:
    """What differs between model and data checkpoints."""

    kind: str
    is_dir: bool


MODEL = KindSpec("model", is_dir=False)
DATA = KindSpec("data", is_dir=True)


def _size_of(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{size} B"


def _check_source(spec: KindSpec, source: Path) -> None:
    """Raise :class:`ValidationError` unless ``source`` is a non-empty file (model) or directory (data)."""
    kind = spec.kind
    if not source.exists():
        raise ValidationError(f"{kind} path {str(source)!r} does not exist", fix=f"pass the path of the {kind} to upload")
    if spec.is_dir and not source.is_dir():
        raise ValidationError(f"data path {str(source)!r} is not a directory", fix="pass a directory (e.g. data/ with train/, validation/, test/)")
    if not spec.is_dir and not source.is_file():
        raise ValidationError(f"model path {str(source)!r} is not a file", fix="pass the model weights file")
    size, nfiles = _size_of(source)
    if nfiles == 0 or (not spec.is_dir and size == 0):
        raise ValidationError(f"{kind} path {str(source)!r} is empty", fix=f"write the {kind} before uploading it")


def _parse_tag_arg(tag: str | None) -> Version | None:
    return None if tag is None else Version.parse(tag)


class _Checkpoints:
    """Upload/tag/list/download/revert/metadata for one kind of checkpoint."""

    spec: KindSpec = MODEL

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        *,
        config: CPVConfig | None = None,
        verbose: bool = False,
        dry_run: bool = False,
        echo: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        self.verbose = verbose
        self.dry_run = dry_run
        self._echo = echo or self._default_echo
        self.ws = Workspace(
            team_name, model_name, repo_path, config, verbose=verbose,
            progress=bool(kwargs.get("progress", False)),
            lock_timeout=float(kwargs.get("lock_timeout", 120.0)),
        )

    # -- seed-compatible attributes -----------------------------------------------
    @property
    def team_name(self) -> str:
        return self.ws.team

    @property
    def model_name(self) -> str:
        return self.ws.model

    @property
    def repo_path(self) -> Path:
        return self.ws.path

    @property
    def target(self) -> str:
        """Workspace-relative path this manager versions (``model.bin`` / ``data``)."""
        return self.ws.file_for(self.spec.kind)

    # -- output ----------------------------------------------------------------------
    def _default_echo(self, line: str) -> None:
        if self.dry_run or self.verbose:
            print(line)
        else:
            logger.info(line)

    def _plan(self, lines: list[str]) -> list[str]:
        for line in lines:
            self._echo(f"[dry-run] {line}")
        return lines

    def _opts(self, kwargs: Mapping[str, Any]) -> tuple[bool, bool]:
        """Per-call ``dry_run`` / ``force`` (seed style ``**kwargs``)."""
        return bool(kwargs.get("dry_run", self.dry_run)), bool(kwargs.get("force", False))

    # -- init --------------------------------------------------------------------------
    def _init_workspace(self, dry_run: bool) -> bool:
        """Create the workspace and its remote, or clone an existing remote.

        Returns True when something was created. On failure, whatever this
        call created is removed again.
        """
        ws = self.ws
        if ws.is_initialized():
            logger.info("workspace %s already initialised", ws.path)
            return False
        if (ws.path / ".git").exists():
            raise RepositoryError(
                f"{ws.path} is already a git repository that cpv did not create",
                fix="choose another --repo-path (cpv manages one repository per team/model)",
            )
        if dry_run:
            self._plan([
                f"create workspace {ws.path}",
                f"ensure remote repository {ws.hosting.remote_url()} ({ws.backend_name('hosting')})",
                f"configure storage {ws.storage.describe_remote()} ({ws.backend_name('storage')})",
                "commit README.md, .gitignore, .gitattributes, metrics.log, .cpv/workspace.json and push",
            ])
            return False
        # resolve every backend before any I/O: an unknown name changes nothing
        ws.storage, ws.versioning, ws.hosting  # noqa: B018
        created_root = next((p for p in reversed([ws.path, *ws.path.parents]) if not p.exists()), None)
        before = set(os.listdir(ws.path)) if ws.path.exists() else set()
        try:
            url = ws.hosting.ensure_remote()
            if ws.versioning.remote_has_history(url):
                self._echo(f"cloning existing {ws.team}/{ws.model} from {url}")
                ws.versioning.clone(url)
                ws.__dict__.pop("meta", None)
                ws.storage.init()
            else:
                self._create_new(url)
        except BaseException:
            if created_root is not None:
                shutil.rmtree(created_root, ignore_errors=True)
            elif ws.path.exists():
                for name in set(os.listdir(ws.path)) - before:
                    victim = ws.path / name
                    shutil.rmtree(victim, ignore_errors=True) if victim.is_dir() else victim.unlink(missing_ok=True)
            raise
        return True

    def _create_new(self, url: str) -> None:
        ws = self.ws
        ws.versioning.init(url)
        meta = ws.new_meta()
        for rel, text in SCAFFOLD.items():
            dest = ws.path / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text)
        if not (ws.path / "README.md").exists():
            (ws.path / "README.md").write_text(readme_text(ws.team, ws.model))
        ws.write_meta(meta)
        ws.storage.init()
        files = ["README.md", *SCAFFOLD, ".cpv/workspace.json", *ws.storage.committed_files()]
        files = [f for f in files if (ws.path / f).exists()]
        ws.versioning.commit(files, f"Initialise {ws.team}/{ws.model} with cpv")
        ws.versioning.push_branch()
        self._echo(f"initialised {ws.team}/{ws.model} at {ws.path}")

    # -- upload ----------------------------------------------------------------------
    def _place_source(self, source: Path, dest: Path) -> None:
        """Copy a source outside the workspace into it, atomically."""
        if source.resolve() == dest.resolve():
            return
        if self.spec.is_dir:
            staging = dest.parent / f".{dest.name}.cpv-tmp"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(source, staging, symlinks=False)
            old = dest.parent / f".{dest.name}.cpv-old"
            shutil.rmtree(old, ignore_errors=True)
            if dest.exists():
                os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            with atomic_path(dest) as tmp:
                shutil.copyfile(source, tmp)

    def _upload(self, source_path: str | Path | None, metrics: Any, message: str | None, **kwargs: Any) -> UploadResult:
        dry_run, _ = self._opts(kwargs)
        clean_metrics = validate_metrics(metrics)
        ws = self.ws
        dest = ws.path / self.target
        source = Path(source_path).expanduser().resolve() if source_path else dest
        _check_source(self.spec, source)
        ws.require_initialized()
        size, nfiles = _size_of(source)
        if dry_run:
            plan = self._plan([
                f"copy {source} -> {dest}" if source != dest.resolve() else f"use {dest}",
                f"hash and store {self.target} ({_human(size)}, {nfiles} file{'s' if nfiles != 1 else ''})",
                f"upload to {ws.storage.describe_remote()}",
                f"append metrics {clean_metrics} to {METRICS_FILE}" if clean_metrics else f"append an upload record to {METRICS_FILE}",
                f"commit {ws.storage.pointer_path(self.target)} and {METRICS_FILE}, push to {ws.hosting.remote_url()}",
            ])
            return UploadResult(self.spec.kind, str(dest), None, "", size, nfiles, clean_metrics, changed=False, dry_run=True, plan=plan)
        with ws.lock():
            self._place_source(source, dest)
            (artifact,) = ws.storage.track([self.target])
            ws.storage.push([self.target])
            pointer = ws.storage.pointer_path(self.target)
            changed = bool(ws.versioning.changed_files([pointer])) or ws.versioning.read_file("HEAD", pointer) is None
            if not changed and not clean_metrics and not message:
                self._echo(f"{self.target} is unchanged since the last upload; nothing to commit")
                ws.versioning.push_branch()
                return UploadResult(self.spec.kind, str(dest), ws.versioning.head(), artifact.digest, artifact.size,
                                    artifact.nfiles, {}, changed=False)
            record = make_record(self.spec.kind, "upload", clean_metrics, message=message, digest=artifact.digest,
                                 size=artifact.size, nfiles=artifact.nfiles if self.spec.is_dir else None)
            self._append_metrics(record)
            files = [*ws.storage.commit_paths([self.target]), METRICS_FILE]
            commit = ws.versioning.commit(files, message or f"Upload {self.spec.kind} checkpoint {self.target} ({_human(artifact.size)})")
            ws.versioning.push_branch()
            self._echo(f"uploaded {self.target} ({_human(artifact.size)}) as {commit[:10]}")
            return UploadResult(self.spec.kind, str(dest), commit, artifact.digest, artifact.size, artifact.nfiles,
                                clean_metrics, changed=changed)

    def _append_metrics(self, record: Mapping[str, Any]) -> None:
        path = self.ws.path / METRICS_FILE
        existing = path.read_bytes() if path.exists() else b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        with atomic_path(path) as tmp:
            tmp.write_bytes(existing + encode_record(record))

    # -- versions ----------------------------------------------------------------------
    def _fetch(self, *, required: bool) -> bool:
        try:
            self.ws.versioning.fetch()
            return True
        except GitError as exc:
            if required:
                raise
            logger.warning("could not reach the remote (%s); showing local versions only", exc.message)
            return False

    def _records(self) -> list[VersionRecord]:
        return self.ws.versioning.list_versions(self.spec.kind)

    def _find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord:
        wanted = _parse_tag_arg(tag)
        self.ws.require_initialized()
        records = self._records()
        if fetch and (not records or (wanted and not any(r.version == str(wanted) for r in records))):
            self._fetch(required=False)
            records = self._records()
        if not records:
            raise CheckpointNotFoundError(
                f"{self.ws.team}/{self.ws.model} has no {self.spec.kind} versions yet",
                fix=f"upload and tag one first (`cpv {self.spec.kind} upload`, `cpv {self.spec.kind} tag`)",
            )
        if wanted is None:
            return records[-1]
        for record in records:
            if record.version == str(wanted):
                return record
        available = ", ".join(r.version for r in records[-10:])
        raise CheckpointNotFoundError(
            f"{self.spec.kind} version {wanted} does not exist for {self.ws.team}/{self.ws.model}",
            fix=f"choose one of: {available}",
        )

    def _pointer_info(self, rev: str) -> TrackedArtifact | None:
        pointer = self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(self.target))
        return self.ws.storage.describe_pointer(self.target, pointer) if pointer else None

    def _current_metrics(self, rev: str = "HEAD") -> dict[str, Any]:
        return latest_metrics(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind)

    def _require_clean_target(self, action: str, force: bool) -> dict[str, str]:
        status = self.ws.storage.status([self.target])
        dirty = {p: s for p, s in status.items() if s in {"modified", "untracked"}}
        changed = self.ws.versioning.changed_files([self.ws.storage.pointer_path(self.target), METRICS_FILE])
        if (dirty or changed) and not force:
            what = ", ".join([f"{p} ({s})" for p, s in dirty.items()] + changed)
            raise WorkspaceDirtyError(
                f"cannot {action}: uncommitted changes in {self.ws.path}: {what}",
                fix=f"upload them first (`cpv {self.spec.kind} upload`) or pass force=True / --force",
            )
        return dirty

    def _tag(self, version_tag: str | None, message: str | None, **kwargs: Any) -> str:
        dry_run, _ = self._opts(kwargs)
        explicit = _parse_tag_arg(version_tag)
        major = bool(kwargs.get("major", False))
        ws = self.ws
        ws.require_initialized()
        with ws.lock():
            pointer = ws.storage.pointer_path(self.target)
            info = self._pointer_info("HEAD")
            if info is None:
                raise CheckpointNotFoundError(
                    f"nothing to tag: no {self.spec.kind} has been uploaded to {ws.team}/{ws.model}",
                    fix=f"run `cpv {self.spec.kind} upload` first",
                )
            self._require_clean_target("tag", force=False)
            if not dry_run:  # a dry run writes nothing, not even fetched refs
                self._fetch(required=True)
            records = self._records()
            head = ws.versioning.head()
            if explicit is None:
                already = [r.version for r in records if r.commit == head]
                if already:
                    raise VersionExistsError(
                        f"the current {self.spec.kind} is already version {already[-1]}",
                        fix=f"upload a new checkpoint first, or pass an explicit version to tag it again",
                    )
            elif any(r.version == str(explicit) for r in records):
                raise VersionExistsError(
                    f"{self.spec.kind} version {explicit} already exists on the remote",
                    fix=f"choose another version; the next free one is {next_version(Version.parse(r.version) for r in records)}",
                )
            metadata = {
                "path": self.target, "digest": info.digest, "size": info.size, "nfiles": info.nfiles,
                "metrics": self._current_metrics(),
            }
            metadata.update(kwargs.get("extra_metadata") or {})
            text = message or ""
            if dry_run:
                version = explicit or next_version((Version.parse(r.version) for r in records), major=major)
                self._plan([f"create {self.spec.kind} version {version} at {head[:10] if head else '?'} and push it to "
                            f"{ws.hosting.remote_url()} (computed from local tags; if the remote has newer ones, the next free version is taken)"])
                return str(version)
            return str(self._create_and_publish(explicit, major, text, metadata))

    def _create_and_publish(self, explicit: Version | None, major: bool, message: str, metadata: Mapping[str, Any]) -> Version:
        """Create the tag and push it; on a lost race take the next version."""
        ws = self.ws
        for attempt in range(TAG_ATTEMPTS):
            records = self._records()
            version = explicit or next_version((Version.parse(r.version) for r in records), major=major)
            record = ws.versioning.create_version(self.spec.kind, version, message, metadata)
            try:
                ws.versioning.publish([record])
            except PushRejected as exc:
                ws.versioning.delete_local_version(self.spec.kind, version)
                if exc.reason != "exists":
                    raise GitError(f"the remote refused {self.spec.kind} version {version}: {exc.reason}",
                                   fix="check `cpv validate` and run the command again") from None
                if explicit is not None:
                    raise VersionExistsError(f"{self.spec.kind} version {version} was just created on the remote by someone else",
                                             fix="choose another version") from None
                logger.info("version %s was taken meanwhile; retrying with the next one", version)
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
                self._fetch(required=True)
                continue
            except BaseException:
                ws.versioning.delete_local_version(self.spec.kind, version)
                raise
            self._echo(f"tagged {self.spec.kind} {version}")
            return version
        raise GitError(f"could not allocate a {self.spec.kind} version after {TAG_ATTEMPTS} attempts (heavy contention)",
                       fix="run the command again")

    def _list(self) -> list[str]:
        self.ws.require_initialized()
        self._fetch(required=False)
        return [r.version for r in self._records()]

    # -- download ------------------------------------------------------------------------
    def _default_output(self, version: str) -> Path:
        return self.ws.config.config_dir / "downloads" / self.ws.team / self.ws.model / f"{self.spec.kind}-{version}"

    def _download(self, tag: str | None, output_dir: str | Path | None, sub_path: str | None = None, **kwargs: Any):
        dry_run, force = self._opts(kwargs)
        record = self._find(tag, fetch=not dry_run)
        out_dir = Path(output_dir).expanduser().resolve() if output_dir else self._default_output(record.version)
        source = self.target if not sub_path else f"{self.target}/{sub_path.strip('/')}"
        dest = out_dir / Path(source).name
        ws_target = (self.ws.path / self.target).resolve()
        if dest.resolve() == ws_target or ws_target in dest.resolve().parents:
            raise ValidationError(
                f"output directory {out_dir} would overwrite the workspace's {self.target}",
                fix="download elsewhere, or use revert to change the workspace",
            )
        if dry_run:
            self._plan([f"download {self.spec.kind} {record.version} ({source}) into {dest}"])
            return dest, record, None
        if dest.exists() and not force:
            info = self._pointer_info(record.ref)
            if not (dest.is_file() and info and not sub_path and self._same_file(dest, info)):
                raise WorkspaceDirtyError(f"{dest} already exists", fix="choose another output directory or pass force=True / --force")
        pointer = self.ws.versioning.read_file(record.ref, self.ws.storage.pointer_path(self.target))
        if pointer is None:
            raise CheckpointNotFoundError(f"{self.spec.kind} version {record.version} records no {self.target}",
                                          fix="choose another version")
        artifact = self.ws.storage.materialize(record.ref, source, pointer, dest)
        self._echo(f"downloaded {self.spec.kind} {record.version} to {dest}")
        return dest, record, artifact

    @staticmethod
    def _same_file(path: Path, info: TrackedArtifact) -> bool:
        return path.stat().st_size == info.size

    # -- revert --------------------------------------------------------------------------
    def _revert(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        dry_run, force = self._opts(kwargs)
        if tag is None:
            raise ValidationError("revert needs a version", fix="pass e.g. tag='v0.1'")
        record = self._find(tag, fetch=not dry_run)
        ws = self.ws
        with ws.lock():
            dirty = self._require_clean_target("revert", force)
            if dry_run:
                self._plan([f"restore {self.target} to {self.spec.kind} {record.version} ({record.commit[:10]})",
                            f"commit 'Revert {self.spec.kind} to {record.version}' and push"])
                return self._metadata_for(record)
            pointer = ws.storage.pointer_path(self.target)
            saved = None
            if dirty:
                # keep the overwritten content recoverable: it goes into the cache first
                (saved,) = ws.storage.track([self.target])
                logger.warning("saved uncommitted %s (%s) in the local cache before reverting", self.target, saved.digest)
            ws.versioning.restore(record.ref, [pointer])
            try:
                ws.storage.checkout([self.target])
            except BaseException:
                ws.versioning.restore("HEAD", [pointer])
                raise
            metrics = dict(record.metadata.get("metrics") or {})
            self._append_metrics(make_record(self.spec.kind, "revert", metrics, reverted_to=record.version,
                                             digest=record.metadata.get("digest"), saved_digest=saved.digest if saved else None))
            ws.versioning.commit([pointer, METRICS_FILE], f"Revert {self.spec.kind} to {record.version}")
            ws.versioning.push_branch()
            self._echo(f"reverted {self.target} to {record.version}")
            return self._metadata_for(record)

    # -- metadata --------------------------------------------------------------------------
    def _metadata_for(self, record: VersionRecord) -> CheckpointMetadata:
        meta = dict(record.metadata)
        return CheckpointMetadata(
            kind=self.spec.kind, version=record.version, commit=record.commit, author=record.author,
            date=record.date, message=record.message, metrics=dict(meta.get("metrics") or {}),
            size=int(meta.get("size") or 0), digest=str(meta.get("digest") or ""), path=str(meta.get("path") or self.target),
            lineage=dict(meta.get("lineage") or {}),
        )

    def _metadata(self, tag: str | None) -> CheckpointMetadata:
        self.ws.require_initialized()
        if tag is not None or self._records():
            return self._metadata_for(self._find(tag))
        # nothing tagged yet: describe the current commit
        info = self._pointer_info("HEAD")
        if info is None:
            raise CheckpointNotFoundError(f"no {self.spec.kind} uploaded to {self.ws.team}/{self.ws.model} yet",
                                          fix=f"run `cpv {self.spec.kind} upload` first")
        records = parse_log(self.ws.versioning.read_file("HEAD", METRICS_FILE))
        last = next((r for r in reversed(records) if r.get("kind") == self.spec.kind), {})
        return CheckpointMetadata(
            kind=self.spec.kind, version=None, commit=self.ws.versioning.head() or "", author="",
            date=str(last.get("timestamp", "")), message=str(last.get("message", "")),
            metrics=dict(last.get("metrics") or {}), size=info.size, digest=info.digest, path=self.target,
        )

    def list_checkpoints(self) -> list[CheckpointMetadata]:
        """Every version with its metadata, oldest first (after fetching the remote)."""
        self.ws.require_initialized()
        self._fetch(required=False)
        return [self._metadata_for(r) for r in self._records()]


class ModelsCheckpointsManage(_Checkpoints):
    """Version a model's weights and metrics (the seed API).

    :param team_name: team, e.g. ``"AI-Convo"``.
    :param model_name: model, e.g. ``"faster-whisper"``.
    :param repo_path: the local workspace; default ``{workspace_root}/{team}/{model}``.
    :param config: a :class:`CPVConfig` (default: loaded from ``CPV_HOME``).
    :param verbose: print each step.
    :param dry_run: print the plan and change nothing, locally or remotely.
    """

    spec = MODEL

    def import_model_init(self, data_path: str | Path | None = None, **kwargs: Any) -> Path:
        """Create the model workspace and its remote repository, or clone the
        existing remote (a second team member's first step). With ``data_path``
        the directory is uploaded as the first data checkpoint.

        :return: the workspace path.
        """
        dry_run, _ = self._opts(kwargs)
        if data_path is not None:
            _check_source(DATA, Path(data_path).expanduser())
        self._init_workspace(dry_run)
        if data_path is not None:
            data = DataCheckpointsManage(self.ws.team, self.ws.model, self.ws.path, config=self.ws.config,
                                         verbose=self.verbose, dry_run=dry_run, echo=self._echo)
            data.upload_data_checkpoint(data_path, message="Initial training data")
        return self.ws.path

    def upload_model_checkpoint(
        self, model_path: str | Path | None = None, metrics: Mapping[str, Any] | None = None,
        message: str | None = None, **kwargs: Any,
    ) -> UploadResult:
        """Store the model file (default: the workspace's ``model.bin``), append
        ``metrics`` to ``metrics.log``, commit the pointer and push."""
        return self._upload(model_path, metrics, message, **kwargs)

    def tag_model_checkpoint(self, version_tag: str | None = None, message: str | None = None, **kwargs: Any) -> str:
        """Give the current model a version: ``version_tag`` (e.g. ``"v2.0"``) or
        the next minor (``major=True``: next major). Returns ``"vX.Y"``."""
        return self._tag(version_tag, message, **kwargs)

    def read_checkpoint_tag(self, **kwargs: Any) -> list[str]:
        """All model versions, sorted; includes versions pushed by others
        (offline: local versions, with a warning)."""
        return self._list()

    def download_model_checkpoint(self, tag: str | None = None, output_dir: str | Path | None = None, **kwargs: Any) -> ModelArtifacts:
        """Materialise version ``tag`` (default: latest) in ``output_dir``
        without touching the workspace."""
        dest, record, artifact = self._download(tag, output_dir, **kwargs)
        meta = self._metadata_for(record)
        size = artifact.size if artifact else meta.size
        return ModelArtifacts(model_path=str(dest), metrics=meta.metrics, tag=record.version,
                              size_mb=round(size / (1024 * 1024), 3), commit=record.commit, digest=meta.digest)

    def revert_model_checkpoint(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the workspace's model to version ``tag`` as a new commit
        (history kept). Refuses on uncommitted changes unless ``force=True``."""
        return self._revert(tag, **kwargs)

    def get_model_metadata(self, tag: str | None = None, **kwargs: Any) -> CheckpointMetadata:
        """Version, commit, author, date, message, metrics, size and hash of
        ``tag`` (default: the latest version)."""
        return self._metadata(tag)


class DataCheckpointsManage(_Checkpoints):
    """Version a model's training data directory (the seed API)."""

    spec = DATA

    def import_data_init(self, data_path: str | Path | None = None, **kwargs: Any) -> Path:
        """Initialise the workspace if needed and upload ``data_path`` as the first data checkpoint."""
        dry_run, _ = self._opts(kwargs)
        if data_path is not None:
            _check_source(DATA, Path(data_path).expanduser())
        self._init_workspace(dry_run)
        if data_path is not None:
            self.upload_data_checkpoint(data_path, message="Initial training data", dry_run=dry_run)
        return self.ws.path

    def upload_data_checkpoint(self, data_path: str | Path | None = None, message: str | None = None, **kwargs: Any) -> UploadResult:
        """Store the data directory (default: the workspace's ``data/``), commit its pointer and push."""
        return self._upload(data_path, kwargs.pop("metrics", None), message, **kwargs)

    def tag_data_checkpoint(self, version_tag: str | None = None, message: str | None = None, **kwargs: Any) -> str:
        """Give the current data a version in the data sequence; returns ``"vX.Y"``."""
        return self._tag(version_tag, message, **kwargs)

    def read_checkpoint_tag(self, **kwargs: Any) -> list[str]:
        """All data versions, sorted."""
        return self._list()

    def download_data_checkpoint(self, tag: str | None = None, output_dir: str | Path | None = None, **kwargs: Any) -> DataArtifacts:
        """Materialise data version ``tag`` (default: latest) in ``output_dir``;
        ``sub_path="test"`` fetches only that part."""
        dest, record, artifact = self._download(tag, output_dir, kwargs.pop("sub_path", None), **kwargs)
        meta = self._metadata_for(record)
        size, nfiles = _size_of(dest) if dest.exists() else (meta.size, 0)
        return DataArtifacts(data_path=str(dest), version=record.version, tag=record.version, file_count=nfiles,
                             size_mb=round(size / (1024 * 1024), 3), commit=record.commit, digest=meta.digest)

    def revert_data_checkpoint(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        """Return the workspace's data to version ``tag`` as a new commit."""
        return self._revert(tag, **kwargs)

    def get_data_metadata(self, tag: str | None = None, **kwargs: Any) -> CheckpointMetadata:
        """Metadata of data version ``tag`` (default: latest)."""
        return self._metadata(tag)


class CombinedCheckpointsManage:
    """Tag and revert model and data together (completed in the data/combined issue)."""

    def __init__(self, team_name: str, model_name: str, repo_path: str | Path | None = None, **kwargs: Any) -> None:
        self.models = ModelsCheckpointsManage(team_name, model_name, repo_path, **kwargs)
        self.data = DataCheckpointsManage(team_name, model_name, repo_path, **kwargs)

    def tag_model_and_data(self, version_tag: str | None = None, model_message: str | None = None,
                           data_message: str | None = None, **kwargs: Any) -> tuple[str, str]:
        raise CPVError("combined tagging is not available yet", fix="tag model and data separately")

"""What the manager classes share: one kind of checkpoint (model or data)
through its whole life - init, upload, tag, list, download, revert,
metadata, diff, verify - and the two multi-ref operations (atomic version
allocation, reverting several targets in one commit).

The managers validate input, hold the workspace lock and drive the backends
chosen by configuration (see :mod:`cpv_core.backends`); they never run git,
DVC, boto3 or a subprocess themselves.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .artifacts import CheckpointMetadata, UploadResult
from .backends import PushRejected, TrackedArtifact, VersionRecord
from .config import CPVConfig
from .errors import (
    CheckpointNotFoundError,
    GitError,
    RepositoryError,
    ValidationError,
    VersionExistsError,
    WorkspaceDirtyError,
)
from .faults import crash_point
from .metrics import METRICS_FILE, encode_record, latest_metrics, make_record, parse_log, validate_metrics
from .metrics import compare as compare_metrics
from .paths import atomic_path, file_md5, make_private_dirs
from .progress import human_bytes
from .records import validate_message
from .sources import scan_directory, scan_file
from .trust import check_relpath, select_sub_path, visible
from .versions import Version, next_version
from .workspace import SCAFFOLD, Workspace, readme_text

logger = logging.getLogger("cpv")

TAG_ATTEMPTS = 8
_M = TypeVar("_M", bound="CheckpointManager")


@dataclass(frozen=True)
class KindSpec:
    """What differs between model and data checkpoints."""

    kind: str
    is_dir: bool


MODEL = KindSpec("model", is_dir=False)
DATA = KindSpec("data", is_dir=True)


def _check_source(spec: KindSpec, source: Path) -> tuple[int, int]:
    """Size and file count of ``source``; :class:`ValidationError` unless it is a
    non-empty regular file (model) or a directory cpv can store faithfully (data)."""
    kind = spec.kind
    if not source.exists():
        raise ValidationError(f"{kind} path {str(source)!r} does not exist", fix=f"pass the path of the {kind} to upload")
    if spec.is_dir and not source.is_dir():
        raise ValidationError(
            f"data path {str(source)!r} is not a directory", fix="pass a directory (e.g. data/ with train/, validation/, test/)"
        )
    if not spec.is_dir and source.is_dir():
        raise ValidationError(f"model path {str(source)!r} is not a file", fix="pass the model weights file")
    size, nfiles = scan_directory(source) if spec.is_dir else scan_file(source, kind)
    if nfiles == 0 or (not spec.is_dir and size == 0):
        raise ValidationError(f"{kind} path {str(source)!r} is empty", fix=f"write the {kind} before uploading it")
    return size, nfiles


#: keyword arguments every seed method accepts (the seeds pass them to each call)
SEED_KWARGS = frozenset({"verbose", "dry_run", "force"})


def check_kwargs(method: str, kwargs: Mapping[str, Any], *extra: str) -> None:
    """Raise TypeError, as Python does, for a keyword argument ``method`` does not take
    (a misspelt ``dryrun=True`` must not be silently ignored)."""
    unknown = sorted(set(kwargs) - SEED_KWARGS - set(extra))
    if unknown:
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}")


def _parse_tag_arg(tag: str | None) -> Version | None:
    return None if tag is None else Version.parse(tag)


def fetch_versions(ws: Workspace, *, required: bool) -> None:
    """Fetch the remote's branch and tags; offline, warn (or raise when ``required``)."""
    try:
        ws.versioning.fetch()
    except GitError as exc:
        if required:
            raise
        logger.warning("could not reach the remote (%s); showing local versions only", exc.message)


def find_version(ws: Workspace, kind: str, tag: str | None, *, fetch: bool, create_hint: str) -> VersionRecord:
    """Version ``tag`` of ``kind`` (default: the latest), fetching first when it
    is not known locally; :class:`CheckpointNotFoundError` listing what exists."""
    wanted = _parse_tag_arg(tag)
    ws.require_initialized()
    ws.repair()
    records = ws.versioning.list_versions(kind)
    if fetch and (not records or (wanted and not any(r.version == str(wanted) for r in records))):
        fetch_versions(ws, required=False)
        records = ws.versioning.list_versions(kind)
    if not records:
        raise CheckpointNotFoundError(f"{ws.team}/{ws.model} has no {kind} versions yet", fix=create_hint)
    if wanted is None:
        return records[-1]
    for record in records:
        if record.version == str(wanted):
            return record
    raise CheckpointNotFoundError(
        f"{kind} version {wanted} does not exist for {ws.team}/{ws.model}",
        fix=f"choose one of: {', '.join(r.version for r in records[-10:])}",
    )


class CheckpointManager:
    """Upload/tag/list/download/revert/metadata for one kind of checkpoint
    (the base of :class:`ModelsCheckpointsManage` and :class:`DataCheckpointsManage`)."""

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
        check_kwargs(type(self).__name__, kwargs, "progress", "lock_timeout", "workspace")
        self.verbose = verbose
        self.dry_run = dry_run
        self.echo = echo or self._default_echo
        shared = kwargs.get("workspace")
        self.ws = (
            shared
            if isinstance(shared, Workspace)
            else Workspace(
                team_name,
                model_name,
                repo_path,
                config,
                verbose=verbose,
                progress=bool(kwargs.get("progress", False)),
                lock_timeout=kwargs.get("lock_timeout"),
            )
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

    def sibling(self, cls: type[_M]) -> _M:
        """A manager of another kind over the same workspace (same lock, same backends)."""
        return cls(self.ws.team, self.ws.model, self.ws.path, verbose=self.verbose, dry_run=self.dry_run, echo=self.echo, workspace=self.ws)

    # -- output ----------------------------------------------------------------------
    def _default_echo(self, line: str) -> None:
        if self.dry_run or self.verbose:
            print(line)
        else:
            logger.info(line)

    def plan(self, lines: list[str]) -> list[str]:
        for line in lines:
            self.echo(f"[dry-run] {line}")
        return lines

    def _check_repo_path(self, repo_path: str | Path | None) -> None:
        """A ``repo_path`` passed again to a seed method (the seeds do) must be this workspace."""
        if repo_path and Path(repo_path).expanduser().resolve() != self.ws.path:
            raise ValidationError(
                f"repo_path {str(repo_path)!r} is not this manager's workspace {self.ws.path}",
                fix="pass repo_path to the constructor only, or create another manager",
            )

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
        if ws.versioning.exists():
            raise RepositoryError(
                f"{ws.path} is already a git repository that cpv did not create",
                fix="choose another --repo-path (cpv manages one repository per team/model)",
            )
        if dry_run:
            self.plan(
                [
                    f"create workspace {ws.path}",
                    f"ensure remote repository {ws.hosting.remote_url()} ({ws.backend_name('hosting')})",
                    f"configure storage {ws.storage.describe_remote()} ({ws.backend_name('storage')})",
                    "commit README.md, .gitignore, .gitattributes, metrics.log, .cpv/workspace.json and push",
                ]
            )
            return False
        # resolve every backend before any I/O: an unknown name changes nothing
        ws.storage, ws.versioning, ws.hosting  # noqa: B018
        created_root = next((p for p in reversed([ws.path, *ws.path.parents]) if not p.exists()), None)
        make_private_dirs(ws.config.config_dir)
        before = set(os.listdir(ws.path)) if ws.path.exists() else set()
        try:
            url = ws.hosting.ensure_remote()
            if ws.versioning.remote_has_history(url):
                self.echo(f"cloning existing {ws.team}/{ws.model} from {url}")
                ws.versioning.clone(url)
                ws.__dict__.pop("meta", None)
                ws.check_identity()  # another team/model behind the same repository name is refused
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
        self.echo(f"initialised {ws.team}/{ws.model} at {ws.path}")

    # -- upload ----------------------------------------------------------------------
    def _place_source(self, source: Path, dest: Path) -> None:
        """Copy a source outside the workspace into it, atomically."""
        if source.resolve() == dest.resolve():
            return
        if self.spec.is_dir:
            # staged in the private state directory (same file system), then
            # swapped in with two renames; Workspace.recover completes a swap
            # a kill interrupted
            staging = self.ws.staging_path("new", self.target)
            old = self.ws.staging_path("old", self.target)
            for leftover in (staging, old):
                shutil.rmtree(leftover, ignore_errors=True)
            staging.parent.mkdir(parents=True, exist_ok=True)
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, staging, symlinks=False)
            if dest.exists() or dest.is_symlink():
                os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            with atomic_path(dest) as tmp:
                shutil.copyfile(source, tmp)

    def upload(self, source_path: str | Path | None, metrics: Any, message: str | None, **kwargs: Any) -> UploadResult:
        dry_run, _ = self._opts(kwargs)
        clean_metrics = validate_metrics(metrics)
        message = validate_message(message)
        ws = self.ws
        dest = ws.target_path(self.spec.kind)
        source = Path(source_path).expanduser().resolve() if source_path else dest
        if dry_run or not ws.is_initialized():
            size, nfiles = _check_source(self.spec, source)
        ws.require_initialized()
        if dry_run:
            plan = self.plan(
                [
                    f"copy {source} -> {dest}" if source != dest.resolve() else f"use {dest}",
                    f"hash and store {self.target} ({human_bytes(size)}, {nfiles} file{'s' if nfiles != 1 else ''})",
                    f"upload to {ws.storage.describe_remote()}",
                    f"append metrics {clean_metrics} to {METRICS_FILE}" if clean_metrics else f"append an upload record to {METRICS_FILE}",
                    f"commit {ws.storage.pointer_path(self.target)} and {METRICS_FILE}, push to {ws.hosting.remote_url()}",
                ]
            )
            return UploadResult(
                kind=self.spec.kind,
                path=str(dest),
                commit=None,
                digest="",
                size=size,
                nfiles=nfiles,
                metrics=clean_metrics,
                changed=False,
                dry_run=True,
                plan=plan,
            )
        with ws.lock():  # recovers what a killed run left, so check the source after it
            _, expected_files = _check_source(self.spec, source)
            self._check_not_stale(force=bool(kwargs.get("force", False)))
            self._place_source(source, dest)
            crash_point("upload.placed")
            (artifact,) = ws.storage.track([self.target])
            if artifact.nfiles != expected_files:
                self._undo_track()
                raise ValidationError(
                    f"{self.target} has {expected_files} files but the stored version would hold {artifact.nfiles}; nothing was committed",
                    fix="remove ignore files (.dvcignore) and nested repositories from the directory, then upload again",
                )
            crash_point("upload.tracked")
            ws.storage.push([self.target])
            crash_point("upload.stored")
            pointer = ws.storage.pointer_path(self.target)
            changed = bool(ws.versioning.changed_files([pointer])) or ws.versioning.read_file("HEAD", pointer) is None
            if not changed and not clean_metrics and not message:
                self.echo(f"{self.target} is unchanged since the last upload; nothing to commit")
                ws.versioning.push_branch()
                ws.set_content_base(self.target, artifact.digest)
                return UploadResult(
                    kind=self.spec.kind,
                    path=str(dest),
                    commit=ws.versioning.head(),
                    digest=artifact.digest,
                    size=artifact.size,
                    nfiles=artifact.nfiles,
                    metrics={},
                    changed=False,
                )
            record = make_record(
                self.spec.kind,
                "upload",
                clean_metrics,
                message=message,
                digest=artifact.digest,
                size=artifact.size,
                nfiles=artifact.nfiles if self.spec.is_dir else None,
            )
            before, base_before = ws.versioning.head(), ws.content_base(self.target).get("digest")
            self.append_metrics(record)
            files = [*ws.storage.commit_paths([self.target]), METRICS_FILE]
            # the base moves with the commit; a kill between the two is told apart from a
            # teammate's change by _check_not_stale (the content matches its pointer)
            ws.set_content_base(self.target, artifact.digest)
            crash_point("upload.base-recorded")
            try:
                commit = ws.versioning.commit(
                    files, message or f"Upload {self.spec.kind} checkpoint {self.target} ({human_bytes(artifact.size)})"
                )
                crash_point("upload.committed")
                ws.versioning.push_branch()
            except BaseException:
                # a failed upload leaves the workspace as it was: the commit is undone
                # (the bytes stay stored; running the command again is cheap)
                if before is not None and ws.versioning.head() != before:
                    ws.versioning.undo_commit(before, files)
                if base_before:
                    ws.set_content_base(self.target, base_before)
                raise
            self.echo(f"uploaded {self.target} ({human_bytes(artifact.size)}) as {commit[:10]}")
            return UploadResult(
                kind=self.spec.kind,
                path=str(dest),
                commit=commit,
                digest=artifact.digest,
                size=artifact.size,
                nfiles=artifact.nfiles,
                metrics=clean_metrics,
                changed=changed,
            )

    def _check_not_stale(self, *, force: bool) -> None:
        """Refuse to upload content that is older than what the branch now holds.

        A rebase can move this target's pointer to a teammate's upload while
        the content here stays what it was; uploading it would silently undo
        theirs (a lost update). The recorded base tells.
        """
        base = self.ws.content_base(self.target).get("digest")
        head = self.pointer_info("HEAD")
        if force or not base or head is None or base == head.digest:
            return
        if self.ws.storage.status([self.target]).get(self.target) == "unchanged":
            return  # the content is what the pointer names: uploading it undoes nothing (e.g. after a kill)
        pointer = self.ws.storage.pointer_path(self.target)
        raise WorkspaceDirtyError(
            f"{pointer} changed upstream (someone uploaded {head.digest}); your {self.target} is still based on "
            f"{base}: uploading it would undo their change",
            fix=f"bring theirs with `cpv pull` (move your own changes away first), or replace it with yours: "
            f"`cpv {self.spec.kind} upload --force` / force=True",
        )

    def pull(self, **kwargs: Any) -> list[str]:
        """Bring the workspace up to the remote: the branch, then the content of
        every target whose pointer moved (verified). Refuses over content that
        changed since it was last uploaded, reverted or pulled. Returns the
        targets that were updated."""
        return pull_workspace(self.ws, self.echo)

    def _undo_track(self) -> None:
        """Put the pointer back as HEAD has it (or remove it when HEAD has none)."""
        pointer = self.ws.storage.pointer_path(self.target)
        if self.ws.versioning.read_file("HEAD", pointer) is not None:
            self.ws.versioning.restore("HEAD", [pointer])
        else:
            (self.ws.path / pointer).unlink(missing_ok=True)

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        path = self.ws.path / METRICS_FILE
        existing = path.read_bytes() if path.exists() else b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        with atomic_path(path) as tmp:
            tmp.write_bytes(existing + encode_record(record))

    # -- versions ----------------------------------------------------------------------
    def _fetch(self, *, required: bool) -> None:
        fetch_versions(self.ws, required=required)

    def records(self) -> list[VersionRecord]:
        return self.ws.versioning.list_versions(self.spec.kind)

    def find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord:
        return find_version(
            self.ws,
            self.spec.kind,
            tag,
            fetch=fetch,
            create_hint=f"upload and tag one first (`cpv {self.spec.kind} upload`, `cpv {self.spec.kind} tag`)",
        )

    def _pointer(self, rev: str) -> bytes | None:
        """The pointer file of this manager's target at ``rev`` (no checkout)."""
        return self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(self.target))

    def pointer_info(self, rev: str) -> TrackedArtifact | None:
        pointer = self._pointer(rev)
        return self.ws.storage.describe_pointer(self.target, pointer) if pointer else None

    def _current_metrics(self, rev: str = "HEAD") -> dict[str, Any]:
        return latest_metrics(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind)

    def require_clean_target(self, action: str, force: bool) -> dict[str, str]:
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

    def tag_metadata(self, info: TrackedArtifact) -> dict[str, Any]:
        """What a version of this kind records about the current commit."""
        return {
            "path": self.target,
            "digest": info.digest,
            "size": info.size,
            "nfiles": info.nfiles,
            "metrics": self._current_metrics(),
            "lineage": self._lineage(),
        }

    def _lineage(self) -> dict[str, Any]:
        return {}

    def check_taggable(self) -> TrackedArtifact:
        info = self.pointer_info("HEAD")
        if info is None:
            raise CheckpointNotFoundError(
                f"nothing to tag: no {self.spec.kind} has been uploaded to {self.ws.team}/{self.ws.model}",
                fix=f"run `cpv {self.spec.kind} upload` first",
            )
        self.require_clean_target("tag", force=False)
        return info

    def tag(self, version_tag: str | None, message: str | None, **kwargs: Any) -> str:
        dry_run, _ = self._opts(kwargs)
        explicit = _parse_tag_arg(version_tag)
        message = validate_message(message)
        ws = self.ws
        ws.require_initialized()
        with ws.lock():
            info = self.check_taggable()
            if not dry_run:  # a dry run writes nothing, not even fetched refs
                self._fetch(required=True)
            head = ws.versioning.head()
            already = [r.version for r in self.records() if r.commit == head]
            if explicit is None and already:
                raise VersionExistsError(
                    f"the current {self.spec.kind} is already version {already[-1]}",
                    fix="upload a new checkpoint first, or pass an explicit version to tag it again",
                )
            metadata = self.tag_metadata(info)

            def build(versions: Mapping[str, Version]) -> dict[str, tuple[str, Mapping[str, Any]]]:
                return {self.spec.kind: (message or "", metadata)}

            versions = allocate_and_publish(
                ws, [self.spec.kind], explicit, bool(kwargs.get("major")), build, dry_run=dry_run, plan=self.plan, echo=self.echo
            )
            return str(versions[self.spec.kind])

    def _list(self) -> list[str]:
        self.ws.require_initialized()
        self.ws.repair()
        self._fetch(required=False)
        return [r.version for r in self.records()]

    # -- download ------------------------------------------------------------------------
    def _default_output(self, version: str) -> Path:
        return self.ws.config.config_dir / "downloads" / self.ws.team / self.ws.model / f"{self.spec.kind}-{version}"

    def _download(
        self, tag: str | None, output_dir: str | Path | None, sub_path: str | None = None, **kwargs: Any
    ) -> tuple[Path, VersionRecord, TrackedArtifact | None]:
        dry_run, force = self._opts(kwargs)
        record = self.find(tag, fetch=not dry_run)
        out_dir = Path(output_dir).expanduser().resolve() if output_dir else self._default_output(record.version)
        source = self.target
        if sub_path:
            source = f"{self.target}/{self._check_sub_path(record, sub_path)}"
        dest = out_dir / Path(source).name
        ws_target = (self.ws.path / self.target).resolve()
        if dest.resolve() == ws_target or ws_target in dest.resolve().parents:
            raise ValidationError(
                f"output directory {out_dir} would overwrite the workspace's {self.target}",
                fix="download elsewhere, or use revert to change the workspace",
            )
        if dry_run:
            self.plan([f"download {self.spec.kind} {record.version} ({source}) into {dest}"])
            return dest, record, None
        if dest.exists() and not force:
            info = self.pointer_info(record.ref)
            if not (dest.is_file() and info and not sub_path and self._same_file(dest, info)):
                raise WorkspaceDirtyError(f"{dest} already exists", fix="choose another output directory or pass force=True / --force")
        pointer = self._pointer(record.ref)
        if pointer is None:
            raise CheckpointNotFoundError(
                f"{self.spec.kind} version {record.version} records no {self.target}", fix="choose another version"
            )
        artifact = self.ws.storage.materialize(record.ref, source, pointer, dest)
        self.echo(f"downloaded {self.spec.kind} {record.version} to {dest}")
        return dest, record, artifact

    def _check_sub_path(self, record: VersionRecord, sub_path: str) -> str:
        """``sub_path`` if it names an entry of ``record``'s manifest; else exit 2 listing the valid ones."""
        sub = check_relpath(str(sub_path).strip("/") or str(sub_path), "--sub-path", "sub-path")
        pointer = self._pointer(record.ref)
        if pointer is None:
            raise CheckpointNotFoundError(
                f"{self.spec.kind} version {record.version} records no {self.target}", fix="choose another version"
            )
        files = self.ws.storage.manifest(record.ref, self.target, pointer)
        if "" in files:
            raise ValidationError(
                f"{self.target} of {self.spec.kind} {record.version} is a single file: it has no sub-path {visible(sub)}",
                fix="download it without --sub-path",
            )
        select_sub_path(files, sub, f"{self.spec.kind} {record.version}")
        return sub

    @staticmethod
    def _same_file(path: Path, info: TrackedArtifact) -> bool:
        """Whether ``path`` already holds exactly that version (then re-downloading is harmless)."""
        algorithm, _, expected = info.digest.partition(":")
        if algorithm != "md5" or path.stat().st_size != info.size:
            return False  # a digest this check cannot compute: treat as different (the caller asks for --force)
        return file_md5(path) == expected

    # -- revert --------------------------------------------------------------------------
    def revert(self, tag: str, **kwargs: Any) -> CheckpointMetadata:
        dry_run, force = self._opts(kwargs)
        if tag is None:
            raise ValidationError("revert needs a version", fix="pass e.g. tag='v0.1'")
        record = self.find(tag, fetch=not dry_run)
        with self.ws.lock():
            revert_targets(self.ws, [(self, record)], f"Revert {self.spec.kind} to {record.version}", force=force, dry_run=dry_run)
        return self.metadata_for(record)

    def diff(self, version_a: str, version_b: str) -> dict[str, Any]:
        """Compare two versions: metrics side by side with deltas, content
        hash and size change, and (for directories) files added, removed and
        changed. ``b - a`` throughout."""
        rec_a, rec_b = self.find(version_a), self.find(version_b)
        meta_a, meta_b = self.metadata_for(rec_a), self.metadata_for(rec_b)
        files: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        if self.spec.is_dir:
            manifests = []
            for rec in (rec_a, rec_b):
                pointer = self._pointer(rec.ref)
                manifests.append(self.ws.storage.manifest(rec.ref, self.target, pointer) if pointer else {})
            a, b = manifests
            files = {
                "added": sorted(set(b) - set(a)),
                "removed": sorted(set(a) - set(b)),
                "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k]),
            }
        return {
            "kind": self.spec.kind,
            "a": meta_a.version,
            "b": meta_b.version,
            "metrics": compare_metrics(meta_a.metrics, meta_b.metrics),
            "digest": {"a": meta_a.digest, "b": meta_b.digest, "changed": meta_a.digest != meta_b.digest},
            "size": {"a": meta_a.size, "b": meta_b.size, "delta": meta_b.size - meta_a.size},
            "files": files,
        }

    def verify(self, tag: str | None = None, *, remote: bool = False) -> list[str]:
        """Check the stored copy of version ``tag`` (default: latest), file by
        file: the local cache, or the remote store with ``remote=True``.
        Returns the problems found (empty: intact)."""
        record = self.find(tag)
        pointer = self._pointer(record.ref)
        if pointer is None:
            return [f"{self.spec.kind} {record.version}: no pointer file for {self.target}"]
        return self.ws.storage.verify(record.ref, self.target, pointer, remote=remote)

    # -- metadata --------------------------------------------------------------------------
    def metadata_for(self, record: VersionRecord) -> CheckpointMetadata:
        meta = dict(record.metadata)
        return CheckpointMetadata(
            kind=self.spec.kind,
            version=record.version,
            commit=record.commit,
            author=record.author,
            date=record.date,
            message=record.message,
            metrics=dict(meta.get("metrics") or {}),
            size=int(meta.get("size") or 0),
            digest=str(meta.get("digest") or ""),
            path=str(meta.get("path") or self.target),
            lineage=dict(meta.get("lineage") or {}),
        )

    def metadata(self, tag: str | None) -> CheckpointMetadata:
        self.ws.require_initialized()
        if tag is not None or self.records():
            return self.metadata_for(self.find(tag))
        # nothing tagged yet: describe the current commit
        info = self.pointer_info("HEAD")
        if info is None:
            raise CheckpointNotFoundError(
                f"no {self.spec.kind} uploaded to {self.ws.team}/{self.ws.model} yet", fix=f"run `cpv {self.spec.kind} upload` first"
            )
        records = parse_log(self.ws.versioning.read_file("HEAD", METRICS_FILE))
        last: dict[str, Any] = next((r for r in reversed(records) if r.get("kind") == self.spec.kind), {})
        return CheckpointMetadata(
            kind=self.spec.kind,
            version=None,
            commit=self.ws.versioning.head() or "",
            author="",
            date=str(last.get("timestamp", "")),
            message=str(last.get("message", "")),
            metrics=dict(last.get("metrics") or {}),
            size=info.size,
            digest=info.digest,
            path=self.target,
        )

    def list_checkpoints(self) -> list[CheckpointMetadata]:
        """Every version with its metadata, oldest first (after fetching the remote)."""
        self.ws.require_initialized()
        self.ws.repair()
        self._fetch(required=False)
        return [self.metadata_for(r) for r in self.records()]


def allocate_and_publish(
    ws: Workspace,
    kinds: list[str],
    explicit: Version | None,
    major: bool,
    build: Callable[[Mapping[str, Version]], dict[str, tuple[str, Mapping[str, Any]]]],
    *,
    dry_run: bool,
    plan: Callable[[list[str]], list[str]],
    echo: Callable[[str], None],
    with_branch: bool = False,
) -> dict[str, Version]:
    """Create one version per kind at HEAD and publish them in one atomic push.

    Auto-increment takes each kind's next version; when the remote rejects a
    tag because someone else just took it, every local tag of this attempt is
    deleted, the tags are fetched again and the next versions are tried
    (bounded, with jitter). An explicit version that exists is an error; cpv
    never forces a tag.
    """
    for attempt in range(TAG_ATTEMPTS):
        existing = {k: ws.versioning.list_versions(k) for k in kinds}
        if explicit is not None:
            taken = [f"{k} {explicit}" for k in kinds if any(r.version == str(explicit) for r in existing[k])]
            if taken:
                free = {k: str(next_version(Version.parse(r.version) for r in existing[k])) for k in kinds}
                raise VersionExistsError(
                    f"version already exists on the remote: {', '.join(taken)}",
                    fix="choose another version; next free: " + ", ".join(f"{k} {v}" for k, v in free.items()),
                )
        versions = {k: explicit or next_version((Version.parse(r.version) for r in existing[k]), major=major) for k in kinds}
        if dry_run:
            head = ws.versioning.head() or "?"
            plan(
                [
                    f"create {k} version {v} at {head[:10]} and push it to {ws.hosting.remote_url()} in one atomic push "
                    "(computed from local tags; if the remote has newer ones, the next free version is taken)"
                    for k, v in versions.items()
                ]
            )
            return versions
        created: list[tuple[str, Version]] = []
        try:
            records = []
            for kind, (message, metadata) in build(versions).items():
                records.append(ws.versioning.create_version(kind, versions[kind], message, metadata))
                created.append((kind, versions[kind]))
            crash_point("tag.created")
            ws.versioning.publish(records, with_branch=with_branch)
            crash_point("tag.published")
        except PushRejected as exc:
            for kind, version in created:
                ws.versioning.delete_local_version(kind, version)
            if exc.reason not in {"exists", "race", "non-fast-forward"}:
                raise GitError(
                    f"the remote refused {', '.join(exc.rejected)}: {exc.reason}; nothing was published",
                    fix="run the command again (cpv fetches and rebases first)",
                ) from None
            if exc.reason == "exists" and explicit is not None:
                raise VersionExistsError(
                    f"{', '.join(exc.rejected)} was just created on the remote by someone else", fix="choose another version"
                ) from None
            logger.info("%s: %s; fetching and trying again", ", ".join(exc.rejected), exc.reason)
            time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            if exc.reason == "non-fast-forward":
                ws.versioning.push_branch()  # rebase on the moved branch; the tags are recreated at the new HEAD
            ws.versioning.fetch()
            continue
        except BaseException:
            for kind, version in created:
                ws.versioning.delete_local_version(kind, version)
            raise
        echo("tagged " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        return versions
    raise GitError(f"could not allocate a version after {TAG_ATTEMPTS} attempts (heavy contention)", fix="run the command again")


def revert_targets(
    ws: Workspace, pairs: list[tuple[CheckpointManager, VersionRecord]], message: str, *, force: bool, dry_run: bool
) -> None:
    """Restore each manager's target to its record's version in ONE new commit.

    Refuses on uncommitted changes unless ``force``; with force the
    overwritten content is stored in the local cache first (recoverable by
    the hash logged in metrics.log as ``saved_digest``).
    """
    dirty = {m.spec.kind: m.require_clean_target("revert", force) for m, _ in pairs}
    if dry_run:
        for m, record in pairs:
            m.plan([f"restore {m.target} to {m.spec.kind} {record.version} ({record.commit[:10]})"])
        pairs[0][0].plan([f"commit '{message}' and push"])
        return
    saved = {}
    for m, _ in pairs:
        if dirty[m.spec.kind]:
            (saved[m.spec.kind],) = ws.storage.track([m.target])
            logger.warning("saved uncommitted %s (%s) in the local cache before reverting", m.target, saved[m.spec.kind].digest)
    pointers = [ws.storage.pointer_path(m.target) for m, _ in pairs]
    targets = [m.target for m, _ in pairs]
    # all targets and pointers change, or none: a journal and a hard-link
    # backup let a failure here, or a kill, put everything back
    ws.begin_revert(targets, pointers)
    try:
        for (_, record), pointer in zip(pairs, pointers):
            ws.versioning.restore(record.ref, [pointer])
        crash_point("revert.pointers-restored")
        ws.storage.checkout(targets)  # verified against the restored pointers before anything is replaced
        crash_point("revert.content-placed")
        for m, record in pairs:
            m.append_metrics(
                make_record(
                    m.spec.kind,
                    "revert",
                    dict(record.metadata.get("metrics") or {}),
                    reverted_to=record.version,
                    digest=record.metadata.get("digest"),
                    saved_digest=saved[m.spec.kind].digest if m.spec.kind in saved else None,
                )
            )
        ws.versioning.commit([*pointers, METRICS_FILE], message)
    except BaseException:
        ws.rollback_revert()
        raise
    ws.end_revert()
    for m, _ in pairs:
        info = m.pointer_info("HEAD")
        if info is not None:
            ws.set_content_base(m.target, info.digest)
    crash_point("revert.committed")
    ws.versioning.push_branch()
    pairs[0][0].echo(message.lower().replace("revert", "reverted", 1))


def pull_workspace(ws: Workspace, echo: Callable[[str], None]) -> list[str]:
    """See :meth:`CheckpointManager.pull`."""
    ws.require_initialized()
    with ws.lock():
        fetch_versions(ws, required=True)
        ws.versioning.sync_branch()
        updated = []
        for kind in ("model", "data"):
            rel = ws.file_for(kind)
            pointer = ws.versioning.read_file("HEAD", ws.storage.pointer_path(rel))
            info = ws.storage.describe_pointer(rel, pointer) if pointer else None
            if info is None:
                continue
            target = ws.target_path(kind)
            base = ws.content_base(rel)
            if base.get("digest") == info.digest and target.exists():
                continue  # the pointer did not move; local changes, if any, are the user's own
            if target.exists():
                if not base and ws.storage.status([rel]).get(rel) == "unchanged":
                    ws.set_content_base(rel, info.digest)
                    continue
                if not ws.content_unchanged_since_base(rel):
                    raise WorkspaceDirtyError(
                        f"{rel} has changes that were never uploaded; pulling would replace them",
                        fix=f"upload them (`cpv {kind} upload`, --force to replace the newer upstream version) or move them away, then pull",
                    )
            ws.storage.checkout([rel])
            ws.set_content_base(rel, info.digest)
            updated.append(rel)
        echo("updated " + ", ".join(updated) if updated else "already up to date")
        return updated

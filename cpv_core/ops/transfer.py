"""Moving content: upload (place, hash, store, then commit and push the pointer)
and download (materialise a version outside the workspace, verified).

Order of effects, so that an interruption never publishes a version whose
data is not stored: content is hashed and uploaded first, the pointer commit
is pushed next (the version tag comes later, in :mod:`cpv_core.ops.tagging`).
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv_core import bulk
from cpv_core.domain.artifacts import UploadResult
from cpv_core.domain.metrics import METRICS_FILE, format_metrics, make_record, validate_metrics
from cpv_core.domain.records import validate_message
from cpv_core.errors import CheckpointNotFoundError, ValidationError, WorkspaceDirtyError
from cpv_core.faults import crash_point
from cpv_core.paths import atomic_path, file_md5, remove_path
from cpv_core.plugin.progress import human_bytes
from cpv_core.plugin.protocols import TrackedArtifact, VersionRecord
from cpv_core.plugin.sources import check_source, forget_scan, scan_scope, scan_tree
from cpv_core.trust import check_relpath, select_sub_path, visible
from cpv_core.workspace import gc_fence
from cpv_core.workspace.gc_fence import Fence, reconfirm
from cpv_core.workspace.meta import DEFAULT_FILES, META_FILE, check_target_rel
from cpv_core.workspace.workspace import Workspace

if TYPE_CHECKING:
    from cpv_core.ops.target import Target

logger = logging.getLogger("cpv")


def place_source(mgr: Target, source: Path, dest: Path, rel: str, *, move: bool = False) -> None:
    """Put a source outside the workspace at ``dest`` (workspace path ``rel``), atomically:
    a copy, or with ``move`` (a source cpv owns, like a Checkpointer snapshot) a rename
    when both are on one file system, which writes no byte."""
    if source.resolve() == dest.resolve():
        return
    forget_scan(dest)
    if source.is_dir():
        # staged in the private state directory (same file system), then
        # swapped in with two renames; Workspace.recover completes a swap
        # a kill interrupted
        staging = mgr.ws.staging_path("new", rel)
        old = mgr.ws.staging_path("old", rel)
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        old.parent.mkdir(parents=True, exist_ok=True)
        if not (move and renamed(source, staging)):
            copy_tree(source, staging)
        if dest.exists() or dest.is_symlink():
            os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)  # a directory model becomes a file model under the same name
        if move and renamed(source, dest):
            return
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)


def copy_tree(source: Path, dest: Path) -> None:
    """Copy the files of data directory ``source`` (links read through, as the scan checked
    them; modification times kept, so the copies' stat is settled) to a new ``dest``; many
    small files on every core."""
    scan = scan_tree(source)
    dest.mkdir()
    folders = sorted({rel.rpartition("/")[0] for rel, *_ in scan.files} - {""})
    for folder in folders:
        (dest / folder).mkdir(parents=True, exist_ok=True)
    items = [(scan.path_of(entry), os.path.join(dest, entry[0]), entry[3]) for entry in scan.files]
    for _ in bulk.map_chunks(bulk.copy_files, items):
        pass


def renamed(source: Path, dest: Path) -> bool:
    """``os.replace(source, dest)``; False (nothing changed) when they are on different file systems."""
    try:
        os.replace(source, dest)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


def target_for_source(mgr: Target, source: Path) -> str:
    """The workspace path an upload of ``source`` is versioned under.

    Data always lives at its fixed path. A model keeps its own name: a path
    inside the workspace is used where it is, one from elsewhere lands at
    the top under its name (``~/runs/hf-model`` -> ``hf-model/``,
    ``ckpt-epoch3.pt`` stays ``ckpt-epoch3.pt``).
    """
    current = mgr.target
    if not mgr.spec.keeps_name or source == (mgr.ws.path / current).resolve():
        return current
    inside = mgr.ws.path in source.parents
    rel = check_target_rel(source.relative_to(mgr.ws.path).as_posix() if inside else source.name, f"{mgr.spec.kind} path")
    if rel == current:
        return current  # a new version of the model under the name it has: it replaces the workspace's copy
    for kind in DEFAULT_FILES:
        other = mgr.ws.file_for(kind)
        if kind != mgr.spec.kind and (rel == other or rel.startswith(f"{other}/") or other.startswith(f"{rel}/")):
            raise ValidationError(
                f"{mgr.spec.kind} path {visible(rel)} overlaps the workspace's {kind} ({visible(other)})",
                fix=f"rename the {mgr.spec.kind} file or directory and upload it again",
            )
    dest = mgr.ws.path / rel
    if not inside and (dest.exists() or dest.is_symlink()):
        raise WorkspaceDirtyError(
            f"{dest} already exists and is not the workspace's {mgr.spec.kind} ({current})",
            fix=f"move it away, or upload it as it is ({mgr.hint(cli=f'`cpv {mgr.spec.kind} upload {rel}`', python=f'model_path={str(dest)!r}')})",
        )
    return rel


def upload(mgr: Target, source_path: str | Path | None, metrics: Any, message: str | None, **kwargs: Any) -> UploadResult:
    """Upload ``source_path`` (default: the target in the workspace). ``consume_source=True``
    (the Checkpointer's snapshots) moves a source from outside the workspace in instead of copying it."""
    dry_run, _ = mgr.options(kwargs)
    move = bool(kwargs.get("consume_source"))
    clean_metrics = validate_metrics(metrics)
    clean_params = validate_metrics(kwargs.get("params"))
    message = validate_message(message)
    ws = mgr.ws
    dest = ws.target_path(mgr.spec.kind)
    source = Path(source_path).expanduser().resolve() if source_path else dest
    if dry_run or not ws.is_initialized():
        size, nfiles = check_source(mgr.spec, source)
    ws.require_initialized()
    rel = target_for_source(mgr, source)
    if dry_run:
        return planned_upload(mgr, source, rel, size, nfiles, clean_metrics)
    # one walk of the directory serves the source check, the hashing and the fingerprint
    with ws.lock(), scan_scope():  # the lock recovers what a killed run left, so check the source after it
        _, expected_files = check_source(mgr.spec, source)
        check_not_stale(mgr, force=bool(kwargs.get("force", False)))
        rel = target_for_source(mgr, source)
        if rel != mgr.target:
            return upload_moved(mgr, source, rel, expected_files, clean_metrics, message, move=move, params=clean_params)
        place_source(mgr, source, dest, rel, move=move)
        crash_point("upload.placed")
        fence, artifact = store_target(mgr, expected_files)
        pointer = ws.storage.pointer_path(mgr.target)
        changed = bool(ws.versioning.changed_files([pointer])) or ws.versioning.read_file("HEAD", pointer) is None
        if not changed and not clean_metrics and not clean_params:
            return unchanged_upload(mgr, dest, artifact, message)
        record = make_record(
            mgr.spec.kind,
            "upload",
            clean_metrics,
            message=message,
            digest=artifact.digest,
            size=artifact.size,
            nfiles=artifact.nfiles if dest.is_dir() else None,
            params=clean_params or None,
            code=code_origin(ws),
        )
        before, base_before = ws.versioning.head(), ws.content_base(mgr.target).get("digest")
        mgr.append_metrics(record)
        files = [*ws.storage.commit_paths([mgr.target]), METRICS_FILE]
        # the base moves with the commit; a kill between the two is told apart from a
        # teammate's change by check_not_stale (the content matches its pointer)
        ws.set_content_base(mgr.target, artifact.digest)
        crash_point("upload.base-recorded")
        fence.record()  # until the objects are confirmed: a kill in between is settled by the next upload
        try:
            commit = ws.versioning.commit(
                files, message or f"Upload {mgr.spec.kind} checkpoint {mgr.target} ({human_bytes(artifact.size)})"
            )
            crash_point("upload.committed")
            ws.versioning.push_branch()
        except BaseException:
            # a failed upload leaves the workspace as it was: the commit is undone
            # (the bytes stay stored; running the command again is cheap)
            fence.clear()
            if before is not None and ws.versioning.head() != before:
                ws.versioning.undo_commit(before, files)
            if base_before:
                ws.set_content_base(mgr.target, base_before)
            raise
        settle_after_publish(ws, fence, [mgr.target])
        published = ws.versioning.head() or commit  # a rebase on a teammate's upload gives the commit another id
        if changed:
            mgr.echo(f"uploaded {mgr.target} ({human_bytes(artifact.size)}) as {published[:10]}")
        else:
            mgr.echo(f"{mgr.target} unchanged; new metrics recorded as {published[:10]} (`cpv {mgr.spec.kind} tag` makes them a version)")
        return stored_result(mgr.spec.kind, dest, published, artifact, clean_metrics, changed=changed)


def store_target(mgr: Target, expected_files: int) -> tuple[Fence, TrackedArtifact]:
    """Hash the placed target and send what the store lacks, under a gc fence taken
    before the store is asked what it holds (see :mod:`cpv_core.workspace.gc_fence`)."""
    ws = mgr.ws
    fence = Fence(ws)
    (artifact,) = track_for_push(mgr)([mgr.target])
    if artifact.nfiles != expected_files:
        undo_track(mgr)
        raise ValidationError(
            f"{mgr.target} has {expected_files} files but the stored version would hold {artifact.nfiles}; nothing was committed",
            fix="remove ignore files (.dvcignore) and nested repositories from the directory, then upload again",
        )
    crash_point("upload.tracked")
    ws.storage.push([mgr.target])
    settle_killed_upload(ws, [mgr.target])
    crash_point("upload.stored")
    return fence, artifact


def unchanged_upload(mgr: Target, dest: Path, artifact: TrackedArtifact, message: str | None) -> UploadResult:
    """Content and metrics as already committed: nothing to commit, said so."""
    ws = mgr.ws
    same = mgr.same_content_as(artifact.digest)
    mgr.echo(f"{mgr.target} unchanged ({f'same as {same}' if same else 'same as the last upload'}); nothing to commit")
    if message:
        mgr.echo("the message was not recorded: it would describe no change (tag the version to give it one)")
    ws.versioning.push_branch()
    ws.set_content_base(mgr.target, artifact.digest)
    return stored_result(mgr.spec.kind, dest, ws.versioning.head(), artifact, {}, changed=False)


def planned_upload(mgr: Target, source: Path, rel: str, size: int, nfiles: int, clean_metrics: dict[str, Any]) -> UploadResult:
    """What an upload of ``source`` as ``rel`` would do (``dry_run``): the plan, nothing changed."""
    ws = mgr.ws
    dest = ws.path / rel
    plan = mgr.plan(
        [
            f"copy {source} -> {dest}" if source != dest.resolve() else f"use {dest}",
            *([f"version the {mgr.spec.kind} as {rel} instead of {mgr.target}"] if rel != mgr.target else []),
            f"hash and store {rel} ({human_bytes(size)}, {nfiles} file{'s' if nfiles != 1 else ''})",
            f"upload to {ws.storage.describe_remote()}",
            f"append metrics {format_metrics(clean_metrics)} to {METRICS_FILE}"
            if clean_metrics
            else f"append an upload record to {METRICS_FILE}",
            f"commit {ws.storage.pointer_path(mgr.target)} and {METRICS_FILE}, push to {ws.hosting.remote_url()}",
        ]
    )
    return UploadResult(
        kind=mgr.spec.kind,
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


def upload_moved(
    mgr: Target,
    source: Path,
    rel: str,
    expected_files: int,
    metrics: dict[str, Any],
    message: str | None,
    *,
    move: bool = False,
    params: dict[str, Any] | None = None,
) -> UploadResult:
    """Upload a model that now lives at another workspace path (``model.bin`` ->
    ``hf-model/``): in one commit the new pointer is added, the old one removed
    and workspace.json says where the model is. All or nothing: a journal and a
    hard-link backup put the old path back after a failure or a kill. The old
    content leaves the workspace only when it is exactly what was stored."""
    ws, kind, old = mgr.ws, mgr.spec.kind, mgr.target
    old_state = ws.storage.status([old]).get(old)
    old_ptr, new_ptr = ws.storage.pointer_path(old), ws.storage.pointer_path(rel)
    dest = ws.target_path_of(rel)
    before, files = ws.versioning.head(), [new_ptr, old_ptr]
    fence = Fence(ws)  # before anything is placed or the store is asked: see cpv_core.workspace.gc_fence
    ws.begin_change("upload", [old, rel], [*ws.storage.commit_paths([old, rel]), new_ptr, META_FILE])
    try:
        place_source(mgr, source, dest, rel, move=move)
        ws.set_file(kind, rel)
        crash_point("upload.moved-placed")
        (artifact,) = track_for_push(mgr)([rel])
        ws.extend_change(ws.storage.commit_paths([rel]))
        if artifact.nfiles != expected_files:
            raise ValidationError(
                f"{rel} has {expected_files} files but the stored version would hold {artifact.nfiles}; nothing was committed",
                fix="remove ignore files (.dvcignore) and nested repositories from the directory, then upload again",
            )
        ws.storage.push([rel])
        settle_killed_upload(ws, [rel])
        crash_point("upload.moved-stored")
        ws.target_path_of(old_ptr).unlink(missing_ok=True)
        kept = old_state in {"modified", "untracked"}
        if not kept:
            remove_path(ws.target_path_of(old))
        record = make_record(
            kind,
            "upload",
            metrics,
            message=message,
            digest=artifact.digest,
            size=artifact.size,
            nfiles=artifact.nfiles if dest.is_dir() else None,
            path=rel,
            params=params or None,
            code=code_origin(ws),
        )
        mgr.append_metrics(record)
        files = [*ws.storage.commit_paths([rel]), *ws.in_head([old_ptr]), META_FILE, METRICS_FILE]
        fence.record()
        commit = ws.versioning.commit(files, message or f"Upload {kind} checkpoint {rel} ({human_bytes(artifact.size)}), replacing {old}")
        crash_point("upload.moved-committed")
        ws.versioning.push_branch()
    except BaseException:
        fence.clear()
        if before is not None and ws.versioning.head() != before:
            ws.versioning.undo_commit(before, files)
        ws.rollback_change()
        raise
    ws.end_change()
    settle_after_publish(ws, fence, [rel])
    ws.set_content_base(rel, artifact.digest)
    published = ws.versioning.head() or commit  # a rebase on a teammate's upload gives the commit another id
    mgr.echo(f"uploaded {rel} ({human_bytes(artifact.size)}) as {published[:10]}; the {kind} is now {rel}, not {old}")
    if kept:
        mgr.echo(f"{old} was left in the workspace: it has changes that were never uploaded (delete it when you no longer need it)")
    return stored_result(kind, dest, published, artifact, metrics, changed=True)


def code_origin(ws: Workspace) -> dict[str, Any] | None:
    """The training code this upload runs in: the git repository around the current
    directory (not the workspace's own), as the versioning backend reads it; None outside one."""
    try:
        return ws.versioning.code_origin(Path.cwd())
    except OSError:  # the current directory was removed under us
        return None


def settle_after_publish(ws: Workspace, fence: Fence, paths: Sequence[str]) -> None:
    """Once the commit is on the remote: if a gc overlapped the upload, confirm every
    object of ``paths`` on the store again and re-send what it removed."""
    if fence.overlapped():
        reconfirm(ws, paths)
    fence.clear()


def settle_killed_upload(ws: Workspace, paths: Sequence[str]) -> None:
    """An earlier upload here was killed between publishing its commit and confirming its
    objects (its fence is still recorded): if a gc overlapped it, this upload, which has
    just hashed the same targets, confirms them all on the store and re-sends what is gone."""
    killed = gc_fence.pending(ws)
    if killed is None:
        return
    if killed.overlapped():
        sent = reconfirm(ws, paths)
        logger.warning("an upload interrupted while a cpv gc ran was settled: every object confirmed, %d sent again", sent)
    killed.clear()


def track_for_push(mgr: Target) -> Callable[[Sequence[str]], list[TrackedArtifact]]:
    """The storage's ``track_for_push`` (it may skip the local cache copy before a push)."""
    return mgr.ws.storage.track_for_push


def stored_result(
    kind: str, dest: Path, commit: str | None, artifact: TrackedArtifact, metrics: dict[str, Any], *, changed: bool
) -> UploadResult:
    """What an upload that stored ``artifact`` at ``dest`` returns."""
    return UploadResult(
        kind=kind,
        path=str(dest),
        commit=commit,
        digest=artifact.digest,
        size=artifact.size,
        nfiles=artifact.nfiles,
        metrics=metrics,
        changed=changed,
    )


def check_not_stale(mgr: Target, *, force: bool) -> None:
    """Refuse to upload content that is older than what the branch now holds.

    A rebase can move this target's pointer to a teammate's upload while
    the content here stays what it was; uploading it would silently undo
    theirs (a lost update). The recorded base tells.
    """
    base = mgr.ws.content_base(mgr.target).get("digest")
    head = mgr.pointer_info("HEAD")
    if force or not base or head is None or base == head.digest:
        return
    if mgr.ws.storage.status([mgr.target]).get(mgr.target) == "unchanged":
        return  # the content is what the pointer names: uploading it undoes nothing (e.g. after a kill)
    pointer = mgr.ws.storage.pointer_path(mgr.target)
    raise WorkspaceDirtyError(
        f"{pointer} changed upstream (someone uploaded {head.digest}); your {mgr.target} is still based on "
        f"{base}: uploading it would undo their change",
        fix=f"bring theirs with {mgr.hint(cli='`cpv pull`', python='pull()')} (move your own changes away first), or replace it with yours: "
        + mgr.hint(cli=f"`cpv {mgr.spec.kind} upload --force`", python="force=True"),
    )


def undo_track(mgr: Target) -> None:
    """Put the pointer back as HEAD has it (or remove it when HEAD has none)."""
    pointer = mgr.ws.storage.pointer_path(mgr.target)
    if mgr.ws.versioning.read_file("HEAD", pointer) is not None:
        mgr.ws.versioning.restore("HEAD", [pointer])
    else:
        (mgr.ws.path / pointer).unlink(missing_ok=True)


def default_output(mgr: Target, version: str) -> Path:
    return mgr.ws.config.config_dir / "downloads" / mgr.ws.team / mgr.ws.model / f"{mgr.spec.kind}-{version}"


def download(
    mgr: Target, tag: str | None, output_dir: str | Path | None, sub_path: str | None = None, **kwargs: Any
) -> tuple[Path, VersionRecord, TrackedArtifact | None]:
    dry_run, force = mgr.options(kwargs)
    include = check_include(kwargs.get("include"))
    record = mgr.find(tag, fetch=not dry_run)
    mgr.require_content(record)
    out_dir = Path(output_dir).expanduser().resolve() if output_dir else default_output(mgr, record.version)
    target = mgr.target_at(record.ref)
    source = target
    if sub_path:
        source = f"{target}/{check_sub_path(mgr, record, sub_path)}"
    dest = out_dir / Path(source).name
    for rel in dict.fromkeys([mgr.target, target]):
        ws_target = (mgr.ws.path / rel).resolve()
        if dest.resolve() == ws_target or ws_target in dest.resolve().parents:
            raise ValidationError(
                f"output directory {out_dir} would overwrite the workspace's {rel}",
                fix="download elsewhere, or use revert to change the workspace",
            )
    if dry_run:
        mgr.plan([f"download {mgr.spec.kind} {record.version} ({source}) into {dest}"])
        return dest, record, None
    if dest.exists() and not force:
        info = mgr.pointer_info(record.ref)
        if not (dest.is_file() and info and not sub_path and same_file(dest, info)):
            raise WorkspaceDirtyError(
                f"{dest} already exists", fix=f"choose another output directory or {mgr.hint(cli='pass --force', python='pass force=True')}"
            )
    pointer = mgr.pointer(record.ref)
    if pointer is None:
        raise CheckpointNotFoundError(f"{mgr.spec.kind} version {record.version} records no {target}", fix="choose another version")
    if include:
        artifact = materialize_included(mgr, record, source, pointer, dest, include)
    else:
        artifact = mgr.ws.storage.materialize(record.ref, source, pointer, dest)
    mgr.echo(f"downloaded {mgr.spec.kind} {record.version} to {dest}")
    return dest, record, artifact


def included_entries(files: Mapping[str, str], patterns: Sequence[str], where: str) -> list[str]:
    """The entries of a directory version that match any of the glob ``patterns`` (the Hub's
    ``--include``: ``config.json``, ``*.safetensors``); none matching is a clear error."""
    chosen = sorted(
        rel for rel in files if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], p) for p in patterns)
    )
    if not chosen:
        shown = ", ".join(visible(rel) for rel in sorted(files)[:20]) + (" ..." if len(files) > 20 else "")
        raise ValidationError(f"--include {visible(','.join(patterns))} matches no file of {where}", fix=f"its files: {shown}")
    return chosen


def check_include(include: str | Sequence[str] | None) -> list[str]:
    """``--include`` as a list of glob patterns (comma-separated text or a list)."""
    if include is None:
        return []
    patterns = [p.strip() for p in (include.split(",") if isinstance(include, str) else include)]
    if not patterns or any(not p or "\x00" in p for p in patterns):
        raise ValidationError(f"--include {visible(repr(include))} has an empty pattern", fix="e.g. --include 'config.json,*.safetensors'")
    return patterns


def materialize_included(
    mgr: Target, record: VersionRecord, source: str, pointer: bytes, dest: Path, patterns: Sequence[str]
) -> TrackedArtifact:
    """Only the entries of a directory version matching ``patterns``, each verified."""
    files = mgr.ws.storage.manifest(record.ref, source, pointer)
    where = f"{mgr.spec.kind} {record.version}"
    if "" in files:
        raise ValidationError(
            f"{source} of {where} is a single file: --include selects files of a directory", fix="download it without --include"
        )
    return mgr.ws.storage.materialize_selected(record.ref, source, pointer, dest, included_entries(files, patterns, where))


def check_sub_path(mgr: Target, record: VersionRecord, sub_path: str) -> str:
    """``sub_path`` if it names an entry of ``record``'s manifest; else exit 2 listing the valid ones."""
    sub = check_relpath(str(sub_path).strip("/") or str(sub_path), "--sub-path", "sub-path")
    target = mgr.target_at(record.ref)
    pointer = mgr.pointer(record.ref)
    if pointer is None:
        raise CheckpointNotFoundError(f"{mgr.spec.kind} version {record.version} records no {target}", fix="choose another version")
    files = mgr.ws.storage.manifest(record.ref, target, pointer)
    if "" in files:
        raise ValidationError(
            f"{target} of {mgr.spec.kind} {record.version} is a single file: it has no sub-path {visible(sub)}",
            fix="download it without --sub-path",
        )
    select_sub_path(files, sub, f"{mgr.spec.kind} {record.version}")
    return sub


def same_file(path: Path, info: TrackedArtifact) -> bool:
    """Whether ``path`` already holds exactly that version (then re-downloading is harmless)."""
    algorithm, _, expected = info.digest.partition(":")
    if algorithm != "md5" or path.stat().st_size != info.size:
        return False  # a digest this check cannot compute: treat as different (the caller asks for --force)
    return file_md5(path) == expected

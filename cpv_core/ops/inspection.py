"""Reading versions back: list, metadata, diff and verify (nothing here changes anything)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv_core.domain.artifacts import CheckpointMetadata
from cpv_core.domain.metrics import METRICS_FILE, parse_log
from cpv_core.domain.metrics import compare as compare_metrics
from cpv_core.errors import CheckpointNotFoundError, ValidationError
from cpv_core.ops import tensor_diff
from cpv_core.plugin.protocols import VersionRecord

if TYPE_CHECKING:
    from cpv_core.ops.target import Target


def list_versions(mgr: Target) -> list[str]:
    mgr.ws.require_initialized()
    mgr.ws.repair()
    mgr.fetch(required=False)
    return [r.version for r in mgr.records()]


def diff(mgr: Target, version_a: str, version_b: str) -> dict[str, Any]:
    """Compare two versions: metrics side by side with deltas, content
    hash and size change, and the files added, removed and changed (a
    single-file model counts as one file under its own name, so a model
    that became a directory shows its shards added and the file removed).
    ``b - a`` throughout."""
    rec_a, rec_b = mgr.find(version_a), mgr.find(version_b)
    meta_a, meta_b = metadata_for(mgr, rec_a), metadata_for(mgr, rec_b)
    a, b = (files_of(mgr, rec.ref) for rec in (rec_a, rec_b))
    files = {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k]),
    }
    result = {
        "kind": mgr.spec.kind,
        "a": meta_a.version,
        "b": meta_b.version,
        "metrics": compare_metrics(meta_a.metrics, meta_b.metrics),
        "params": compare_metrics(meta_a.params, meta_b.params),
        "digest": {"a": meta_a.digest, "b": meta_b.digest, "changed": meta_a.digest != meta_b.digest},
        "size": {"a": meta_a.size, "b": meta_b.size, "delta": meta_b.size - meta_a.size},
        "files": files,
    }
    tensor_files = [f for f in (*files["added"], *files["removed"], *files["changed"]) if f.endswith(tensor_diff.SUFFIX)]
    if tensor_files and tensor_diff.available():
        result["tensors"] = diff_tensors(mgr, (rec_a, a), (rec_b, b), sorted(tensor_files))
    return result


def diff_tensors(
    mgr: Target, side_a: tuple[VersionRecord, dict[str, str]], side_b: tuple[VersionRecord, dict[str, str]], names: list[str]
) -> dict[str, Any]:
    """Per safetensors file that differs: its tensors added, removed, reshaped, changed
    (max-abs, relative L2) and unchanged. Each side's file is fetched into a scratch
    directory (verified, as any download), compared, and removed."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cpv-tensors-") as scratch:
        paths: dict[tuple[int, str], Path | None] = {}
        for index, (record, files) in enumerate((side_a, side_b)):
            target = mgr.target_at(record.ref)
            pointer = mgr.pointer(record.ref)
            single_file = pointer is not None and "" in mgr.ws.storage.manifest(record.ref, target, pointer)
            for name in names:
                if name not in files or pointer is None:
                    paths[(index, name)] = None
                    continue
                source = target if single_file else f"{target}/{name}"
                dest = Path(scratch) / str(index) / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                mgr.ws.storage.materialize(record.ref, source, pointer, dest)
                paths[(index, name)] = dest
        for name in names:
            try:
                out[name] = tensor_diff.diff_files(paths[(0, name)], paths[(1, name)]).to_dict()
            except ValidationError as exc:  # not really tensors: the file-level diff stands, and says why
                out[name] = {"error": exc.message}
    return out


def files_of(mgr: Target, rev: str) -> dict[str, str]:
    """File -> content hash of the target at ``rev``: paths inside a directory
    target, the file's own name for a single-file target."""
    target = mgr.target_at(rev)
    pointer = mgr.pointer(rev)
    if pointer is None:
        return {}
    manifest = mgr.ws.storage.manifest(rev, target, pointer)
    if set(manifest) == {""}:
        return {target.rsplit("/", 1)[-1]: manifest[""]}
    return manifest


def verify(mgr: Target, tag: str | None = None, *, remote: bool = False) -> list[str]:
    """Check the stored copy of version ``tag`` (default: latest), file by
    file: the local cache, or the remote store with ``remote=True``.
    Returns the problems found (empty: intact)."""
    record = mgr.find(tag)
    target = mgr.target_at(record.ref)
    pointer = mgr.pointer(record.ref)
    if pointer is None:
        return [f"{mgr.spec.kind} {record.version}: no pointer file for {target}"]
    return mgr.ws.storage.verify(record.ref, target, pointer, remote=remote)


def metadata_for(mgr: Target, record: VersionRecord) -> CheckpointMetadata:
    meta = dict(record.metadata)
    return CheckpointMetadata(
        kind=mgr.spec.kind,
        version=record.version,
        commit=record.commit,
        author=record.author,
        date=record.date,
        message=record.message or str(meta.get("upload_message") or ""),
        tag_message=record.message,
        upload_message=str(meta.get("upload_message") or ""),
        metrics=dict(meta.get("metrics") or {}),
        size=int(meta.get("size") or 0),
        digest=str(meta.get("digest") or ""),
        path=str(meta.get("path") or mgr.target_at(record.ref)),
        lineage=dict(meta.get("lineage") or {}),
        params=dict(meta.get("params") or {}),
        code=dict(meta.get("code") or {}),
    )


def metadata(mgr: Target, tag: str | None) -> CheckpointMetadata:
    mgr.ws.require_initialized()
    if tag is not None or mgr.records():
        return metadata_for(mgr, mgr.find(tag))
    # nothing tagged yet: describe the current commit
    info = mgr.pointer_info("HEAD")
    if info is None:
        raise CheckpointNotFoundError(
            f"no {mgr.spec.kind} uploaded to {mgr.ws.team}/{mgr.ws.model} yet",
            fix=mgr.hint(cli=f"run `cpv {mgr.spec.kind} upload` first", python=f"call upload_{mgr.spec.kind}_checkpoint() first"),
        )
    records = parse_log(mgr.ws.versioning.read_file("HEAD", METRICS_FILE))
    last: dict[str, Any] = next((r for r in reversed(records) if r.get("kind") == mgr.spec.kind), {})
    return CheckpointMetadata(
        kind=mgr.spec.kind,
        version=None,
        commit=mgr.ws.versioning.head() or "",
        author="",
        date=str(last.get("timestamp", "")),
        message=str(last.get("message", "")),
        metrics=dict(last.get("metrics") or {}),
        size=info.size,
        digest=info.digest,
        path=mgr.target,
    )


def list_checkpoints(mgr: Target) -> list[CheckpointMetadata]:
    """Every version with its metadata, oldest first (after fetching the remote)."""
    mgr.ws.require_initialized()
    mgr.ws.repair()
    mgr.fetch(required=False)
    records = mgr.records()
    # a version's tag records its path; only tags without one (written before cpv recorded
    # it) need their commit's workspace.json, read for all of them at once
    mgr.ws.preload_meta([r.ref for r in records if not r.metadata.get("path")])
    return [metadata_for(mgr, r) for r in records]

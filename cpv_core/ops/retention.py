"""Safe retention: remove from the storage remote what no kept version needs
(``cpv gc``), and show where the bytes go (``cpv du``).

Safe on a shared remote: the remote's refs are fetched first (no gc without
them); an object is never deleted when a kept version, any version holding a
stage now, the branch's tip (this workspace must not be behind it) or the
workspace's own pointers use it, nor when it was written within the grace
period (a teammate's upload may be in flight: its objects land before its
commit does). Pruned versions stay in the history, marked, before anything
is deleted, so an interruption leaves marked versions whose bytes the next
gc removes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cpv_core.domain.retention_rules import RETENTION_FILE, RetentionRules, VersionFacts, created_at, fates, parse_retention
from cpv_core.errors import CheckpointNotFoundError, ValidationError, WorkspaceDirtyError
from cpv_core.plugin.protocols import IncompleteUpload, StoredObject, VersionRecord
from cpv_core.trust import MAX_POINTER_BYTES, open_regular
from cpv_core.workspace import gc_fence
from cpv_core.workspace.history import current_stages, fetch_versions

if TYPE_CHECKING:
    from cpv_core.ops.target import Target
    from cpv_core.workspace.workspace import Workspace

logger = logging.getLogger("cpv")

PRUNED_NOTE = "content removed by cpv gc"


@dataclass(frozen=True)
class RetentionPolicy:
    """What ``cpv gc`` keeps (at least one of ``keep_last``, ``keep_stages``, ``keep``).

    :param keep_last: the newest N versions of each kind.
    :param keep_stages: the versions holding a stage now (their bytes are
        protected in any case; this also keeps them from being marked pruned).
    :param keep: selectors of versions to keep (``v1.0``, ``best:loss``, ``prod``),
        looked up in each kind.
    :param grace_hours: objects written more recently are never deleted.
    :param delete_versions: remove pruned versions from the history instead of
        marking them (a version a combined checkpoint names is only marked).
    :param use_rules: also keep what the model's ``.cpv/retention.json`` keeps.
    :param rules: also keep what these rules keep.
    """

    keep_last: int | None = None
    keep_stages: bool = False
    keep: tuple[str, ...] = ()
    grace_hours: float = 24.0
    delete_versions: bool = False
    #: apply the model's committed rules (``.cpv/retention.json``; ``cpv gc --policy``)
    use_rules: bool = False
    #: rules given directly (the Checkpointer's ``keep=``), instead of the committed ones
    rules: RetentionRules | None = None

    def check(self) -> None:
        if self.keep_last is None and not self.keep_stages and not self.keep and not self.use_rules and self.rules is None:
            raise ValidationError(
                "gc needs to be told what to keep",
                fix="pass --keep-last N, --keep-stages and/or --keep VERSION (e.g. --keep-last 5 --keep-stages)",
            )
        if self.keep_last is not None and self.keep_last < 0:
            raise ValidationError(f"--keep-last {self.keep_last} is negative", fix="pass a number of versions, 0 or more")
        if not 0 <= self.grace_hours <= 24 * 365:
            raise ValidationError(
                f"--grace {self.grace_hours} is not between 0 and 8760 hours", fix="e.g. --grace 24 (the default) or --grace 0"
            )


@dataclass
class GcResult:
    """What gc kept, pruned and deleted (or would, on a dry run)."""

    kept: dict[str, list[str]] = field(default_factory=dict)
    pruned: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    freed: int = 0
    spared_young: int = 0
    dry_run: bool = False
    deleted_versions: dict[str, list[str]] = field(default_factory=dict)
    #: incomplete multipart uploads older than the grace that were aborted, and their bytes
    aborted_uploads: int = 0
    aborted_bytes: int = 0
    #: with retention rules: why each version of each kind is kept (an empty list: pruned)
    fates: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "pruned": self.pruned,
            "deleted_objects": len(self.deleted),
            "freed_bytes": self.freed,
            "spared_young_objects": self.spared_young,
            "deleted_versions": self.deleted_versions,
            "aborted_uploads": self.aborted_uploads,
            "aborted_bytes": self.aborted_bytes,
            "fates": self.fates,
            "dry_run": self.dry_run,
        }


def version_objects(m: Target, rev: str) -> list[str]:
    """The stored objects ``m``'s target needs at ``rev`` (none when it records no target)."""
    pointer = m.pointer(rev)
    return m.ws.storage.objects_of(rev, m.target_at(rev), pointer) if pointer else []


def workspace_objects(m: Target) -> set[str]:
    """What the branch's tip and the workspace's own (possibly uncommitted) pointer use."""
    objects = set(version_objects(m, "HEAD"))
    try:  # the workspace's own pointer, as any file of the tree: a regular file, never through a link
        with open_regular(m.ws.target_path_of(m.ws.storage.pointer_path(m.target))) as handle:
            pointer = handle.read(MAX_POINTER_BYTES + 1)
    except (OSError, ValidationError):
        return objects  # no pointer here (never uploaded), or not a file cpv would read
    objects.update(m.ws.storage.objects_of("the workspace", m.target, pointer))
    return objects


def kept_versions(
    m: Target, records: Sequence[VersionRecord], policy: RetentionPolicy, holders: Iterable[str]
) -> tuple[set[str], set[str]]:
    """The versions of ``m``'s kind the policy keeps, and the ``keep`` selectors that matched one."""
    keep: set[str] = set()
    matched: set[str] = set()
    if policy.keep_last:
        keep.update(r.version for r in records[-policy.keep_last :])
    if policy.keep_stages:
        keep.update(holders)
    for selector in policy.keep:
        try:
            keep.add(m.find(selector, fetch=False).version)
        except CheckpointNotFoundError:
            continue  # a selector may name a version of the other kind only
        matched.add(selector)
    return keep, matched


def protected_objects(
    managers: Sequence[Target], policy: RetentionPolicy, result: GcResult
) -> tuple[set[str], dict[str, list[tuple[VersionRecord, list[str]]]], set[str]]:
    """What the policy, the stages, the branch's tip and the workspace protect; the
    versions it does not keep (with their objects); the ``keep`` selectors that matched."""
    ws = managers[0].ws
    referenced: set[str] = set()
    candidates: dict[str, list[tuple[VersionRecord, list[str]]]] = {}
    matched: set[str] = set()
    rules = policy.rules or (committed_rules(ws) if policy.use_rules else None)
    for m in managers:
        kind = m.spec.kind
        referenced |= workspace_objects(m)
        records = m.records()
        holders = {str(e.version) for e in current_stages(ws.versioning.list_stage_events(kind)).values()}
        keep, found = kept_versions(m, records, policy, holders)
        matched |= found
        if rules is not None:
            facts = [VersionFacts(r.version, created_at(r.date), r.metadata.get("metrics") or {}) for r in records]
            result.fates[kind] = decided = fates(facts, rules, holders, time.time())
            keep |= {version for version, why in decided.items() if why}
        result.kept[kind] = [r.version for r in records if r.version in keep]
        for record in records:
            objects = version_objects(m, record.ref)
            if record.version in keep or record.version in holders:
                referenced.update(objects)
            else:
                candidates.setdefault(kind, []).append((record, objects))
    return referenced, candidates, matched


def set_retention_rules(m: Target, raw: bytes, *, dry_run: bool) -> RetentionRules:
    """Check retention rules, then commit them as ``.cpv/retention.json`` and push."""
    from cpv_core.ops.stages import commit_rules_file

    rules = parse_retention(raw, "the rules file")
    commit_rules_file(m, RETENTION_FILE, rules.to_dict(), "retention rules", dry_run=dry_run)
    return rules


def committed_rules(ws: Workspace) -> RetentionRules:
    """The model's retention rules as committed at the branch's tip (gc runs on the fetched tip)."""
    raw = ws.versioning.read_file("HEAD", RETENTION_FILE)
    if raw is None:
        raise ValidationError(
            f"this model has no retention rules ({RETENTION_FILE})",
            fix="write them (docs/concepts.md) and run `cpv model retention set FILE`, or pass --keep-last/--keep",
        )
    return parse_retention(raw, RETENTION_FILE)


def vouched_by_spared_manifests(ws: Workspace, inventory: Sequence[StoredObject], doomed: set[str]) -> set[str]:
    """The files named by every stored manifest gc keeps: a manifest on the store vouches
    for its files (uploads trust it), so none of them may go while it stays."""
    files: set[str] = set()
    for obj in inventory:
        if obj.oid.endswith(".dir") and obj.oid not in doomed:
            files.update(ws.storage.vouched_by(obj.oid))
    return files


def collect_garbage(managers: Sequence[Target], policy: RetentionPolicy, *, dry_run: bool) -> GcResult:
    """Apply ``policy`` to every kind of ``managers`` (one workspace) and remove from
    the storage remote every object nothing kept uses (see the module docstring and
    :mod:`cpv_core.workspace.gc_fence` for the rule uploads and promotions follow with it)."""
    policy.check()
    ws = managers[0].ws
    ws.require_initialized()
    result = GcResult(dry_run=dry_run)
    with ws.lock():
        run = None if dry_run else gc_fence.begin(ws)  # published before anything is read: see gc_fence
        try:
            fetch_versions(ws, required=True)  # no gc on a stale view of what exists
            behind = ws.versioning.divergence()[1]
            if behind:
                raise WorkspaceDirtyError(
                    f"the remote branch has {behind} commit(s) this workspace has not seen: gc must protect what they use",
                    fix="run `cpv pull`, then gc again",
                )
            collect(managers, policy, result, dry_run=dry_run)
        finally:
            gc_fence.end(ws, run)  # a kill before this is closed by the next gc here (gc_fence.begin)
    return result


def collect(managers: Sequence[Target], policy: RetentionPolicy, result: GcResult, *, dry_run: bool) -> None:
    """The body of :func:`collect_garbage`, under the lock and inside a published gc run."""
    ws = managers[0].ws
    referenced, candidates, matched = protected_objects(managers, policy, result)
    unknown = [s for s in policy.keep if s not in matched]
    if unknown:
        raise CheckpointNotFoundError(f"--keep {unknown[0]} selects no version", fix="see `cpv model list` and `cpv data list`")
    inventory = ws.storage.inventory()
    present = {o.oid for o in inventory}
    young_after = time.time() - policy.grace_hours * 3600
    old_unreferenced = {o.oid for o in inventory if o.oid not in referenced and o.modified <= young_after}
    referenced |= vouched_by_spared_manifests(ws, inventory, old_unreferenced)
    spared = [o for o in inventory if o.oid not in referenced and o.modified > young_after]
    doomed = [o for o in inventory if o.oid not in referenced and o.modified <= young_after]
    gone = {o.oid for o in doomed}
    to_mark: dict[str, list[VersionRecord]] = {}
    for kind, entries in candidates.items():
        to_mark[kind] = [r for r, objects in entries if any(o in gone or o not in present for o in objects)]
    result.spared_young = len(spared)
    if not dry_run:
        for kind, records in to_mark.items():  # marked first: a kill leaves marked versions the next gc finishes
            if records:
                ws.versioning.mark_pruned(kind, records, PRUNED_NOTE)
        # a promotion may have landed since the stages were read: whatever holds a stage now
        # keeps its bytes (and loses its mark); a promotion after this read sees the marks
        fetch_versions(ws, required=True)
        for m in managers:
            kind = m.spec.kind
            holders = {str(e.version) for e in current_stages(ws.versioning.list_stage_events(kind)).values()}
            rescued = [r for r in to_mark.get(kind, []) if r.version in holders]
            if not rescued:
                continue
            for record, objects in candidates.get(kind, []):
                if record.version in holders:
                    gone.difference_update(objects)
            ws.versioning.unmark_pruned(kind, [r.version for r in rescued])
            to_mark[kind] = [r for r in to_mark[kind] if r not in rescued]
            logger.warning(
                "%s %s now hold%s a stage: their content is kept",
                kind,
                ", ".join(r.version for r in rescued),
                "" if len(rescued) > 1 else "s",
            )
        doomed = [o for o in doomed if o.oid in gone]
    for kind, records in to_mark.items():
        result.pruned[kind] = [r.version for r in records]
    result.deleted = sorted(gone)
    result.freed = sum(o.size for o in doomed)
    stale = [u for u in incomplete_uploads(ws) if u.started <= young_after]
    result.aborted_uploads, result.aborted_bytes = len(stale), sum(u.size for u in stale)
    if dry_run:
        return
    ws.storage.delete_objects(result.deleted)
    if stale:
        aborted = ws.storage.abort_incomplete_uploads(young_after)
        result.aborted_uploads, result.aborted_bytes = len(aborted), sum(u.size for u in aborted)
    if policy.delete_versions:
        combined = ws.versioning.list_versions("checkpoint")
        for kind, records in to_mark.items():
            named = {str(c.metadata.get(kind)) for c in combined}  # a combined version must keep naming them
            doomed_versions = [r for r in records if r.version not in named]
            ws.versioning.delete_versions(kind, doomed_versions)
            result.deleted_versions[kind] = [r.version for r in doomed_versions]


def incomplete_uploads(ws: Workspace) -> list[IncompleteUpload]:
    """The store's incomplete multipart uploads under this model (optional in the storage protocol)."""
    return list(ws.storage.incomplete_uploads())


@dataclass
class UsageRow:
    """One version's bytes in the store (``shared``: also used by another version)."""

    kind: str
    version: str
    size: int
    shared: int
    pruned: str = ""
    #: this version's share of the stored bytes: each object's size divided by the
    #: number of versions using it, so the shares add up to what is stored once
    stored: int = 0
    #: the version's files as they are, whole (what a whole-file store would hold for it)
    file_bytes: int = 0


def disk_usage(managers: Sequence[Target]) -> dict[str, Any]:
    """Bytes per version, bytes shared between versions, the store's total, and what the
    versions would take stored as whole files, one copy per version (the saving of a
    deduplicating layout, and of versions sharing unchanged files)."""
    ws = managers[0].ws
    ws.require_initialized()
    ws.repair()
    fetch_versions(ws, required=False)
    sizes = {o.oid: o.size for o in ws.storage.inventory()}
    uses: dict[str, int] = {}
    per_version: list[tuple[str, VersionRecord, set[str], str, int]] = []
    for m in managers:
        pruned = ws.versioning.pruned_versions(m.spec.kind)
        for record in m.records():
            objects = set(version_objects(m, record.ref))
            info = m.pointer_info(record.ref)
            per_version.append((m.spec.kind, record, objects, pruned.get(record.version, ""), info.size if info else 0))
            for oid in objects:
                uses[oid] = uses.get(oid, 0) + 1
    rows = [
        UsageRow(
            kind,
            record.version,
            sum(sizes.get(o, 0) for o in objects),
            sum(sizes.get(o, 0) for o in objects if uses[o] > 1),
            pruned,
            round(sum(sizes.get(o, 0) / uses[o] for o in objects)),
            file_bytes,
        )
        for kind, record, objects, pruned, file_bytes in per_version
    ]
    referenced = sum(sizes[o] for o in uses if o in sizes)
    total = sum(sizes.values())
    incomplete = incomplete_uploads(ws)
    return {
        "versions": [row.__dict__ for row in rows],
        "total_bytes": total,
        "objects": len(sizes),
        "unreferenced_bytes": total - referenced,
        "referenced_bytes": referenced,
        #: every version's files whole, once per version: what storing whole files costs
        "whole_file_bytes": sum(row.file_bytes for row in rows),
        "incomplete_uploads": len(incomplete),
        "incomplete_upload_bytes": sum(u.size for u in incomplete),
    }


def list_price_per_gb_month(config: Any) -> float:
    """The list price of a GB-month of the storage backend in force (``cpv du --cost``'s
    default): what its plugin declares, else S3 Standard's."""
    from cpv_core.domain.cost import DEFAULT_PRICE_PER_GB_MONTH
    from cpv_core.plugin.manager import Plugins

    name = config.backend_name("storage")
    for info in Plugins().storage_backends():
        if info.name == name and info.list_price_per_gb_month is not None:
            return info.list_price_per_gb_month
    return DEFAULT_PRICE_PER_GB_MONTH

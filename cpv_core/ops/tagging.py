"""Allocating versions: create one version per kind at HEAD and publish them all
in one atomic push, retrying with the next free versions when someone else
took them first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cpv_core.domain.backoff import Backoff
from cpv_core.domain.records import validate_message
from cpv_core.domain.versions import Version, next_version
from cpv_core.errors import GitError, VersionExistsError
from cpv_core.faults import crash_point
from cpv_core.plugin.protocols import PushRejected, RejectReason, VersionRecord
from cpv_core.trust import visible
from cpv_core.workspace import announce as events
from cpv_core.workspace import gc_fence
from cpv_core.workspace.history import fetch_versions, parse_tag_arg
from cpv_core.workspace.workspace import Workspace

if TYPE_CHECKING:
    from cpv_core.ops.target import Target

logger = logging.getLogger("cpv")

#: allocating a version while other members take the next ones
TAG_BACKOFF = Backoff(attempts=24, budget=120.0)


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
    check: Callable[[], None] | None = None,
) -> dict[str, Version]:
    """Create one version per kind at HEAD and publish them in one atomic push.

    The versions are computed from this workspace's view; unless the versioning
    backend publishes conditionally (the remote refuses a publish from a stale
    view), the view is fetched first. When the remote rejects a tag because
    someone else just took it, or the view was stale, every local tag of this
    attempt is deleted, the tags are fetched again, ``check`` runs again on the
    fresh view and the next versions are tried (bounded, with jitter). An
    explicit version that exists is an error; cpv never forces a tag.
    """
    if not dry_run:
        gc_fence.refuse_unconfirmed(ws, kinds)  # an upload killed while a gc ran must settle first
    if not dry_run and not ws.versioning.publishes_conditionally():
        fetch_versions(ws, required=True)
    tried, refresh = 0, ""
    for attempt in TAG_BACKOFF.rounds():
        tried = attempt + 1
        if refresh:  # after the wait, so the next versions come from a fresh view
            if refresh == "non-fast-forward":
                ws.versioning.push_branch()  # rebase on the moved branch; the tags are recreated at the new HEAD
            ws.versioning.fetch()
            refresh = ""
        if check is not None:
            check()
        versions = choose_versions(ws, kinds, explicit, major, warn=not attempt)
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
        outcome = publish_attempt(ws, versions, build, explicit, with_branch=with_branch)
        if isinstance(outcome, str):
            refresh = outcome
            continue
        echo("tagged " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        events.version_published(ws, outcome)
        return versions
    raise GitError(f"could not allocate a version after {tried} attempts (heavy contention)", fix="run the command again")


def choose_versions(ws: Workspace, kinds: list[str], explicit: Version | None, major: bool, *, warn: bool) -> dict[str, Version]:
    """The version each kind gets from this view of the history: ``explicit`` (refused
    when any kind has it already) or the next free one."""
    existing = {k: ws.versioning.list_versions(k) for k in kinds}
    if explicit is not None:
        taken = [f"{k} {explicit}" for k in kinds if any(r.version == str(explicit) for r in existing[k])]
        if taken:
            free = {k: str(next_version(Version.parse(r.version) for r in existing[k])) for k in kinds}
            raise VersionExistsError(
                f"version already exists on the remote: {', '.join(taken)}",
                fix="choose another version; next free: " + ", ".join(f"{k} {v}" for k, v in free.items()),
            )
    if explicit is None and warn:
        warn_at_ceiling(existing)
    return {k: explicit or next_version((Version.parse(r.version) for r in existing[k]), major=major) for k in kinds}


def publish_attempt(
    ws: Workspace,
    versions: Mapping[str, Version],
    build: Callable[[Mapping[str, Version]], dict[str, tuple[str, Mapping[str, Any]]]],
    explicit: Version | None,
    *,
    with_branch: bool,
) -> list[VersionRecord] | str:
    """Create the versions locally and publish them in one atomic push: the published
    records, or (when the remote refused for a reason a fresh view cures) that reason.
    Whatever this attempt created locally is deleted unless it was published."""
    created: list[tuple[str, Version]] = []
    try:
        records = []
        for kind, (message, metadata) in build(versions).items():
            records.append(ws.versioning.create_version(kind, versions[kind], message, metadata))
            created.append((kind, versions[kind]))
        crash_point("tag.created")
        ws.versioning.publish(records, with_branch=with_branch)
        crash_point("tag.published")
        return records
    except PushRejected as exc:
        for kind, version in created:
            ws.versioning.delete_local_version(kind, version)
        if exc.reason not in RejectReason.retryable():
            raise GitError(
                f"the remote refused {', '.join(exc.rejected)}: {visible(exc.summary)}; nothing was published",
                fix="run the command again (cpv fetches and rebases first)",
            ) from None
        if exc.reason is RejectReason.EXISTS and explicit is not None:
            raise VersionExistsError(
                f"{', '.join(exc.rejected)} was just created on the remote by someone else", fix="choose another version"
            ) from None
        logger.info("%s: %s; fetching and trying again", ", ".join(exc.rejected), exc.summary)
        return exc.reason.value
    except BaseException:
        for kind, version in created:
            ws.versioning.delete_local_version(kind, version)
        raise


def refuse_duplicate(mgr: Target, digest: str, head: str | None) -> None:
    """A version whose content an existing version of the kind already has is a phantom:
    refuse it, naming that version, unless the caller allows duplicates or the metrics
    recorded since differ from that version's (the same bytes evaluated anew)."""
    fix = f"upload a new checkpoint first, or {mgr.hint(cli='pass --allow-duplicate', python='pass allow_duplicate=True')} to tag it again"
    records = mgr.records()
    already = [r.version for r in records if r.commit == head]
    if already:
        raise VersionExistsError(f"the current {mgr.spec.kind} is already version {already[-1]}", fix=fix)
    same = mgr.same_content_as(digest, records)
    if same:
        recorded = next((dict(r.metadata.get("metrics") or {}) for r in records if r.version == same), {})
        current = mgr.current_metrics()
        if current and current != recorded:
            return  # the same bytes, re-evaluated: new metrics are a version worth having (W&B and MLflow log them so)
        raise VersionExistsError(f"the current {mgr.spec.kind} is identical to {same}", fix=fix)


def warn_at_ceiling(existing: Mapping[str, Sequence[VersionRecord]]) -> None:
    """One line per kind with versions at the ceiling, which numbering does not go on from."""
    for kind, records in existing.items():
        ceiling = [r.version for r in records if Version.parse(r.version).at_ceiling]
        if ceiling:
            logger.warning(
                "%s %s: at the ceiling (a component of 999999), numbering does not go on from it; "
                "remove it from the remote with `git push origin --delete %s/%s` if nobody meant it",
                kind,
                ", ".join(ceiling),
                kind,
                ceiling[0],
            )


def tag(mgr: Target, version_tag: str | None, message: str | None, **kwargs: Any) -> str:
    dry_run, _ = mgr.options(kwargs)
    explicit = parse_tag_arg(version_tag)
    message = validate_message(message)
    ws = mgr.ws
    ws.require_initialized()
    with ws.lock(), ws.versioning.read_scope():  # the history is read once (nobody else changes it under the lock)
        info = mgr.check_taggable()

        def check() -> None:  # on the view each attempt uses (refreshed after a stale publish)
            if explicit is None and not kwargs.get("allow_duplicate"):  # naming a version explicitly is deliberate (a promotion)
                refuse_duplicate(mgr, info.digest, ws.versioning.head())

        def build(versions: Mapping[str, Version]) -> dict[str, tuple[str, Mapping[str, Any]]]:
            return {mgr.spec.kind: (message or "", mgr.tag_metadata(info))}

        versions = allocate_and_publish(
            ws, [mgr.spec.kind], explicit, bool(kwargs.get("major")), build, dry_run=dry_run, plan=mgr.plan, echo=mgr.echo, check=check
        )
        return str(versions[mgr.spec.kind])

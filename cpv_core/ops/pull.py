"""Pulling: bring the workspace's branch and content up to the remote's,
never over content that was changed here and not uploaded."""

from __future__ import annotations

from collections.abc import Callable

from cpv_core.errors import WorkspaceDirtyError
from cpv_core.paths import remove_path
from cpv_core.plugin.protocols import TrackedArtifact
from cpv_core.workspace.history import fetch_versions
from cpv_core.workspace.meta import DEFAULT_FILES
from cpv_core.workspace.workspace import Workspace


def pull_workspace(ws: Workspace, echo: Callable[[str], None], *, dry_run: bool = False) -> list[str]:
    """Bring the workspace up to the remote: the branch, then the content of
    every target whose pointer moved (verified). Refuses over content that
    changed since it was last uploaded, reverted or pulled. Returns the
    targets that were updated (``dry_run``: would be; only the fetch happens)."""
    ws.require_initialized()
    with ws.lock():
        fetch_versions(ws, required=True)
        incoming = incoming_rev(ws)
        if incoming is not None:  # decided before anything moves: a refused pull changes nothing
            for kind in DEFAULT_FILES:
                refuse_over_unsaved_work(ws, kind, ws.file_at(kind, incoming), incoming)
        if dry_run:
            moving = [] if incoming is None else would_update(ws, incoming)
            echo("[dry-run] would update " + ", ".join(moving) if moving else "[dry-run] already up to date")
            return moving
        before = {kind: ws.file_for(kind) for kind in DEFAULT_FILES}
        ws.versioning.sync_branch()
        ws.reload_meta()
        updated = []
        for kind in DEFAULT_FILES:
            rel = ws.file_for(kind)
            if rel != before[kind]:
                leave_old_path(ws, before[kind], rel, echo)
            info = artifact_at(ws, rel, "HEAD")
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
                    raise unsaved_work_error(kind, rel)
            ws.storage.checkout([rel])
            ws.set_content_base(rel, info.digest)
            updated.append(rel)
        echo("updated " + ", ".join(updated) if updated else "already up to date")
        return updated


def would_update(ws: Workspace, incoming: str) -> list[str]:
    """The targets whose content a pull to ``incoming`` would replace."""
    moving = []
    for kind in DEFAULT_FILES:
        rel = ws.file_at(kind, incoming)
        info = artifact_at(ws, rel, incoming)
        if info is not None and (ws.content_base(rel).get("digest") != info.digest or not ws.target_path_of(rel).exists()):
            moving.append(rel)
    return moving


def artifact_at(ws: Workspace, rel: str, rev: str) -> TrackedArtifact | None:
    """What the pointer of ``rel`` records at ``rev`` (None when there is none)."""
    pointer = ws.versioning.read_file(rev, ws.storage.pointer_path(rel))
    return ws.storage.describe_pointer(rel, pointer) if pointer else None


def incoming_rev(ws: Workspace) -> str | None:
    """The fetched remote branch a pull moves to (None for a backend that does not say)."""
    return ws.versioning.remote_branch_rev()


def refuse_over_unsaved_work(ws: Workspace, kind: str, rel: str, incoming: str) -> None:
    """Raise :func:`unsaved_work_error` when pulling ``incoming`` would replace content at
    ``rel`` that was changed here and never uploaded (nothing has moved yet)."""
    info = artifact_at(ws, rel, incoming)
    target = ws.target_path_of(rel)
    if info is None or not target.exists():
        return
    base = ws.content_base(rel)
    if base.get("digest") == info.digest:
        return  # the pointer does not move; local changes, if any, stay the user's own
    if not base and ws.storage.status([rel]).get(rel) == "unchanged":
        return
    if not ws.content_unchanged_since_base(rel):
        raise unsaved_work_error(kind, rel)


def unsaved_work_error(kind: str, rel: str) -> WorkspaceDirtyError:
    """A pull refused over changes never uploaded, with the two things that work."""
    return WorkspaceDirtyError(
        f"{rel} has changes that were never uploaded and a teammate uploaded a newer version; "
        "pulling would replace yours, so nothing was changed",
        fix=f"keep yours as the newest upload, on top of theirs (`cpv {kind} upload`), or keep a copy of yours and take "
        f"theirs (`mv {rel} {rel}.mine && cpv pull`)",
    )


def leave_old_path(ws: Workspace, old: str, new: str, echo: Callable[[str], None]) -> None:
    """A teammate moved a target (``model.bin`` -> ``hf-model/``): the old path
    leaves the workspace when it holds exactly what was last uploaded, pulled or
    reverted there (it is stored); otherwise it stays, and the user is told."""
    path = ws.target_path_of(old)
    if not (path.exists() or path.is_symlink()):
        return
    if ws.content_unchanged_since_base(old):
        remove_path(path)
        echo(f"{old} was replaced by {new} upstream (removed here; it is stored)")
    else:
        echo(f"{old} was replaced by {new} upstream; your copy has changes that were never uploaded, so it stays")

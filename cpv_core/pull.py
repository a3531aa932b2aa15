"""Pulling: bring the workspace's branch and content up to the remote's,
never over content that was changed here and not uploaded."""

from __future__ import annotations

from collections.abc import Callable

from .errors import WorkspaceDirtyError
from .history import fetch_versions
from .workspace import Workspace


def pull_workspace(ws: Workspace, echo: Callable[[str], None]) -> list[str]:
    """Bring the workspace up to the remote: the branch, then the content of
    every target whose pointer moved (verified). Refuses over content that
    changed since it was last uploaded, reverted or pulled. Returns the
    targets that were updated."""
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

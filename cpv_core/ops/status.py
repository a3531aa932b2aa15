"""Where a workspace stands: its content against what is committed and versioned,
and its branch against the remote's (``cpv status``, like ``git status`` for checkpoints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cpv_core.workspace.history import fetch_versions, latest_record
from cpv_core.workspace.meta import DEFAULT_FILES
from cpv_core.workspace.workspace import Workspace

if TYPE_CHECKING:
    from cpv_core.ops.target import Target


@dataclass(frozen=True)
class TargetStatus:
    """One target (model or data).

    :param state: ``unchanged``, ``modified`` (differs from its committed pointer),
        ``missing`` or ``untracked`` (never uploaded).
    :param committed: the digest the committed pointer names ("" when none).
    :param version: the newest version holding exactly that content, if any.
    :param latest: the newest version of the kind, if any.
    :param changes: for a modified target, which files differ from its pointer
        (``{relpath: "added" | "removed" | "modified"}``; empty when the backend cannot tell).
    """

    kind: str
    path: str
    state: str
    committed: str = ""
    version: str | None = None
    latest: str | None = None
    changes: dict[str, str] = field(default_factory=dict)
    #: the remote branch holds a newer upload of this target (a pull would bring it)
    upstream_changed: bool = False


@dataclass(frozen=True)
class WorkspaceStatus:
    """The whole workspace: every target, and the branch against the remote."""

    team: str
    model: str
    ahead: int
    behind: int
    targets: list[TargetStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``cpv status --json``)."""
        return asdict(self)


def workspace_status(ws: Workspace, *, fetch: bool = True) -> WorkspaceStatus:
    """Fetch (offline: warn and use what is known locally), then describe every target."""
    ws.require_initialized()
    ws.repair()
    if fetch:
        fetch_versions(ws, required=False)
    targets = []
    ahead, behind = ws.versioning.divergence()
    incoming = ws.versioning.remote_branch_rev() if behind else None
    for kind in DEFAULT_FILES:
        rel = ws.file_for(kind)
        pointer = ws.versioning.read_file("HEAD", ws.storage.pointer_path(rel))
        info = ws.storage.describe_pointer(rel, pointer) if pointer else None
        state = ws.storage.status([rel]).get(rel, "missing")
        if info is None and state == "missing":
            continue  # nothing of this kind, here or committed
        records = ws.versioning.list_versions(kind)
        same = [r.version for r in records if info is not None and r.metadata.get("digest") == info.digest]
        targets.append(
            TargetStatus(
                kind=kind,
                path=rel,
                state=state,
                committed=info.digest if info else "",
                version=same[-1] if same else None,
                latest=latest_record(records).version if records else None,
                changes=ws.storage.changes(rel) if state == "modified" else {},
                upstream_changed=incoming is not None
                and ws.versioning.read_file(incoming, ws.storage.pointer_path(ws.file_at(kind, incoming))) != pointer,
            )
        )
    return WorkspaceStatus(team=ws.team, model=ws.model, ahead=ahead, behind=behind, targets=targets)


def status(mgr: Target) -> WorkspaceStatus:
    """``cpv status`` of the target's workspace (every target in it, and the branch)."""
    return workspace_status(mgr.ws)

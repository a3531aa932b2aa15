"""Setting a workspace up: create it with its remote repository and storage, or
clone the remote a teammate already created; on failure nothing is left."""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING

from cpv_core.errors import RepositoryError
from cpv_core.paths import make_private_dirs
from cpv_core.workspace.workspace import SCAFFOLD, readme_text

if TYPE_CHECKING:
    from cpv_core.ops.target import Target

logger = logging.getLogger("cpv")


def init_workspace(mgr: Target, dry_run: bool) -> bool:
    """Create the workspace and its remote, or clone an existing remote.

    Returns True when something was created. On failure, whatever this
    call created is removed again.
    """
    ws = mgr.ws
    if ws.is_initialized():
        logger.info("workspace %s already initialised", ws.path)
        return False
    if ws.versioning.exists():
        raise RepositoryError(
            f"{ws.path} is already a git repository that cpv did not create",
            fix="choose another --repo-path (cpv manages one repository per team/model)",
        )
    if dry_run:
        mgr.plan(
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
            mgr.echo(f"cloning existing {ws.team}/{ws.model} from {url}")
            ws.versioning.clone(url)
            ws.reload_meta()
            ws.check_identity()  # another team/model behind the same repository name is refused
            if ws.requested_layout and ws.requested_layout != ws.layout:
                mgr.echo(
                    f"warning: {ws.team}/{ws.model} keeps the {ws.layout} layout it was created with; --layout {ws.requested_layout} is ignored"
                )
            ws.storage.init()
        else:
            create_new(mgr, url)
    except BaseException:
        if created_root is not None:
            shutil.rmtree(created_root, ignore_errors=True)
        elif ws.path.exists():
            for name in set(os.listdir(ws.path)) - before:
                victim = ws.path / name
                shutil.rmtree(victim, ignore_errors=True) if victim.is_dir() else victim.unlink(missing_ok=True)
        raise
    return True


def create_new(mgr: Target, url: str) -> None:
    ws = mgr.ws
    ws.versioning.init(url)
    meta = ws.new_meta(ws.requested_layout)
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
    mgr.echo(f"initialised {ws.team}/{ws.model} at {ws.path}")
    if ws.layout == "tensors":
        mgr.echo(
            "storage layout: tensors (files of 8 MiB and more are stored as chunks, per tensor for .safetensors: a new "
            "version stores only what changed); `dvc pull` cannot read these versions: `cpv model export --dvc -o DIR` "
            "writes one as plain DVC objects"
        )

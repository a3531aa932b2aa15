"""The branch: create or clone the repository (or a bare mirror), commit,
its divergence from the remote, incoming changes checked before a rebase,
and the training code's origin."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpv_core.errors import GitError
from cpv_core.trust import visible
from cpv_plugins.git.plumbing import (
    GitCommandFailed,
    command_error,
    ensure_dir_empty_or_missing,
    git_env,
    run_git,
    validate_remote_url,
)
from cpv_plugins.git.refs import (
    BRANCH,
)
from cpv_plugins.git.repository import GitRepository

logger = logging.getLogger("cpv.git")


class BranchRepository(GitRepository):
    """The repository with its branch: set-up, commits, divergence, incoming checks."""

    def init(self, remote_url: str) -> None:
        import git

        validate_remote_url(remote_url)
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            repo = git.Repo.init(str(self.path), initial_branch=BRANCH)
        except git.GitCommandError as exc:
            raise command_error(f"initialise a repository in {self.path}", exc) from None
        repo.git.update_environment(**git_env(self.ctx.env))
        self._repo = repo
        self._run("add the remote", "remote", "add", "--", "origin", remote_url)
        self._ensure_identity()

    def clone(self, remote_url: str) -> bool:
        import git

        validate_remote_url(remote_url)
        ensure_dir_empty_or_missing(self.path)
        try:
            repo = git.Repo.clone_from(remote_url, str(self.path), env=git_env(self.ctx.env), multi_options=["--origin=origin"])
        except git.GitCommandError as exc:
            raise command_error(f"clone {remote_url}", exc, fix="check the hosting configuration and your access") from None
        repo.git.update_environment(**git_env(self.ctx.env))
        self._repo = repo
        self._ensure_identity()
        return repo.head.is_valid()

    def mirror(self, remote_url: str) -> None:
        """A bare repository at the workspace path holding the remote's tags and branch
        (refs and the objects they name; no working tree), created or brought up to date."""
        import git

        validate_remote_url(remote_url)
        if not (self.path / "HEAD").is_file():
            # a private cache: one a killed run left half made is started again
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True, exist_ok=True)
            git.Repo.init(str(self.path), bare=True, initial_branch=BRANCH)
        self._repo = None
        self._run(
            f"read the versions of {remote_url}",
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--end-of-options",
            remote_url,
            f"+refs/heads/{BRANCH}:refs/heads/{BRANCH}",
            "+refs/tags/*:refs/tags/*",
            fix="check the remote with `cpv validate`",
        )

    def remote_has_history(self, remote_url: str) -> bool:
        import git

        validate_remote_url(remote_url)
        try:
            out = git.Git().execute(["git", "ls-remote", "--heads", "--end-of-options", remote_url], env=git_env(self.ctx.env))
        except git.GitCommandError as exc:
            raise command_error(f"reach {remote_url}", exc, fix="check the remote with `cpv validate`") from None
        return bool(str(out).strip())

    def commit(self, paths: Sequence[str], message: str) -> str:
        self._ensure_identity()
        self._run("stage files", "add", "--", *paths)
        with self._message_file(message) as path:
            self._run("commit", "commit", "--no-verify", "--quiet", "--cleanup=verbatim", f"--file={path}", "--", *paths)
        return str(self._run("read the new commit", "rev-parse", "HEAD")).strip()

    def divergence(self) -> tuple[int, int]:
        if self.head() is None:
            return 0, 0
        if not self._remote_branch_exists():
            return int(str(self._run("count local commits", "rev-list", "--count", "HEAD")).strip()), 0
        counts = str(
            self._run("compare with the remote branch", "rev-list", "--left-right", "--count", f"HEAD...refs/remotes/origin/{BRANCH}")
        )
        ahead, behind = (int(n) for n in counts.split())
        return ahead, behind

    def undo_commit(self, rev: str, paths: Sequence[str]) -> None:
        # --keep: tracked files go back to ``rev`` (a rebase's incoming changes too),
        # ignored files (the model itself) are never touched
        self._run("undo the unpublished commit", "reset", "--quiet", "--keep", rev)

    def incoming_changes(self) -> list[tuple[str, str]]:
        """``(mode, path)`` of every path the remote branch changed since the
        common ancestor with HEAD (what a rebase would write into the workspace)."""
        remote = f"refs/remotes/origin/{BRANCH}"
        base = str(self._run("find the common history", "merge-base", "HEAD", remote)).strip()
        raw = self._run(
            "list incoming changes", "diff", "--raw", "-z", "--no-renames", "--no-ext-diff", base, remote, "--", stdout_as_string=False
        )
        fields = bytes(raw).split(b"\0")
        changes = []
        for meta, path in zip(fields[0::2], fields[1::2]):
            parts = meta.decode("ascii", errors="replace").lstrip(":").split(" ")
            if len(parts) >= 2:
                changes.append((parts[1], path.decode("utf-8", errors="surrogateescape")))
        return changes

    def _check_incoming(self) -> None:
        """Refuse remote commits that touch anything but what cpv shares (see BackendContext.accepts_incoming)."""
        accepts = self.ctx.accepts_incoming
        if accepts is None:
            return
        remote = f"refs/remotes/origin/{BRANCH}"
        changes = self.incoming_changes()
        changed = {path for _, path in changes}

        def incoming(path: str) -> bytes | None:
            return self.read_file(remote, path) if path in changed else self.read_file("HEAD", path)

        refused = [path for mode, path in changes if mode in {"120000", "160000"} or not accepts(path, incoming)]
        if refused:
            shown = ", ".join(visible(p) for p in refused[:5]) + (" ..." if len(refused) > 5 else "")
            raise GitError(
                f"the remote branch has commits by someone else that change {shown}: cpv accepts only pointer files, "
                "metrics.log, README.md, .gitignore, stage rules and where a target lives from others (anything else could replace files on this machine); "
                "nothing in the workspace was changed",
                fix="look at them with `git log -p origin/main` in the workspace and have them reverted on the remote",
            )

    def _rebase_on_remote(self) -> None:
        self._check_incoming()
        # While rebasing, "theirs" is the local commit being replayed: the newest
        # upload wins for pointer files; metrics.log merges by union (.gitattributes).
        try:
            self._run("rebase on the remote branch", "rebase", "--quiet", "--autostash", "-X", "theirs", f"refs/remotes/origin/{BRANCH}")
        except GitError:
            if self._rebase_in_progress():  # a rebase that could not even start has nothing to abort
                self._run("abort the rebase", "rebase", "--abort")
            raise

    def _rebase_in_progress(self) -> bool:
        git_dir = self.path / ".git"
        return (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()

    def code_origin(self, where: Path) -> dict[str, Any] | None:
        """The git repository around ``where`` (the training code, not this workspace): its
        commit, branch ("" when detached) and whether tracked files have uncommitted changes;
        None outside a repository or before its first commit. Nothing it holds is read but that."""

        def ask(*args: str) -> str:
            return str(run_git(args, cwd=where, env=self._env)).strip()

        try:
            if Path(ask("rev-parse", "--show-toplevel")).resolve() == self.path.resolve():
                return None  # run inside the workspace: that is the model's history, not the training code
            commit = ask("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
            branch = ask("rev-parse", "--abbrev-ref", "HEAD")
            # no hook or monitor of that repository runs on cpv's behalf
            dirty = bool(ask("-c", "core.fsmonitor=false", "status", "--porcelain", "--untracked-files=no", "--no-renames"))
        except (GitCommandFailed, OSError):
            return None
        return {"commit": commit, "branch": "" if branch == "HEAD" else branch, "dirty": dirty}

    def remote_branch_rev(self) -> str | None:
        """The fetched remote branch (what a pull moves to), None before it exists."""
        ref = f"refs/remotes/origin/{BRANCH}"
        return ref if self._remote_branch_exists() else None

    def is_published(self, rev: str = "HEAD") -> bool:
        """Whether ``rev`` is contained in the remote-tracking branch."""
        if not self._remote_branch_exists():
            return False
        return self._is_ancestor(rev, f"refs/remotes/origin/{BRANCH}")

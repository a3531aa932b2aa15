"""Running git for the default plugins: environment, identity, error mapping."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from cpv_core.errors import GitError, ValidationError

# Never let git wait for a password or open an editor inside cpv.
BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_EDITOR": "true", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


def git_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Environment for git subprocesses: cpv's safe defaults plus ``extra``."""
    env = dict(BASE_ENV)
    env.update(extra)
    return env


def ls_remote_heads(url: str, env: Mapping[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``git ls-remote --heads URL`` with prompts off and ``env`` over the process
    environment: reachability, authentication and existence of a repository in one
    round trip (a hosting backend's check; the caller reads ``returncode`` and ``stderr``)."""
    return subprocess.run(
        ["git", "ls-remote", "--heads", "--end-of-options", url],
        env={**os.environ, **git_env(env)},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def validate_remote_url(url: str) -> str:
    """Refuse URLs git would treat as options or as the ``ext::`` transport."""
    if not url or url.startswith("-") or "::" in url.split("/", 1)[0] or url.lower().startswith("ext::"):
        raise ValidationError(
            f"remote URL {url!r} is not allowed",
            fix="use an ssh://, https:// or file path URL that does not start with '-' and has no '<transport>::' prefix",
        )
    return url


def default_identity() -> tuple[str, str]:
    """A committer identity for machines where git has none configured."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = "cpv"
    host = socket.gethostname() or "localhost"
    return user, f"{user}@{host}"


def open_repo(path: Path, env: Mapping[str, str]) -> Any:
    """A GitPython ``Repo`` for ``path`` whose git commands use ``env``."""
    import git

    repo = git.Repo(str(path))
    repo.git.update_environment(**git_env(env))
    return repo


class GitCommandFailed(Exception):
    """A git command that exited with an error; ``stdout`` and ``stderr`` as git wrote them."""

    def __init__(self, args: Sequence[str], status: int, stdout: str, stderr: str) -> None:
        super().__init__(f"git {' '.join(args[:2])} exited with {status}: {stderr.strip()}")
        self.status, self.stdout, self.stderr = status, stdout, stderr


def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str | None],
    stdin: IO[bytes] | None = None,
    as_text: bool = True,
    strip_newline: bool = True,
) -> str | bytes:
    """Run ``git ARGS`` in ``cwd`` and return its output (one trailing newline removed, as
    GitPython does). ``env`` entries override the process environment; ``None`` removes one.
    A plain subprocess rather than GitPython's ``Git.execute``: importing GitPython costs
    ~30 ms, a tenth of `cpv model list`, and its first command runs `git version` twice.

    :raises GitCommandFailed: on a non-zero exit.
    """
    full_env = dict(os.environ)
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, stdin=stdin if stdin is not None else subprocess.DEVNULL, capture_output=True, check=False
    )
    out = proc.stdout[:-1] if strip_newline and proc.stdout.endswith(b"\n") else proc.stdout
    if proc.returncode != 0:
        raise GitCommandFailed(args, proc.returncode, out.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
    return out.decode("utf-8", "replace") if as_text else out


def command_error(action: str, exc: Exception, *, fix: str | None = None) -> GitError:
    """Turn a failed git command (:class:`GitCommandFailed`, or GitPython's
    ``GitCommandError``) into a :class:`GitError` with git's own reason."""
    stderr = getattr(exc, "stderr", "") or ""
    reason = " ".join(line.strip() for line in str(stderr).strip().splitlines() if line.strip())
    reason = reason.replace("stderr: ", "").strip("' ") or str(exc)
    return GitError(
        f"git could not {action}: {reason}",
        fix=fix
        or "run the command again (cpv repairs interrupted runs); if it fails again, "
        "look at `git status` in the workspace and run cpv with -v",
    )


def ensure_dir_empty_or_missing(path: Path) -> None:
    """Raise when ``path`` exists and is not empty (clone needs an empty target)."""
    if path.exists() and any(path.iterdir()):
        raise GitError(
            f"cannot clone into {path}: the directory is not empty",
            fix="choose another --repo-path, or move its files away first",
        )

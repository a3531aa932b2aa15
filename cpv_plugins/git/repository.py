"""One git repository driven by subprocesses: the environment every command
runs with (the user's identity, or a fallback passed in the environment),
single and batched reads, fetch, atomic pushes, tags and cpv's private markers."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from cpv_core.domain.versions import Version
from cpv_core.errors import GitError
from cpv_core.plugin.protocols import BackendContext, PushRejected
from cpv_plugins.git.plumbing import (
    GitCommandFailed,
    command_error,
    default_identity,
    git_env,
    open_repo,
    run_git,
)
from cpv_plugins.git.refs import (
    ATOMIC_FOLLOWERS,
    BRANCH,
    LATEST_PREFIX,
    READ_ONLY_COMMANDS,
    REF_FORMAT,
    SEEN_PREFIX,
    TAG_RE,
    classify_rejection,
    iter_ref_objects,
    parse_cat_file_batch,
    parse_push_porcelain,
)

logger = logging.getLogger("cpv.git")

#: the variables a fallback identity is passed in
IDENTITY_ENV = ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")

_identity_warned = False


class GitRepository:
    """A git repository run by subprocesses (:func:`~cpv_plugins.git.plumbing.run_git`); GitPython for
    init, clone and the one long-lived ``cat-file`` process behind single reads."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.path = Path(ctx.workspace)
        self._repo: Any = None
        #: the environment of every git command: cpv's safe defaults, the hosting backend's
        #: credentials, and a fallback identity when git has none (None unsets a variable)
        self._env: dict[str, str | None] = dict(git_env(ctx.env))
        #: open :meth:`read_scope` calls; while any is open, :meth:`ref_listing` is kept
        self._scopes = 0
        #: the version tags and lease refs of one ``for-each-ref``, while in a read scope
        self._listing: list[tuple[str, str, str, str, bytes]] | None = None

    # -- naming scheme ---------------------------------------------------------
    def tag_name(self, kind: str, version: Version) -> str:
        return f"{kind}/{version}"

    def parse_tag(self, name: str) -> tuple[str, Version] | None:
        name = name.removeprefix("refs/tags/")
        match = TAG_RE.fullmatch(name)
        if not match or not Version.is_valid(match.group("version")):
            return None
        return match.group("kind"), Version.parse(match.group("version"))

    # -- repository ----------------------------------------------------------------
    @property
    def repo(self) -> Any:
        if self._repo is None:
            try:
                self._repo = open_repo(self.path, self.ctx.env)
            except Exception as exc:  # noqa: BLE001 - InvalidGitRepositoryError, NoSuchPathError
                raise GitError(
                    f"{self.path} is not a git repository ({type(exc).__name__})",
                    fix="run `cpv init model` (or import_model_init()) first",
                ) from None
        return self._repo

    def _run(
        self,
        action: str,
        *args: str,
        fix: str | None = None,
        istream: IO[bytes] | None = None,
        stdout_as_string: bool = True,
        strip_newline_in_stdout: bool = True,
    ) -> Any:
        try:
            return self._git(*args, istream=istream, stdout_as_string=stdout_as_string, strip_newline_in_stdout=strip_newline_in_stdout)
        except GitCommandFailed as exc:
            raise command_error(action, exc, fix=fix) from None

    def _git(
        self, *args: str, istream: IO[bytes] | None = None, stdout_as_string: bool = True, strip_newline_in_stdout: bool = True
    ) -> Any:
        """``git ARGS`` in the workspace with this backend's environment.

        :raises GitCommandFailed: on a non-zero exit; :class:`GitError` when the workspace holds no repository.
        """
        if not (self.path / ".git").exists() and not (self.path / "HEAD").is_file():  # neither a workspace nor a mirror
            raise GitError(f"{self.path} is not a git repository", fix="run `cpv init model` (or import_model_init()) first")
        if args[0] not in READ_ONLY_COMMANDS:
            self._listing = None  # this command may change refs: the next read lists them afresh
        return run_git(args, cwd=self.path, env=self._env, stdin=istream, as_text=stdout_as_string, strip_newline=strip_newline_in_stdout)

    @contextmanager
    def read_scope(self) -> Iterator[None]:
        """Answer reads of the version tags and lease refs from one listing until this
        backend runs a git command that may change refs (see the protocol)."""
        self._scopes += 1
        try:
            yield
        finally:
            self._scopes -= 1
            if not self._scopes:
                self._listing = None

    def ref_listing(self, pattern: str = "refs/tags/") -> list[tuple[str, str, str, str, bytes]]:
        """``(ref, type, object, peeled, raw)`` of the refs under ``pattern`` (a prefix
        ending in ``/``, or one ref). In a :meth:`read_scope`, every tag and lease-seen
        ref is listed by one ``for-each-ref`` and kept; outside one, only ``pattern``."""
        if self._listing is None and not self._scopes:
            out = self._run("list tags", "for-each-ref", f"--format={REF_FORMAT}", pattern, stdout_as_string=False)
            return list(iter_ref_objects(bytes(out)))
        if self._listing is None:
            out = self._run("list tags", "for-each-ref", f"--format={REF_FORMAT}", "refs/tags/", SEEN_PREFIX, stdout_as_string=False)
            self._listing = list(iter_ref_objects(bytes(out)))
        return [row for row in self._listing if (row[0].startswith(pattern) if pattern.endswith("/") else row[0] == pattern)]

    def _set_env(self, **values: str | None) -> None:
        self._env.update(values)
        if self._repo is not None:  # the commands GitPython still runs
            self._repo.git.update_environment(**values)

    def _ensure_identity(self) -> None:
        """Commit as the user's git identity, read afresh for every command that
        records one; only when git has none anywhere, as a fallback passed in the
        environment of cpv's own commands (never written to a config), with one
        warning per process naming the command that sets it."""
        global _identity_warned
        self._forget_frozen_identity()
        missing = self._missing_identity()
        for var in IDENTITY_ENV:  # never a fallback left from an earlier command; the user's own pass through
            self._env.pop(var, None)
        if not missing:
            return
        name, email = default_identity()
        self._set_env(**{var: name if var.endswith("_NAME") else email for var in missing})
        if not _identity_warned:
            _identity_warned = True
            logger.warning(
                "git has no user.name/user.email: committing as %s <%s>; set yours with "
                'git config --global user.name "Your Name" && git config --global user.email you@example.com',
                name,
                email,
            )

    def _missing_identity(self) -> list[str]:
        """The identity variables git would have no value for, among ``GIT_AUTHOR_NAME``,
        ``GIT_COMMITTER_NAME``, ``GIT_AUTHOR_EMAIL`` and ``GIT_COMMITTER_EMAIL``: each is
        taken, as git takes it, from the environment first (as CI systems and clusters set
        it; ``EMAIL`` too for the addresses), then from user.name / user.email in any config
        git reads (asked of git, so includeIf, GIT_CONFIG_GLOBAL and system files count)."""
        environment = {**os.environ, **{k: v for k, v in self.ctx.env.items() if v is not None}}
        configured = {key for key, value in self._user_config() if value.strip()}
        missing = []
        for var in IDENTITY_ENV:
            if environment.get(var, "").strip():
                continue
            if var.endswith("_NAME") and "user.name" in configured:
                continue
            if var.endswith("_EMAIL") and ("user.email" in configured or environment.get("EMAIL", "").strip()):
                continue
            missing.append(var)
        return missing

    def _forget_frozen_identity(self) -> None:
        """cpv 0.1 wrote its fallback identity into the workspace's ``.git/config``,
        freezing it there; remove exactly that (an identity a user set there stays)."""
        entries = self._user_config("--local")
        local = dict(entries)
        if len(local) != len(entries) or (local.get("user.name"), local.get("user.email")) != default_identity():
            return  # not cpv's (a key given twice never was)
        if set(local) == {"user.name", "user.email"}:  # one rewrite of the file: a kill leaves both or neither
            self._run("forget cpv 0.1's identity", "config", "--local", "--remove-section", "user")
            return
        self._run("forget cpv 0.1's identity", "config", "--local", "--unset", "user.name")
        self._run("forget cpv 0.1's identity", "config", "--local", "--unset", "user.email")

    def _user_config(self, *scope: str) -> list[tuple[str, str]]:
        """Every ``user.*`` entry git sees (``scope``: e.g. ``--local`` for the workspace's own
        file only) as ``(lower-cased key, value)``, in one git command; none when unset."""
        try:
            out = str(self._git("config", *scope, "--get-regexp", r"^user\."))
        except GitCommandFailed:
            return []  # exit 1: none set
        return [(key.lower(), value) for key, _, value in (line.partition(" ") for line in out.splitlines())]

    def exists(self) -> bool:
        return (self.path / ".git").is_dir()

    def private_dir(self) -> Path:
        """``.git/cpv``: inside the git directory, which no commit can write into."""
        return self.path / ".git" / "cpv"

    def head(self) -> str | None:
        return self._ref_oid("HEAD^{commit}") or None

    def _ref_oid(self, ref: str) -> str:
        """The object ``ref`` names, or "" when it does not exist."""
        try:
            return str(self._git("rev-parse", "--verify", "--quiet", "--end-of-options", ref)).strip()
        except GitCommandFailed:
            return ""

    def read_file(self, rev: str, path: str) -> bytes | None:
        # one long-lived `git cat-file --batch` answers every read (GitPython keeps it), not a
        # process per read: listing 1000 versions reads each one's workspace.json
        spec = f"{rev}:{path}"
        if "\n" in spec or "\r" in spec or "\0" in spec:  # the batch protocol is one request per line
            return None
        try:
            _, kind, _, data = self.repo.git.get_object_data(spec)
        except ValueError:  # "<spec> missing": no such revision or file
            return None
        return bytes(data) if kind == b"blob" else None

    def read_files(self, requests: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """Many :meth:`read_file` at once: one ``git cat-file --batch`` reads them all
        (requests written in one go, answers parsed in order)."""
        import tempfile

        specs = [f"{rev}:{path}" for rev, path in requests]
        if not specs:
            return []
        if any(c in spec for spec in specs for c in "\n\r\0"):
            return [self.read_file(rev, path) for rev, path in requests]

        def cat_file(mode: str, lines: Sequence[str]) -> bytes:
            with tempfile.TemporaryFile() as requests_file:
                requests_file.write(("\n".join(lines) + "\n").encode())
                requests_file.seek(0)
                return bytes(
                    self._run("read files", "cat-file", mode, istream=requests_file, stdout_as_string=False, strip_newline_in_stdout=False)
                )

        # which blob each request names, then each distinct blob once: a thousand versions
        # mostly share one workspace.json
        blobs = [
            fields[0].decode() if len(fields) == 3 and fields[1] == b"blob" else None
            for fields in (line.split() for line in cat_file("--batch-check", specs).splitlines())
        ]
        distinct = list(dict.fromkeys(b for b in blobs if b is not None))
        contents = dict(zip(distinct, parse_cat_file_batch(cat_file("--batch", distinct), len(distinct)))) if distinct else {}
        return [contents.get(b) if b is not None else None for b in blobs]

    def restore(self, rev: str, paths: Sequence[str]) -> None:
        self._run("restore files", "restore", f"--source={rev}", "--staged", "--worktree", "--", *paths)

    def changed_files(self, paths: Sequence[str] | None = None) -> list[str]:
        args = ["status", "--porcelain", "--untracked-files=no"]
        if paths:
            args += ["--", *paths]
        return [line[3:] for line in str(self._run("read the status", *args)).splitlines() if line.strip()]

    def _local_tags(self) -> dict[str, str]:
        out = str(self._run("list tags", "for-each-ref", "--format=%(objectname) %(refname:strip=2)", "refs/tags/"))
        return {name: oid for oid, _, name in (line.partition(" ") for line in out.splitlines()) if name}

    def _remote_branch_exists(self) -> bool:
        return bool(self._ref_oid(f"refs/remotes/origin/{BRANCH}^{{commit}}"))

    def _push(self, refspecs: Sequence[str], *, atomic: bool = True, options: Sequence[str] = ()) -> None:
        args = ["push", "--porcelain"]
        if atomic:
            args.append("--atomic")
        args += [*options, "--end-of-options", "origin", *refspecs]
        try:
            self._git(*args)
        except GitCommandFailed as exc:
            rows = parse_push_porcelain(str(exc.stdout or ""))
            rejected = [(ref, summary) for flag, ref, summary in rows if flag == "!"]
            if not rejected:
                raise command_error("push to the remote", exc, fix="check the network and `cpv validate`") from None
            primary = [r for r in rejected if not any(m in r[1] for m in ATOMIC_FOLLOWERS)] or rejected
            # a taken version says more than a moved lease (both come together when someone took it)
            primary.sort(key=lambda r: classify_rejection(r[1]) != "exists")
            raise PushRejected([ref for ref, _ in primary], classify_rejection(primary[0][1]), str(exc.stderr or "")) from None
        # refresh the remote-tracking branch without another round trip
        if any(spec.endswith(f"refs/heads/{BRANCH}") for spec in refspecs):
            self._run("update origin/main", "update-ref", f"refs/remotes/origin/{BRANCH}", "HEAD")

    def _branch_refspec(self) -> str:
        return f"refs/heads/{BRANCH}:refs/heads/{BRANCH}"

    def _is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", older, newer)
            return True
        except GitCommandFailed:
            return False

    def _tag(self, name: str, rev: str, message: str) -> None:
        # the message goes through a file, never argv: metrics of any allowed
        # size fit, and no value can be taken for an option
        with self._message_file(message) as path:
            self._run(
                f"create tag {name}",
                "tag",
                "--annotate",
                "--no-sign",
                "--cleanup=verbatim",
                f"--file={path}",
                "--end-of-options",
                name,
                rev,
            )

    @contextmanager
    def _message_file(self, message: str) -> Iterator[str]:
        folder = self.path / ".git" / "cpv"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="message-", suffix=".txt", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(message)
            yield name
        finally:
            Path(name).unlink(missing_ok=True)

    def _no_lease_marker(self) -> Path:
        return self.private_dir() / "no-lease"

    def _unpublished_marker(self) -> Path:
        return self.private_dir() / "unpublished-tags"

    # -- remote ----------------------------------------------------------------------
    def fetch(self) -> None:
        """Fetch the branch and every tag; the remote is the truth for versions.

        ``+`` and ``--prune`` on the tag refspec make local version tags equal
        the remote's: a tag a killed run created but never published is
        removed (and said so in one line), and one the remote has with other
        content (a teammate published that version meanwhile) is replaced,
        so an interrupted publish never leaves the workspace stuck.
        """
        # only a run interrupted between tagging and publishing (its marker says so) can leave
        # local version tags the fetch drops or replaces; otherwise the comparison (two
        # listings of every tag) is skipped
        interrupted = self._unpublished_marker().exists()
        before = self._local_tags() if interrupted else {}
        self._run(
            "fetch from the remote",
            "fetch",
            "--quiet",
            "--no-tags",
            "--prune",
            "origin",
            f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}",
            "+refs/tags/*:refs/tags/*",
            f"+{LATEST_PREFIX}*:{SEEN_PREFIX}*",
            fix="check the network and `cpv validate`",
        )
        self._unpublished_marker().unlink(missing_ok=True)  # the fetch reconciled every local tag
        after = self._local_tags() if interrupted else {}
        dropped = sorted(name for name in before if name not in after and self.parse_tag(name))
        replaced = sorted(name for name in before if name in after and before[name] != after[name] and self.parse_tag(name))
        if dropped:
            logger.warning(
                "removed local version tag(s) %s: the remote does not have them (an interrupted run had not published them)",
                ", ".join(dropped),
            )
        if replaced:
            logger.warning(
                "version tag(s) %s were published by someone else meanwhile; the local ones an interrupted run had left were replaced",
                ", ".join(replaced),
            )

"""Versioning backend ``git-tags``: the model's git repository, versions as annotated tags.

Tag naming scheme: ``{kind}/v{major}.{minor}`` (``model/v1.3``, ``data/v0.4``,
``checkpoint/v1.0``), so model and data keep separate version sequences in one
repository. The tag message is the user's message followed by one line
``cpv-metadata: {json}`` (metrics, hash, size, lineage), so listing versions
with their metrics reads refs only, with no checkout.

Publishing is one ``git push --atomic`` of full refspecs; a tag the remote
already has is reported as :class:`PushRejected` and never forced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from cpv_core import hookimpl
from cpv_core.domain.backoff import Backoff
from cpv_core.domain.records import clean_metadata
from cpv_core.domain.versions import MAX_COMPONENT, Version
from cpv_core.errors import GitError, ValidationError
from cpv_core.plugin.bases import VersioningBackendBase
from cpv_core.plugin.protocols import BackendContext, PushRejected, RejectReason, StageEvent, VersioningBackendInfo, VersionRecord
from cpv_core.trust import visible

from .gitutil import (
    GitCommandFailed,
    command_error,
    default_identity,
    ensure_dir_empty_or_missing,
    git_env,
    open_repo,
    run_git,
    validate_remote_url,
)

logger = logging.getLogger("cpv.git")

BRANCH = "main"
METADATA_PREFIX = "cpv-metadata: "
_TAG_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<version>v\d+\.\d+)$")
# One header line per ref (names and hashes only: git forbids spaces and
# control characters in ref names), then the raw object, framed by its size.
# No user text can break this framing, so no message can forge a record.
_REF_FORMAT = "%(objectname) %(objecttype) %(raw:size) p%(*objectname) %(refname)%0a%(raw)"
_IDENT_RE = re.compile(r"^(?P<name>.*?) <(?P<email>[^<>]*)> (?P<ts>-?\d{1,15}) (?P<tz>[+-]\d{4})$")
#: publishing the branch while other members move it: fetch, replay, push again
BRANCH_PUSH_BACKOFF = Backoff(attempts=40, budget=120.0)
#: a stage change: ``stage/{kind}/{stage}/{n}``, an annotated tag on the version's commit
_STAGE_RE = re.compile(r"^refs/tags/stage/(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<stage>[a-z][a-z0-9_-]{0,31})/(?P<n>[1-9][0-9]{0,5})$")
MAX_FORCED_RULES = 20
#: a version whose content gc removed: ``pruned/{kind}/{version}``
_PRUNED_RE = re.compile(r"^refs/tags/pruned/(?P<kind>[a-z][a-z0-9_-]{0,31})/(?P<version>v\d+\.\d+)$")
# A server-side race on a ref; in an atomic push the refs that did not fail
# themselves are reported "atomic transaction failed" / "atomic push failed".
_RACE_MARKERS = (
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
    "failed to lock",
    "atomic transaction failed",
    "atomic push failed",
)
_ATOMIC_FOLLOWERS = ("atomic transaction failed", "atomic push failed")
#: the version of each kind published last (``refs/cpv/lease/model`` names its tag
#: object): moved under a lease by every publish, so a publish made from a stale view
#: of the versions is refused by the server, and a tag needs no fetch first
LATEST_PREFIX = "refs/cpv/lease/"
#: this workspace's view of the remote's ``refs/cpv/lease/*`` as of the last fetch or publish
SEEN_PREFIX = "refs/cpv/lease-seen/"
#: one ref per ``cpv gc`` run: ``refs/cpv/gc/running/{start}-{nonce}`` while it runs,
#: ``refs/cpv/gc/done/{start}-{nonce}`` once it has deleted (see :mod:`cpv_core.gc_fence`)
GC_PREFIX = "refs/cpv/gc/"
_GC_RUN_RE = re.compile(r"^refs/cpv/gc/(?P<state>running|done)/(?P<run>(?P<start>[0-9]{1,12})-[0-9a-f]{8})$")


def encode_message(message: str, metadata: Mapping[str, Any]) -> str:
    """Tag message: the user's text, a blank line, then the metadata line (always the last line)."""
    text = (message or "").strip()
    line = METADATA_PREFIX + json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{text}\n\n{line}\n" if text else f"{line}\n"


def decode_message(contents: str, where: str = "tag") -> tuple[str, dict[str, Any]]:
    """Inverse of :func:`encode_message`; tolerates tags made by plain git.

    Only the last line is metadata: a user's message that contains a line
    starting with ``cpv-metadata:`` stays part of the message and can never
    replace the metadata cpv wrote after it. A trailing PGP signature is dropped.
    """
    text = contents
    signature = text.rfind("\n-----BEGIN PGP SIGNATURE-----")
    if signature >= 0 and text.rstrip().endswith("-----END PGP SIGNATURE-----"):
        text = text[:signature]  # a signed tag: the signature follows the message
    lines = text.rstrip("\n").split("\n")
    metadata: dict[str, Any] = {}
    if lines and lines[-1].startswith(METADATA_PREFIX):
        raw = lines.pop()[len(METADATA_PREFIX) :]
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            metadata = parsed
        else:
            logger.warning("%s: unreadable cpv metadata was ignored", visible(where))
    return "\n".join(lines).strip(), metadata


def _parse_ident(line: str) -> tuple[str, str]:
    """``(name, ISO-8601 date)`` of a ``tagger``/``committer`` header value."""
    match = _IDENT_RE.fullmatch(line)
    if not match:
        return "", ""
    tz = match.group("tz")
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * (-1 if tz[0] == "-" else 1)
    try:
        when = datetime.fromtimestamp(int(match.group("ts")), timezone(offset)).isoformat()
    except (OverflowError, OSError, ValueError):
        when = ""
    return match.group("name"), when


def parse_object(raw: bytes) -> tuple[dict[str, str], str]:
    """Headers and message of a raw git tag or commit object."""
    text = raw.decode("utf-8", errors="replace")
    head, _, message = text.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        key, _, value = line.partition(" ")
        headers.setdefault(key, value)
    return headers, message


def iter_ref_objects(out: bytes) -> Iterator[tuple[str, str, str, str, bytes]]:
    """``(ref, type, object, peeled, raw)`` from ``for-each-ref --format=_REF_FORMAT`` output."""
    pos = 0
    while pos < len(out):
        end = out.find(b"\n", pos)
        if end < 0:
            return
        fields = out[pos:end].decode("ascii", errors="replace").split(" ", 4)
        if len(fields) != 5 or not fields[2].isdigit():
            return
        obj, otype, size, peeled, ref = fields
        start = end + 1
        raw = out[start : start + int(size)]
        pos = start + int(size) + 1  # the object, then the format's trailing newline
        yield ref, otype, obj, peeled[1:], raw


def parse_push_porcelain(output: str) -> list[tuple[str, str, str]]:
    """``(flag, ref, summary)`` for every ref line of ``git push --porcelain``."""
    rows = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            rows.append((parts[0], parts[1].split(":")[-1], parts[2]))
    return rows


def classify_rejection(summary: str) -> RejectReason | str:
    """The :class:`PushRejected` reason for git's summary of a rejected ref (the
    summary itself when it names no known reason: it becomes the error's words)."""
    if "already exists" in summary:
        return RejectReason.EXISTS
    if "stale info" in summary:
        return RejectReason.STALE  # the lease: someone published a version since this view was fetched
    if any(marker in summary for marker in _RACE_MARKERS):
        return RejectReason.RACE  # another push held the ref at that moment (a true server-side race)
    if "non-fast-forward" in summary or "fetch first" in summary:
        return RejectReason.NON_FAST_FORWARD
    return summary


def stage_event_from(kind: str, stage: str, number: int, ref: str, metadata: Mapping[str, Any]) -> StageEvent | None:
    """A :class:`StageEvent` from a stage tag's metadata (written by anyone with push
    access, so checked: a known action, a well-formed version, a short list of rule
    texts); None when it is not what cpv writes."""
    action, version, forced = metadata.get("action"), metadata.get("version"), metadata.get("forced", [])
    if action == "promote":
        if not isinstance(version, str) or not Version.is_valid(version):
            return None
    elif action == "demote":
        version = None
    else:
        return None
    if not isinstance(forced, list) or len(forced) > MAX_FORCED_RULES or not all(isinstance(f, str) and len(f) <= 200 for f in forced):
        return None
    return StageEvent(kind=kind, stage=stage, number=number, version=version, ref=ref, forced=tuple(forced))


#: the variables a fallback identity is passed in
_IDENTITY_ENV = ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")
_identity_warned = False


class GitTagsVersioning(VersioningBackendBase):
    """The ``git-tags`` versioning backend: git commands run as subprocesses
    (:func:`~cpv_plugins.gitutil.run_git`); GitPython for init, clone and the one
    long-lived ``cat-file`` process that answers single reads."""

    name = "git-tags"

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.path = Path(ctx.workspace)
        self._repo: Any = None
        #: the environment of every git command: cpv's safe defaults, the hosting backend's
        #: credentials, and a fallback identity when git has none (None unsets a variable)
        self._env: dict[str, str | None] = dict(git_env(ctx.env))

    # -- naming scheme ---------------------------------------------------------
    def tag_name(self, kind: str, version: Version) -> str:
        return f"{kind}/{version}"

    def parse_tag(self, name: str) -> tuple[str, Version] | None:
        name = name.removeprefix("refs/tags/")
        match = _TAG_RE.fullmatch(name)
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
        return run_git(args, cwd=self.path, env=self._env, stdin=istream, as_text=stdout_as_string, strip_newline=strip_newline_in_stdout)

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
        for var in _IDENTITY_ENV:  # never a fallback left from an earlier command; the user's own pass through
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
        for var in _IDENTITY_ENV:
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

    def head(self) -> str | None:
        return self._ref_oid("HEAD^{commit}") or None

    def commit(self, paths: Sequence[str], message: str) -> str:
        self._ensure_identity()
        self._run("stage files", "add", "--", *paths)
        with self._message_file(message) as path:
            self._run("commit", "commit", "--no-verify", "--quiet", "--cleanup=verbatim", f"--file={path}", "--", *paths)
        return str(self._run("read the new commit", "rev-parse", "HEAD")).strip()

    def changed_files(self, paths: Sequence[str] | None = None) -> list[str]:
        args = ["status", "--porcelain", "--untracked-files=no"]
        if paths:
            args += ["--", *paths]
        return [line[3:] for line in str(self._run("read the status", *args)).splitlines() if line.strip()]

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
            primary = [r for r in rejected if not any(m in r[1] for m in _ATOMIC_FOLLOWERS)] or rejected
            # a taken version says more than a moved lease (both come together when someone took it)
            primary.sort(key=lambda r: classify_rejection(r[1]) != "exists")
            raise PushRejected([ref for ref, _ in primary], classify_rejection(primary[0][1]), str(exc.stderr or "")) from None
        # refresh the remote-tracking branch without another round trip
        if any(spec.endswith(f"refs/heads/{BRANCH}") for spec in refspecs):
            self._run("update origin/main", "update-ref", f"refs/remotes/origin/{BRANCH}", "HEAD")

    def _branch_refspec(self) -> str:
        return f"refs/heads/{BRANCH}:refs/heads/{BRANCH}"

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

    def sync_branch(self) -> bool:
        if not self._remote_branch_exists():
            return False
        remote = f"refs/remotes/origin/{BRANCH}"
        head = self.head()
        target = str(self._run("read the remote branch", "rev-parse", "--verify", "--quiet", remote)).strip()
        if head == target or self._is_ancestor(remote, "HEAD"):
            return False  # nothing new there (local commits are pushed by the next upload or tag)
        self._check_incoming()
        if self._is_ancestor("HEAD", remote):
            self._run("fast-forward to the remote branch", "merge", "--ff-only", "--quiet", remote)
        else:
            self.push_branch()  # both moved: replay the local commits on top and publish them
        return True

    def _is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", older, newer)
            return True
        except GitCommandFailed:
            return False

    def undo_commit(self, rev: str, paths: Sequence[str]) -> None:
        # --keep: tracked files go back to ``rev`` (a rebase's incoming changes too),
        # ignored files (the model itself) are never touched
        self._run("undo the unpublished commit", "reset", "--quiet", "--keep", rev)

    def push_branch(self) -> None:
        reason, tried = "", 0
        for attempt in BRANCH_PUSH_BACKOFF.rounds():
            if attempt:  # after the wait, so the view the push is built on is fresh
                logger.info("the remote branch moved; replaying local commits on top of it")
                self.fetch()
                self._rebase_on_remote()
            tried = attempt + 1
            try:
                self._push([self._branch_refspec()], atomic=False)
                return
            except PushRejected as exc:
                if exc.reason not in {RejectReason.NON_FAST_FORWARD, RejectReason.RACE}:
                    raise GitError(
                        f"the remote refused branch {BRANCH} ({exc.summary})",
                        fix="fetch and resolve with git in the workspace, then run the command again",
                    ) from None
                reason = exc.summary
        raise GitError(
            f"the remote refused branch {BRANCH} ({reason}) {tried} times: other members kept moving it (heavy contention)",
            fix="run the command again: this change was not published, and stored bytes are not sent twice",
        )

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

    # -- versions --------------------------------------------------------------------
    def _records(self, pattern: str) -> list[VersionRecord]:
        out = self._run("list tags", "for-each-ref", f"--format={_REF_FORMAT}", pattern, stdout_as_string=False)
        records = []
        for ref, otype, obj, peeled, raw in iter_ref_objects(bytes(out)):
            parsed = self.parse_tag(ref)
            if parsed is None:
                continue
            kind, version = parsed
            headers, contents = parse_object(raw)
            if otype == "tag":
                author, date = _parse_ident(headers.get("tagger", ""))
                message, metadata = decode_message(contents, ref.removeprefix("refs/tags/"))
            else:  # a lightweight tag: the commit's date, no metadata
                author, date = _parse_ident(headers.get("committer", ""))
                message, metadata = "", {}
            records.append(
                VersionRecord(
                    kind=kind,
                    version=str(version),
                    ref=ref,
                    commit=peeled or obj,
                    author=author.strip(),
                    date=date,
                    message=message,
                    metadata=clean_metadata(metadata, ref.removeprefix("refs/tags/")),
                )
            )
        records.sort(key=lambda r: Version.parse(r.version))
        return records

    def list_versions(self, kind: str) -> list[VersionRecord]:
        return self._records(f"refs/tags/{kind}/")

    def get_version(self, kind: str, version: Version) -> VersionRecord | None:
        found = self._records(f"refs/tags/{self.tag_name(kind, version)}")
        return found[0] if found else None

    def create_version(self, kind: str, version: Version, message: str, metadata: Mapping[str, Any], rev: str = "HEAD") -> VersionRecord:
        self._ensure_identity()
        name = self.tag_name(kind, version)
        if self.parse_tag(name) != (kind, version):
            raise ValidationError(
                f"version {version} of {kind} cannot be written as a tag cpv can read back",
                fix=f"use versions up to v{MAX_COMPONENT}.{MAX_COMPONENT}",
            )
        marker = self._unpublished_marker()  # until published or fetched: the next tag fetches first
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        self._tag(name, rev, encode_message(message, metadata))
        record = self.get_version(kind, version)
        if record is None:
            self.delete_local_version(kind, version)
            raise GitError(f"tag {name} was created but cannot be read back", fix="run `cpv -v` and report the output")
        return record

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

    def delete_local_version(self, kind: str, version: Version) -> None:
        name = self.tag_name(kind, version)
        if self.get_version(kind, version) is not None:
            self._run(f"delete local tag {name}", "tag", "-d", name)

    def publish(self, records: Sequence[VersionRecord], *, with_branch: bool = False) -> None:
        """Push the tags (and the branch when asked or unpublished) in one atomic push,
        moving ``refs/cpv/lease/KIND`` to each new tag under a lease on the value
        last seen: if anyone published a version of that kind since, the server
        refuses the whole push (reason ``"stale"``) and the caller fetches and retries.
        A host that refuses the cpv refs themselves gets plain tag pushes from then on
        (and cpv fetches before every tag there)."""
        refspecs = [f"{r.ref}:{r.ref}" for r in records]
        if with_branch or not self.is_published():
            refspecs.insert(0, self._branch_refspec())
        leases: list[str] = []
        if not self._no_lease_marker().exists():
            for r in records:
                seen = self._ref_oid(f"{SEEN_PREFIX}{r.kind}")
                refspecs.append(f"{r.ref}:{LATEST_PREFIX}{r.kind}")
                leases.append(f"--force-with-lease={LATEST_PREFIX}{r.kind}:{seen}")
        try:
            self._push(refspecs, atomic=True, options=leases)
        except PushRejected as exc:
            # a hook or policy that may refuse refs outside heads/ and tags/: try once more without them
            if leases and exc.reason not in RejectReason.retryable() and any(ref.startswith(LATEST_PREFIX) for ref in exc.rejected):
                logger.info("the remote refuses %s refs (%s); publishing tags alone from now on", LATEST_PREFIX, exc.summary)
                self._no_lease_marker().parent.mkdir(parents=True, exist_ok=True)
                self._no_lease_marker().touch()
                raise PushRejected(exc.rejected, RejectReason.RACE, exc.detail) from None  # fetch and try again, without the lease
            raise
        self._unpublished_marker().unlink(missing_ok=True)
        for r in records:
            if leases:
                self._run("record the published version", "update-ref", f"{SEEN_PREFIX}{r.kind}", r.ref)

    # -- retention -------------------------------------------------------------------------
    def mark_pruned(self, kind: str, records: Sequence[VersionRecord], note: str) -> None:
        """One annotated tag ``pruned/{kind}/{version}`` per version, on its commit,
        published in one atomic push (a marker someone else already pushed is kept)."""
        self._ensure_identity()
        already = self.pruned_versions(kind)
        names = []
        for record in records:
            if record.version in already:
                continue
            name = f"pruned/{kind}/{record.version}"
            if _PRUNED_RE.fullmatch(f"refs/tags/{name}") is None:
                raise ValidationError(f"cannot mark {kind} {visible(record.version)} as pruned", fix="report this with `cpv -v`")
            self._tag(name, record.commit, encode_message(note, {"action": "pruned"}))
            names.append(name)
        if not names:
            return
        try:
            self._push([f"refs/tags/{n}:refs/tags/{n}" for n in names], atomic=True)
        except PushRejected as exc:
            if exc.reason is not RejectReason.EXISTS:
                self._run("remove the unpublished markers", "tag", "--delete", "--end-of-options", *names)
                raise
            self._run("remove the local markers", "tag", "--delete", "--end-of-options", *names)
            self.fetch()  # someone marked them meanwhile: theirs stand

    def unmark_pruned(self, kind: str, versions: Sequence[str]) -> None:
        """Remove the ``pruned/{kind}/{version}`` markers of ``versions`` (a gc that found
        them holding a stage after marking them spared their content)."""
        names = [f"pruned/{kind}/{v}" for v in versions if Version.is_valid(v)]
        if not names:
            return
        self._push([f":refs/tags/{n}" for n in names], atomic=True)
        self._run("remove the local markers", "tag", "--delete", "--end-of-options", *names)

    # -- gc runs (refs/cpv/gc/*): what lets an upload or a promotion tell that a gc overlapped it
    def gc_runs(self) -> dict[str, tuple[bool, float]]:
        """Every gc run the remote records: run id -> (still running, start time).
        Read from the remote itself (one ``ls-remote``); refs of other shapes are ignored."""
        out = str(
            self._run(
                "list gc runs", "ls-remote", "--end-of-options", "origin", f"{GC_PREFIX}*", fix="check the network and `cpv validate`"
            )
        )
        runs: dict[str, tuple[bool, float]] = {}
        for line in out.splitlines():
            match = _GC_RUN_RE.fullmatch(line.partition("\t")[2])
            if match is None:
                continue
            running = match.group("state") == "running"
            # a run both running and done (killed between its two pushes is impossible: one atomic push) counts as done
            if match.group("run") not in runs or not running:
                runs[match.group("run")] = (running, float(match.group("start")))
        return runs

    def begin_gc(self) -> str:
        """Publish ``refs/cpv/gc/running/{now}-{nonce}`` on the remote branch's commit; returns the run id."""
        run = f"{int(time.time())}-{os.urandom(4).hex()}"
        self._push([f"{self._run_anchor()}:{GC_PREFIX}running/{run}"], atomic=True)
        return run

    def end_gc(self, run: str) -> None:
        """Replace the run's ``running`` ref by a ``done`` one (one atomic push), then drop
        finished runs older than a week (apart, and only where they still are: another gc
        ending at the same moment may be dropping them too, which must not fail this one)."""
        self._push([f":{GC_PREFIX}running/{run}", f"{self._run_anchor()}:{GC_PREFIX}done/{run}"], atomic=True)
        old = [r for r, (running, start) in self.gc_runs().items() if not running and start < time.time() - 7 * 86400]
        if old:
            try:
                self._push([f":{GC_PREFIX}done/{r}" for r in old], atomic=False)
            except (GitError, PushRejected) as exc:
                logger.info("old gc run records were not dropped this time (%s)", exc)

    def _run_anchor(self) -> str:
        """The commit a gc run ref points at (any commit the remote has: its branch's tip)."""
        commit = self._ref_oid(f"refs/remotes/origin/{BRANCH}^{{commit}}") or self.head()
        if not commit:
            raise GitError("the repository has no commit to record a gc run on", fix="upload a version first, then run gc")
        return commit

    def delete_versions(self, kind: str, records: Sequence[VersionRecord]) -> None:
        """Remove the version tags on the remote (one atomic push of deletions, each
        under a lease on the tag's current object, so a replaced tag is never removed),
        then locally."""
        if not records:
            return
        leases = [f"--force-with-lease={r.ref}:{self._ref_oid(r.ref)}" for r in records]
        self._push([f":{r.ref}" for r in records], atomic=True, options=leases)
        self._run(
            "delete the local version tags", "tag", "--delete", "--end-of-options", *(r.ref.removeprefix("refs/tags/") for r in records)
        )

    def pruned_versions(self, kind: str) -> dict[str, str]:
        out = self._run(
            "list pruned versions", "for-each-ref", f"--format={_REF_FORMAT}", f"refs/tags/pruned/{kind}/", stdout_as_string=False
        )
        pruned = {}
        for ref, otype, _, _, raw in iter_ref_objects(bytes(out)):
            match = _PRUNED_RE.fullmatch(ref)
            if match is None or otype != "tag" or match.group("kind") != kind or not Version.is_valid(match.group("version")):
                continue
            headers, _ = parse_object(raw)
            pruned[match.group("version")] = _parse_ident(headers.get("tagger", ""))[1]
        return pruned

    # -- stages --------------------------------------------------------------------------
    def list_stage_events(self, kind: str) -> list[StageEvent]:
        out = self._run("list stage changes", "for-each-ref", f"--format={_REF_FORMAT}", f"refs/tags/stage/{kind}/", stdout_as_string=False)
        events = []
        for ref, otype, _, _, raw in iter_ref_objects(bytes(out)):
            match = _STAGE_RE.fullmatch(ref)
            if match is None or otype != "tag" or match.group("kind") != kind:
                continue  # not written by cpv: a plain git tag in this namespace is ignored
            headers, contents = parse_object(raw)
            author, date = _parse_ident(headers.get("tagger", ""))
            message, metadata = decode_message(contents, ref.removeprefix("refs/tags/"))
            event = stage_event_from(kind, match.group("stage"), int(match.group("n")), ref, metadata)
            if event is None:
                logger.warning("ignoring stage record %s: its metadata is not what cpv writes", visible(ref.removeprefix("refs/tags/")))
                continue
            events.append(StageEvent(**{**event.__dict__, "author": author.strip(), "date": date, "message": message}))
        events.sort(key=lambda e: (e.stage, e.number))
        return events

    def record_stage_event(
        self, kind: str, stage: str, number: int, version: str | None, commit: str, message: str, forced: Sequence[str]
    ) -> StageEvent:
        self._ensure_identity()
        name = f"stage/{kind}/{stage}/{number}"
        ref = f"refs/tags/{name}"
        if _STAGE_RE.fullmatch(ref) is None:
            raise ValidationError(
                f"stage {visible(stage)} of {kind} cannot be written as a tag cpv can read back", fix="use a stage name such as prod"
            )
        metadata = {"action": "promote" if version else "demote", "version": version, "forced": list(forced)}
        self._tag(name, commit, encode_message(message, {k: v for k, v in metadata.items() if v}))
        try:
            self._push([f"{ref}:{ref}"], atomic=True)
        except BaseException:
            self._run("remove the unpublished stage record", "tag", "--delete", "--end-of-options", name)
            raise
        recorded = [e for e in self.list_stage_events(kind) if e.ref == ref]
        if not recorded:
            raise GitError(f"stage record {name} was published but cannot be read back", fix="run `cpv -v` and report the output")
        return recorded[0]

    def publishes_conditionally(self) -> bool:
        """True unless this host refused the lease refs, a version created here was
        never published (a fetch must reconcile it first), or the workspace has
        versions but has never seen a lease (it was last fetched by an older cpv)."""
        if self._no_lease_marker().exists() or self._unpublished_marker().exists():
            return False
        # refs sort by name, so the first is a lease ref if there is one, else a tag
        first = str(self._run("list version refs", "for-each-ref", "--count=1", "--format=%(refname)", SEEN_PREFIX, "refs/tags/"))
        return not first.strip() or first.startswith(SEEN_PREFIX)

    def _no_lease_marker(self) -> Path:
        return self.private_dir() / "no-lease"

    def _unpublished_marker(self) -> Path:
        return self.private_dir() / "unpublished-tags"

    def _ref_oid(self, ref: str) -> str:
        """The object ``ref`` names, or "" when it does not exist."""
        try:
            return str(self._git("rev-parse", "--verify", "--quiet", "--end-of-options", ref)).strip()
        except GitCommandFailed:
            return ""


@hookimpl
def cpv_versioning_backends() -> list[VersioningBackendInfo]:
    """The git-tags versioning backend."""
    return [VersioningBackendInfo("git-tags", GitTagsVersioning, "git commits; versions as annotated tags kind/vX.Y")]


def parse_cat_file_batch(raw: bytes, count: int) -> list[bytes | None]:
    """The ``count`` answers of ``git cat-file --batch``: a blob's bytes, None for a
    missing, ambiguous or non-blob object."""
    out: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        end = raw.index(b"\n", pos)
        header = raw[pos:end].split()
        pos = end + 1
        if len(header) != 3 or not header[2].isdigit():  # "<spec> missing" / "ambiguous"
            out.append(None)
            continue
        size = int(header[2])
        data = raw[pos : pos + size]
        pos += size + 1  # the object, then a newline
        out.append(data if header[1] == b"blob" else None)
    return out

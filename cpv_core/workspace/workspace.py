"""A model workspace: where it lives, which backends serve it, its lock.

Layout of ``{workspace_root}/{team}/{model}/`` (or ``repo_path``)::

    model.bin            the model file (content in storage, ignored by git)
    model.bin.dvc        its pointer (committed)
    data/  data.dvc      training data and its pointer
    metrics.log          JSON lines, one record per upload (committed)
    README.md .gitignore .gitattributes
    .cpv/workspace.json  team, model, backends chosen at init (committed)
    .cpv/lock            one cpv process at a time (ignored)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from cpv_core.domain.backend_values import LAYOUT_KEY, STORAGE_LAYOUTS
from cpv_core.domain.metrics import METRICS_FILE
from cpv_core.domain.names import validate_name
from cpv_core.domain.retention_rules import RETENTION_FILE
from cpv_core.domain.stage_rules import RULES_FILE
from cpv_core.errors import ConfigError, RepositoryError, ValidationError, WorkspaceLockedError
from cpv_core.paths import atomic_leftovers, atomic_write_bytes, link_tree, path_from_state_name, remove_path, restore_preserved, state_name
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.manager import Plugins
from cpv_core.plugin.protocols import BackendContext, HostingBackend, StorageBackend, VersioningBackend
from cpv_core.plugin.sources import tree_fingerprint
from cpv_core.trust import contained, open_regular, visible
from cpv_core.workspace.meta import (
    DEFAULT_FILES,
    FORMAT_VERSION,
    MAX_META_BYTES,
    META_DIR,
    META_FILE,
    check_meta,
)

logger = logging.getLogger("cpv.workspace")

LOCK_FILE = f"{META_DIR}/lock"
LOCK_TIMEOUT_S = 120.0
LOCK_TIMEOUT_ENV = "CPV_LOCK_TIMEOUT"

SCAFFOLD = {
    ".gitattributes": "# metrics.log only ever grows: concurrent uploads merge by union\nmetrics.log merge=union\n",
    f"{META_DIR}/.gitignore": "lock\n",
    "metrics.log": "",
}


def lock_timeout_from_env() -> float:
    """``CPV_LOCK_TIMEOUT`` in seconds (default 120); a clear error when it is not a number."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or raw == "":
        return LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 7 * 24 * 3600:
        raise ConfigError(
            f"{LOCK_TIMEOUT_ENV}={visible(raw)!s} is not a number of seconds between 0 and 604800",
            fix=f"set e.g. {LOCK_TIMEOUT_ENV}=60, or unset it for the default ({LOCK_TIMEOUT_S:.0f} s)",
        )
    return value


def readme_text(team: str, model: str) -> str:
    """The README committed to a new model repository."""
    return (
        f"# {team} / {model}\n\n"
        "Model checkpoints and training data versioned with cpv.\n\n"
        "- `model.bin.dvc`, `data.dvc`: pointers to the content in storage\n"
        "- `metrics.log`: one JSON record per upload\n"
        "- versions are tags `model/vX.Y`, `data/vX.Y`, `checkpoint/vX.Y`\n\n"
        f"    cpv model list -t {team} -m {model}\n"
        f"    cpv model download v0.1 -t {team} -m {model}\n"
    )


class Workspace:
    """The local workspace of one team/model and the backends that serve it."""

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        config: CPVConfig | None = None,
        *,
        verbose: bool = False,
        progress: bool = False,
        lock_timeout: float | None = None,
        caller: str = "python",
        backends: Mapping[str, str] | None = None,
    ) -> None:
        self.team = validate_name(team_name, "team name")
        #: "python" or "cli": fix hints name methods or commands accordingly
        self.caller = caller
        #: backends to use where no workspace.json records them (a registry mirror of a model
        #: whose workspace elsewhere does)
        self.fallback_backends = dict(backends or {})
        self.model = validate_name(model_name, "model name")
        self.config = config or CPVConfig()
        root = self.config.workspace_root()
        self.path = Path(repo_path).expanduser().resolve() if repo_path else (root / self.team / self.model).resolve()
        self.verbose = verbose
        self.progress = progress
        self.lock_timeout = lock_timeout if lock_timeout is not None else lock_timeout_from_env()
        self.plugins = Plugins()
        #: the storage layout ``cpv init --layout`` asked for (None: the configured one)
        self.requested_layout: str | None = None
        #: workspace.json as committed at revisions read in bulk (:meth:`preload_meta`)
        self._meta_read: dict[str, bytes | None] = {}
        #: those contents checked and parsed, by content (a thousand versions usually share one)
        self._meta_parsed: dict[bytes, dict[str, Any]] = {}
        self._meta_cache: tuple[tuple[int, ...], dict[str, Any]] | None = None

    # -- metadata ----------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    def read_meta(self) -> dict[str, Any]:
        """The committed workspace metadata, or {} before init.

        It arrives with every clone and rebase, so it is checked like any
        value from the repository (:func:`check_meta`).
        """
        try:
            with open_regular(self.meta_path) as handle:
                raw = handle.read(MAX_META_BYTES + 1)
        except FileNotFoundError:
            return {}
        except (OSError, ValidationError) as exc:
            raise RepositoryError(f"{self.meta_path} is unreadable: {exc}", fix="restore it with git checkout") from None
        return check_meta(raw, META_FILE)

    def new_meta(self, layout: str | None = None) -> dict[str, Any]:
        """Metadata for a workspace about to be created (``layout``: the storage layout asked
        for at init, else the configured one; the whole-file default is not written)."""
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "team": self.team,
            "model": self.model,
            "backends": {kind: self.config.backend_name(kind) for kind in ("storage", "hosting", "versioning")},
            "files": dict(DEFAULT_FILES),
        }
        layout = layout or self.config.get_config(LAYOUT_KEY) or "dvc"
        if layout not in STORAGE_LAYOUTS:
            raise ConfigError(
                f"storage layout {visible(repr(layout))} is not one of {', '.join(STORAGE_LAYOUTS)}", fix="see docs/concepts.md"
            )
        if layout != "dvc":
            meta[LAYOUT_KEY] = layout
        return meta

    @property
    def layout(self) -> str:
        """The storage layout this model was created with (``dvc`` or ``tensors``)."""
        return str(self.meta.get(LAYOUT_KEY, "dvc")) if self.meta_path.is_file() else "dvc"

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_bytes(self.meta_path, json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n")
        self.reload_meta()

    def reload_meta(self) -> None:
        """Forget the cached metadata (after a change came from elsewhere: a clone, a pull, a rollback)."""
        told = self.__dict__.get("versioning_context")
        self._meta_cache = None
        if told is not None and told.layout != self.layout:  # backends made before were told the old layout
            for made in ("versioning_context", "context", "storage"):
                self.__dict__.pop(made, None)

    @property
    def meta(self) -> dict[str, Any]:
        """The workspace metadata, re-read whenever the file changed (another manager
        of the same workspace, a pull or a rollback may have moved a target)."""
        try:
            st = os.stat(self.meta_path)
            signature: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            signature = ()
        cached = self._meta_cache
        if cached is None or cached[0] != signature:
            cached = (signature, self.read_meta() or self.new_meta())
            self._meta_cache = cached
        return cached[1]

    def file_for(self, kind: str) -> str:
        """The workspace-relative path tracked for ``kind`` (model.bin, data)."""
        return str(self.meta.get("files", {}).get(kind, DEFAULT_FILES[kind]))

    def file_at(self, kind: str, rev: str) -> str:
        """The path ``kind`` had at revision ``rev`` (a model may be ``model.bin`` in
        one version and ``hf-model/`` in the next), read from that revision's
        committed workspace.json and checked like any value from the repository."""
        raw = self._meta_read[rev] if rev in self._meta_read else self.versioning.read_file(rev, META_FILE)
        if not raw:
            return DEFAULT_FILES[kind]
        if raw not in self._meta_parsed:
            self._meta_parsed[raw] = check_meta(raw, f"{META_FILE} at {visible(rev)}")
        return str(self._meta_parsed[raw].get("files", {}).get(kind, DEFAULT_FILES[kind]))

    def preload_meta(self, revs: Sequence[str]) -> None:
        """Read the workspace.json of many revisions (the versions' tags) at once, for
        :meth:`file_at`, when the versioning backend can (its optional ``read_files``)."""
        wanted = [rev for rev in dict.fromkeys(revs) if rev not in self._meta_read]
        if wanted:
            self._meta_read.update(zip(wanted, self.versioning.read_files([(rev, META_FILE) for rev in wanted])))

    def set_file(self, kind: str, rel: str) -> None:
        """Record that ``kind`` now lives at ``rel`` (committed with the change that moves it)."""
        meta = self.read_meta() or self.new_meta()
        meta.setdefault("files", dict(DEFAULT_FILES))[kind] = rel
        check_meta(json.dumps(meta).encode(), META_FILE)
        self.write_meta(meta)

    def target_path(self, kind: str) -> Path:
        """Where the content of ``kind`` lives, checked to be inside the workspace
        (no component may be a symbolic link)."""
        return contained(self.path, self.file_for(kind), f"{META_FILE} files.{kind}")

    def is_initialized(self) -> bool:
        """Whether the workspace exists with its repository."""
        return self.meta_path.is_file() and self.versioning.exists()

    def require_initialized(self) -> None:
        """Raise :class:`RepositoryError` with the init command when not set up,
        and :class:`ValidationError` when the workspace belongs to another team/model."""
        if not self.is_initialized():
            raise RepositoryError(
                f"no cpv workspace for {self.team}/{self.model} at {self.path}",
                fix=f"run `cpv init model -t {self.team} -m {self.model}` first"
                if self.caller == "cli"
                else f"call ModelsCheckpointsManage({self.team!r}, {self.model!r}).import_model_init() first",
            )
        self.check_identity()

    def check_identity(self) -> None:
        """The team/model recorded in the workspace must be exactly the ones asked for.

        Storage prefixes and repository names are derived from them: a name
        that differs (even only in case) would put the bytes under another
        prefix than the repository's other members use.
        """
        meta = self.read_meta()
        recorded = (meta.get("team"), meta.get("model"))
        if recorded != (self.team, self.model):
            how = (
                " (they differ only in upper/lower case)"
                if f"{recorded[0]}/{recorded[1]}".lower() == f"{self.team}/{self.model}".lower()
                else ""
            )
            raise ValidationError(
                f"the workspace {self.path} holds {recorded[0]}/{recorded[1]}, not {self.team}/{self.model}{how}",
                fix=f"use -t {recorded[0]} --model-name {recorded[1]} (or omit them inside the workspace), or another --repo-path",
            )

    def accepts_incoming(self, rel: str, incoming: Callable[[str], bytes | None] | None = None) -> bool:
        """Whether a teammate's commit may change workspace path ``rel``.

        Only what cpv itself commits after init: the pointer files of the
        tracked targets, the .gitignore files beside them, ``metrics.log``,
        README.md, and a workspace.json whose only change is where a target
        lives (an upload that turned ``model.bin`` into ``hf-model/``).
        ``incoming`` reads a path as the incoming commits leave it; without
        it, workspace.json changes and pointers of moved targets are refused.
        A commit that adds a model file, a symlink, a .dvc/config or any
        other workspace.json change is refused before it can replace
        anything on this machine.
        """
        targets = [self.file_for(kind) for kind in DEFAULT_FILES]
        incoming_meta = self.incoming_meta(incoming) if incoming else None
        if rel == META_FILE:
            return incoming_meta is not None
        if incoming_meta:
            targets += [str(v) for v in incoming_meta.get("files", {}).values()]
        allowed = {METRICS_FILE, "README.md", ".gitignore", RULES_FILE, RETENTION_FILE}  # rules are parsed strictly when read
        allowed.update(self.storage.pointer_path(t) for t in targets)
        allowed.update(f"{t.rsplit('/', 1)[0]}/.gitignore" for t in targets if "/" in t)
        return rel in allowed

    def incoming_meta(self, incoming: Callable[[str], bytes | None]) -> dict[str, Any] | None:
        """The incoming workspace.json when it differs from this one at most in
        ``files`` (valid paths); None when it is absent, unchanged or changes more."""
        raw = incoming(META_FILE)
        if raw is None:
            return None
        try:
            theirs = check_meta(raw, f"incoming {META_FILE}")
        except ValidationError:
            return None
        ours = self.read_meta()
        same_rest = {k: v for k, v in theirs.items() if k != "files"} == {k: v for k, v in ours.items() if k != "files"}
        return theirs if same_rest and set(theirs.get("files", {})) <= set(DEFAULT_FILES) else None

    @property
    def state_dir(self) -> Path:
        """This machine's private state for the workspace (crash-recovery backups,
        staging): the versioning backend's private directory, which no commit,
        clone or rebase can write into, so recovery acts only on what this machine left."""
        return self.versioning.private_dir()

    def staging_path(self, purpose: str, rel: str) -> Path:
        """A path in :attr:`state_dir` standing for workspace path ``rel`` (``purpose``: keep, new, old)."""
        return self.state_dir / purpose / state_name(rel)

    # -- backends ----------------------------------------------------------------
    def backend_name(self, kind: str) -> str:
        """Backend recorded at init; the configured one for a new workspace."""
        recorded = self.meta.get("backends", {}).get(kind) if self.meta_path.is_file() else None
        return str(recorded or self.fallback_backends.get(kind) or self.config.backend_name(kind))

    @cached_property
    def context(self) -> BackendContext:
        """What the storage and hosting backends are told about this workspace."""
        return replace(self.versioning_context, state_dir=self.state_dir)

    @cached_property
    def versioning_context(self) -> BackendContext:
        """What the versioning backend is told (it owns the private directory itself)."""
        return BackendContext(
            config=self.config,
            team=self.team,
            model=self.model,
            workspace=self.path,
            env=self.config.credential_env(),
            verbose=self.verbose,
            progress=self.progress,
            accepts_incoming=self.accepts_incoming,
            layout=self.layout,
        )

    @cached_property
    def storage(self) -> StorageBackend:
        return self.plugins.storage(self.backend_name("storage"), self.context)

    @cached_property
    def versioning(self) -> VersioningBackend:
        return self.plugins.versioning(self.backend_name("versioning"), self.versioning_context)

    @cached_property
    def hosting(self) -> HostingBackend:
        return self.plugins.hosting(self.backend_name("hosting"), self.context)

    # -- lock ----------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace lock; a second process waits up to ``lock_timeout``.

        The lock is an OS file lock, released by the kernel when a process
        dies, so a killed cpv never leaves the workspace locked.
        """
        from filelock import FileLock, Timeout

        lock_path = contained(self.path, LOCK_FILE, "workspace lock")  # .cpv must not be a link
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            logger.warning("another cpv process is using %s; waiting up to %.0f s", self.path, self.lock_timeout)
            try:
                lock.acquire(timeout=self.lock_timeout)
            except Timeout:
                raise WorkspaceLockedError(
                    f"workspace {self.path} is in use by another cpv process",
                    fix="wait for it to finish and run the command again",
                ) from None
        try:
            self.recover()
            yield
        finally:
            lock.release()

    def repair(self) -> None:
        """Run :meth:`recover` under the lock when an interrupted run left
        something to repair (read-only commands call this: cheap otherwise)."""
        pending = [self._revert_journal, *(self.state_dir / p for p in ("keep", "old", "new"))]
        if any(p.exists() and (p.is_file() or any(p.iterdir())) for p in pending):
            with self.lock():
                pass

    def recover(self) -> None:
        """Undo what a killed cpv process left half done (called under the lock).

        Only what this machine recorded in :attr:`state_dir` is acted on:
        a hard-link backup (``keep``, left by cpv 0.1 around ``dvc add``) puts
        back files an interrupted tool removed, a directory swap interrupted between its two renames
        (``old``/``new``) is completed backwards so the previous content comes
        back. Nothing is written through a symbolic link. Temporary files of
        atomic writes (regular files named ``.NAME.XXXXXXXX.cpv-tmp``) at the
        top of the workspace are removed.
        """
        if not self.path.is_dir():
            return
        self._recover_change()
        for leftover in atomic_leftovers(self.path):
            leftover.unlink(missing_ok=True)
        for purpose in ("keep", "old", "new"):
            folder = self.state_dir / purpose
            if not folder.is_dir() or folder.is_symlink():
                continue
            for entry in sorted(folder.iterdir()):
                self._recover_entry(purpose, entry)

    # -- where the workspace content came from ---------------------------------------
    # The digest of the version the content of each target was based on (set
    # by upload, revert and pull) and a fingerprint of the content at that
    # moment. A rebase may move a pointer to a teammate's version while the
    # content stays as it was; the base tells that the content is stale.

    def content_base(self, rel: str) -> dict[str, str]:
        """``{"digest", "fingerprint"}`` recorded for ``rel``, or {} when none."""
        try:
            data = json.loads((self.state_dir / "base.json").read_text(encoding="utf-8"))
            entry = data.get(rel) if isinstance(data, dict) else None
        except (OSError, ValueError):
            return {}
        return {k: str(v) for k, v in entry.items()} if isinstance(entry, dict) else {}

    def set_content_base(self, rel: str, digest: str) -> None:
        """Record that the content now at ``rel`` is the version with ``digest``."""
        path = self.state_dir / "base.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data[rel] = {"digest": digest, "fingerprint": tree_fingerprint(self.path / rel)}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(data, sort_keys=True).encode())

    def content_unchanged_since_base(self, rel: str) -> bool:
        """Whether the content at ``rel`` is still exactly what its base recorded."""
        base = self.content_base(rel)
        return bool(base) and base.get("fingerprint") == tree_fingerprint(self.path / rel)

    # -- changes of several targets and pointers: all or none -----------------------
    # (a revert; an upload that moves the model to another path)
    @property
    def _revert_journal(self) -> Path:
        return self.state_dir / "revert.json"

    def begin_change(self, action: str, targets: list[str], pointers: list[str]) -> None:
        """Record a change (``action``: "revert", "upload") about to touch ``targets``
        and ``pointers``, with a hard-link backup of each target (instant, no extra
        space), so that an interruption at any point is rolled back by :meth:`recover`."""
        backup = self.state_dir / "revert-old"
        shutil.rmtree(backup, ignore_errors=True)
        backup.mkdir(parents=True)
        for rel in targets:
            source = self.target_path_of(rel)
            if source.is_dir():
                (backup / state_name(rel)).mkdir()
            if source.exists():
                link_tree(source, backup / state_name(rel))
        atomic_write_bytes(
            self._revert_journal,
            json.dumps({"action": action, "head": self.versioning.head(), "targets": targets, "pointers": pointers}).encode(),
        )

    def extend_change(self, pointers: list[str]) -> None:
        """Add files the unfinished change now also touches (a .gitignore that
        tracking created) to what a rollback puts back or removes."""
        plan = json.loads(self._revert_journal.read_text(encoding="utf-8"))
        plan["pointers"] = list(dict.fromkeys([*plan["pointers"], *pointers]))
        atomic_write_bytes(self._revert_journal, json.dumps(plan).encode())

    def end_change(self) -> None:
        """The change is committed: drop its journal and backup."""
        self._revert_journal.unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / "revert-old", ignore_errors=True)

    def rollback_change(self) -> str | None:
        """Put targets and pointers back as they were before an unfinished change.

        Returns the change's action when something was rolled back. A change
        whose commit was made is finished, not undone (its push happens with
        the next one).
        """
        journal = self._revert_journal
        if not journal.is_file() or journal.is_symlink():
            return None
        try:
            plan = json.loads(journal.read_text(encoding="utf-8"))
            targets, pointers, head = list(plan["targets"]), list(plan["pointers"]), plan["head"]
            action = plan.get("action") if plan.get("action") in {"revert", "upload", "stage rules"} else "change"
        except (OSError, ValueError, KeyError, TypeError):
            self.end_change()
            return None
        if self.versioning.head() != head:
            self.end_change()
            return None
        backup = self.state_dir / "revert-old"
        for rel in targets:
            saved = backup / state_name(rel)
            target = self.target_path_of(rel)
            if not saved.exists():  # the target did not exist before the revert
                remove_path(target)
                continue
            if target.is_dir() and not target.is_symlink():
                trash = self.staging_path("new", f"{rel}.rolled-back")
                shutil.rmtree(trash, ignore_errors=True)
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, trash)
                shutil.rmtree(trash, ignore_errors=True)
            elif saved.is_dir() and (target.exists() or target.is_symlink()):
                target.unlink()  # a file where the directory was (a model that changed form)
            os.replace(saved, target)
        in_head = self.in_head([*pointers, METRICS_FILE])
        for rel in set(pointers) - set(in_head):  # a pointer the change created: it goes
            self.target_path_of(rel).unlink(missing_ok=True)
        self.versioning.restore("HEAD", in_head)
        self.reload_meta()
        self.end_change()
        return action

    def _recover_change(self) -> None:
        action = self.rollback_change() if self._revert_journal.exists() else None
        if action:
            logger.warning("an interrupted %s was rolled back: the workspace is as it was before it; run it again", action)

    def in_head(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` the current commit holds."""
        return [p for p in paths if self.versioning.read_file("HEAD", p) is not None]

    def target_path_of(self, rel: str) -> Path:
        """``rel`` inside the workspace, checked like :meth:`target_path`."""
        return contained(self.path, rel, "workspace")

    def _recover_entry(self, purpose: str, entry: Path) -> None:
        rel = path_from_state_name(entry.name)
        try:
            target = contained(self.path, rel, "recovery")
            if purpose == "keep":
                if restore_preserved(target, entry, self.path):
                    logger.warning("restored %s after an interrupted run", rel)
            elif purpose == "old" and not target.exists() and not target.is_symlink():
                logger.warning("restoring %s after an interrupted upload", rel)
                os.replace(entry, target)
        except ValidationError as exc:
            logger.warning("not restoring %s: %s (the backup stays in %s)", visible(rel), exc.message, entry)
            return
        if entry.exists() or entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)

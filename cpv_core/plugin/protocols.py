"""What a backend is: the contracts the default and third-party plugins implement.

A plugin registers *backends* through the hooks in :mod:`cpv_core.plugin.hookspecs`;
each backend is a small object created by a factory for one model workspace.
The managers only ever talk to these protocols, so a team swaps S3 for another
store, or Bitbucket for another git host, by naming a different backend in the
configuration, never by changing manager code.

Four concerns, one protocol each:

* :class:`CredentialProvider` - set up, validate (per-check report) and the
  environment subprocesses need (``GIT_SSH_COMMAND``, ``AWS_PROFILE`` ...).
* :class:`VersioningBackend` - the model's git repository: commits, the tag
  naming scheme, listing versions, creating and publishing tags.
* :class:`StorageBackend` - large files: track (hash + cache + pointer file),
  push, materialise a version into a path, status.
* :class:`HostingBackend` - where the git repository of a team/model lives:
  its URL, making sure it exists, validating access.

Every method of these protocols is one the core calls (a test checks it);
:mod:`cpv_core.plugin.bases` has base classes with defaults for the methods that
have a sensible one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cpv_core.domain.backend_values import IncompleteUpload as IncompleteUpload
from cpv_core.domain.backend_values import StageEvent as StageEvent
from cpv_core.domain.backend_values import StoredObject as StoredObject
from cpv_core.domain.backend_values import TrackedArtifact as TrackedArtifact
from cpv_core.domain.backend_values import TransferStats as TransferStats
from cpv_core.domain.backend_values import VersionRecord as VersionRecord
from cpv_core.domain.checks import CheckResult as CheckResult
from cpv_core.domain.checks import ValidationReport as ValidationReport

if TYPE_CHECKING:
    from cpv_core.domain.versions import Version
    from cpv_core.plugin.config import CPVConfig


# --------------------------------------------------------------------------
# Values passed to and returned by backends
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendContext:
    """Everything a backend needs to know about the workspace it serves.

    :param config: the loaded cpv configuration (read-only use).
    :param team: validated team name.
    :param model: validated model name.
    :param workspace: the model's local git/DVC workspace directory.
    :param env: extra environment variables for subprocesses, merged from the
        credential providers (e.g. ``GIT_SSH_COMMAND``). Never logged.
    :param verbose: the caller asked for detailed output.
    :param progress: whether transfers may show a progress bar.
    :param state_dir: a private directory of this workspace that no commit
        can write into (crash-recovery backups and staging live there; the
        versioning backend's :meth:`VersioningBackend.private_dir`), or None
        (always for the versioning backend itself).
    :param accepts_incoming: ``accepts_incoming(path, incoming)``: whether a
        commit from someone else may change a workspace path (pointer files,
        ``metrics.log``, README, .gitignore, where a target lives in
        workspace.json); ``incoming(path)`` returns a path's content as the
        incoming commits leave it (None when absent). A versioning backend
        that replays remote commits refuses the others. None: no restriction.
    """

    config: CPVConfig
    team: str
    model: str
    workspace: Path
    env: Mapping[str, str] = field(default_factory=dict)
    verbose: bool = False
    progress: bool = False
    state_dir: Path | None = None
    accepts_incoming: Callable[..., bool] | None = None
    #: how the storage backend lays out large files: ``dvc`` (whole files, DVC's format)
    #: or ``tensors`` (chunks, per tensor for safetensors), chosen per model at init
    layout: str = "dvc"


class RejectReason(str, Enum):
    """Why a remote refused refs (:class:`PushRejected`). A ``str`` enum, so
    ``exc.reason == "exists"`` keeps working for code written before it."""

    #: a tag (version or stage record) already taken by someone else
    EXISTS = "exists"
    #: the versions were allocated from an out-of-date view of the remote
    STALE = "stale"
    #: another push held the ref at that moment: fetch and try again
    RACE = "race"
    #: the branch moved on the remote
    NON_FAST_FORWARD = "non-fast-forward"
    #: anything else (the server's text is in :attr:`PushRejected.detail`)
    OTHER = "other"

    @classmethod
    def of(cls, value: str | RejectReason) -> RejectReason:
        """``value`` as a reason; text that names none is :attr:`OTHER`."""
        try:
            return cls(value)
        except ValueError:
            return cls.OTHER

    @classmethod
    def retryable(cls) -> frozenset[RejectReason]:
        """Reasons a fetch and a new attempt can cure."""
        return frozenset({cls.EXISTS, cls.STALE, cls.RACE, cls.NON_FAST_FORWARD})


class PushRejected(Exception):
    """Raised by :meth:`VersioningBackend.publish` when the remote refused refs.

    Nothing was updated on the remote (pushes are atomic).

    :param rejected: the refs the remote rejected.
    :param reason: a :class:`RejectReason` (a string naming one is accepted;
        other text becomes :attr:`RejectReason.OTHER`, its words kept in ``summary``).
    :param detail: the server's own words, for the error message.
    """

    def __init__(self, rejected: Sequence[str], reason: str | RejectReason, detail: str = "") -> None:
        self.rejected = list(rejected)
        self.reason = RejectReason.of(reason)
        #: the reason in words: the server's own summary when it names no known reason
        self.summary = str(reason) if self.reason is RejectReason.OTHER else self.reason.value
        self.detail = detail
        super().__init__(f"remote rejected {', '.join(self.rejected)} ({self.summary})")


# --------------------------------------------------------------------------
# Backend protocols
# --------------------------------------------------------------------------


@runtime_checkable
class StorageBackend(Protocol):
    """Large-file storage for one workspace (the default plugins use DVC).

    The methods after :meth:`delete_objects` are optional: a backend that lacks one
    is given :class:`cpv_core.plugin.bases.StorageBackendBase`'s default when it is selected
    (``object_url``: the remote and the digest; ``track_for_push``: :meth:`track`, which
    always keeps the content locally, as a revert saves unsaved work with it ...).
    """

    name: str

    def init(self) -> None:
        """Prepare the workspace for tracking (e.g. ``.dvc/``) and configure the
        remote. Idempotent; also called after a clone, where it must only add
        machine-local settings. Must not write secrets to committed files."""

    def describe_remote(self) -> str:
        """Human-readable location of the remote store (for plans and errors)."""

    def committed_files(self) -> list[str]:
        """Files created by :meth:`init` that belong in git (``.dvc/config`` ...)."""

    def pointer_path(self, path: str) -> str:
        """The pointer file that records ``path`` (``model.bin.dvc``)."""

    def commit_paths(self, paths: Sequence[str]) -> list[str]:
        """Files to commit after :meth:`track` of ``paths``: pointers and
        whatever keeps the content itself out of git (``.gitignore``)."""

    def track(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """Hash ``paths`` (relative to the workspace), store them in the local
        cache and write their pointer files. Does not upload."""

    def push(self, paths: Sequence[str]) -> TransferStats:
        """Upload the tracked content of ``paths`` to the remote; content already
        there is skipped. Raises on any failed object."""

    def materialize(self, rev: str, path: str, pointer: bytes, dest: Path) -> TrackedArtifact:
        """Write the content ``path`` had at revision ``rev`` to ``dest``.

        ``pointer`` is the pointer file of the tracked path at ``rev`` (read by
        the versioning backend); ``path`` is the tracked path or a sub-path of
        a tracked directory (``data/test``). Fetches from the remote as needed,
        verifies every file's hash, and is atomic: no partial file at ``dest``
        on failure. The workspace is not changed.
        """

    def manifest(self, rev: str, path: str, pointer: bytes) -> dict[str, str]:
        """Relative file path -> content hash of every file of ``path`` at
        ``rev`` (``{"": hash}`` for a single file), without materialising it."""

    def verify(self, rev: str, path: str, pointer: bytes, *, remote: bool) -> list[str]:
        """Check every file of ``path`` at ``rev`` against its recorded hash: in
        the local cache, or (``remote=True``) in the remote store. Returns the
        problems found, each naming the file and the object; empty when intact."""

    def checked_on_remote(self) -> int:
        """How many files the last local :meth:`verify` checked in the remote store
        because no copy was cached here (``cpv verify`` says so); 0 by default."""

    def checkout(self, paths: Sequence[str]) -> None:
        """Make the workspace files match their pointer files (after a revert)."""

    def status(self, paths: Sequence[str]) -> dict[str, str]:
        """Per path: ``"unchanged"``, ``"modified"``, ``"untracked"`` or ``"missing"``."""

    def changes(self, path: str) -> dict[str, str]:
        """For a tracked ``path`` whose status is ``"modified"``: which of its files differ
        from its pointer, ``{relpath: "added" | "removed" | "modified"}`` (``""`` for the
        path itself when it is one file); empty when the backend cannot tell."""

    def describe_pointer(self, path: str, pointer: bytes) -> TrackedArtifact | None:
        """Hash, size and file count recorded in a pointer file's content,
        without fetching data; None when it records nothing."""

    def objects_of(self, rev: str, path: str, pointer: bytes) -> list[str]:
        """The ids of every stored object the tracked ``path`` needs at ``rev``: a
        file's object, or a directory's manifest and the objects of its files."""

    def inventory(self) -> list[StoredObject]:
        """Every object in the remote store, with its size and when it was written."""

    def delete_objects(self, oids: Sequence[str]) -> None:
        """Remove objects from the remote store (absent ones are not an error)."""

    # -- optional: :class:`~cpv_core.plugin.bases.StorageBackendBase` has a default for each, and
    # a backend that lacks one is given that default when it is selected
    def object_url(self, oid: str) -> str:
        """A URL of stored object ``oid`` other tools can read (events report it as a version's source)."""

    def track_for_push(self, paths: Sequence[str]) -> list[TrackedArtifact]:
        """What an upload calls instead of :meth:`track` (it may skip the local cache copy)."""

    def reconfirm(self, paths: Sequence[str]) -> TransferStats:
        """After a gc overlapped an upload (:mod:`cpv_core.workspace.gc_fence`): ask the store about
        every object of ``paths``, trusting no manifest, and send again what is missing."""

    def vouched_by(self, oid: str) -> list[str]:
        """The objects stored object ``oid`` vouches for (a manifest's files): gc keeps them while it keeps ``oid``."""

    def incomplete_uploads(self) -> list[IncompleteUpload]:
        """Uploads the store holds parts of, never completed (``cpv du`` counts them)."""

    def abort_incomplete_uploads(self, started_before: float) -> list[IncompleteUpload]:
        """Abort those started before ``started_before`` (POSIX time); returns them."""

    def materialize_selected(self, rev: str, path: str, pointer: bytes, dest: Path, names: Sequence[str]) -> TrackedArtifact:
        """Only the entries ``names`` of directory ``path`` into ``dest``, each verified (``download --include``)."""

    def open_ranges(self, rev: str, path: str, pointer: bytes) -> AbstractContextManager[ByteRanges]:
        """Byte ranges of file ``path`` at ``rev``, each checked before it is returned
        (``download --tensors``, :func:`cpv_core.open_tensors`). A store that can read
        parts of a file verified (the tensor layout) fetches only what is asked for; the
        default downloads the whole file, verified, and reads from it."""

    def export_dvc(self, rev: str, path: str, pointer: bytes, dest: Path) -> int:
        """Write the objects of ``path`` at ``rev`` as plain DVC-format whole files (``files/md5/..``)
        under ``dest``, a directory ``dvc pull`` can use as a local remote; the number written."""


class ByteRanges(Protocol):
    """Verified byte ranges of one stored file (:meth:`StorageBackend.open_ranges`)."""

    #: the file's size
    size: int
    #: bytes transferred so far to serve the reads (what a lazy read cost)
    fetched: int

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file."""

    def read_many(self, spans: Iterable[tuple[int, int]]) -> list[bytes]:
        """Several ranges, fetched together."""


@runtime_checkable
class VersioningBackend(Protocol):
    """The model's version history (the default plugin uses git + annotated tags,
    named ``model/v1.3``; how versions are named is the backend's own business)."""

    name: str

    def exists(self) -> bool:
        """Whether the workspace already holds a repository."""

    def private_dir(self) -> Path:
        """A directory of this workspace that no commit, clone or rebase can write
        into (git: ``.git/cpv``): where cpv keeps this machine's crash-recovery
        state, so recovery acts only on what this machine left."""

    def init(self, remote_url: str) -> None:
        """Create an empty repository in the workspace with ``remote_url`` as origin."""

    def clone(self, remote_url: str) -> bool:
        """Clone ``remote_url`` into the workspace; False when the remote is empty."""

    def mirror(self, remote_url: str) -> None:
        """Make the workspace path a read-only copy of what ``remote_url`` records
        (versions, stage records, the branch's commits) with no working tree,
        creating it or bringing it up to date: ``cpv registry`` and reading a
        model that has no local workspace."""

    def remote_has_history(self, remote_url: str) -> bool:
        """Whether ``remote_url`` exists and has at least one commit."""

    def head(self) -> str | None:
        """The current commit id, or None before the first commit."""

    def commit(self, paths: Sequence[str], message: str) -> str:
        """Commit ``paths`` (relative) with ``message``; returns the commit id."""

    def changed_files(self, paths: Sequence[str] | None = None) -> list[str]:
        """Tracked files with uncommitted changes (limited to ``paths`` if given)."""

    def read_file(self, rev: str, path: str) -> bytes | None:
        """Content of ``path`` at ``rev`` without a checkout; None if absent."""

    def restore(self, rev: str, paths: Sequence[str]) -> None:
        """Overwrite ``paths`` in the working tree with their content at ``rev``."""

    def fetch(self) -> None:
        """Fetch the branch and all version tags from the remote."""

    def divergence(self) -> tuple[int, int]:
        """``(ahead, behind)``: commits the local branch has that the remote's (as last
        fetched) lacks, and the other way round."""

    def push_branch(self) -> None:
        """Publish the current branch; on a non-fast-forward rejection, rebase
        the local commits on the remote (cpv's own files merge cleanly) and retry."""

    def sync_branch(self) -> bool:
        """Bring the branch up to the remote's after :meth:`fetch`: fast-forward,
        or rebase and push local commits when both moved. True when the
        working tree changed. Commits from others are accepted only as far as
        ``BackendContext.accepts_incoming`` allows."""

    def undo_commit(self, rev: str, paths: Sequence[str]) -> None:
        """Move the branch back to ``rev`` (a commit this process made and could
        not publish) and put ``paths`` in the working tree back as ``rev`` has them."""

    def list_versions(self, kind: str) -> list[VersionRecord]:
        """All versions of ``kind`` known locally, sorted oldest to newest."""

    def create_version(self, kind: str, version: Version, message: str, metadata: Mapping[str, Any], rev: str = "HEAD") -> VersionRecord:
        """Create version ``version`` of ``kind`` at ``rev`` locally."""

    def delete_local_version(self, kind: str, version: Version) -> None:
        """Remove a local version that could not be published."""

    def publish(self, records: Sequence[VersionRecord], *, with_branch: bool = False) -> None:
        """Push ``records`` (and the branch, if asked) in one atomic push.
        Raises :class:`PushRejected` if the remote refused any ref; never forces a
        version. ``reason="stale"``: the versions were allocated from an out-of-date
        view (see :meth:`publishes_conditionally`); the caller fetches and retries."""

    def mark_pruned(self, kind: str, records: Sequence[VersionRecord], note: str) -> None:
        """Record, in one atomic publish, that ``records``' content was removed from
        storage (the versions stay in the history, marked)."""

    def delete_versions(self, kind: str, records: Sequence[VersionRecord]) -> None:
        """Remove versions from the history, on the remote and here, in one atomic publish
        (``cpv gc --delete-versions``: their content is gone and the team chose to forget them)."""

    def pruned_versions(self, kind: str) -> dict[str, str]:
        """Version -> ISO-8601 date its content was removed, for every pruned version of ``kind``."""

    def list_stage_events(self, kind: str) -> list[StageEvent]:
        """Every stage change of ``kind`` this workspace knows (after :meth:`fetch`),
        ordered by stage, then by number."""

    def record_stage_event(
        self, kind: str, stage: str, number: int, version: str | None, commit: str, message: str, forced: Sequence[str]
    ) -> StageEvent:
        """Record event ``number`` of ``stage`` (``version`` promoted, or None: demoted),
        attached to ``commit``, and publish it atomically. Raises :class:`PushRejected`
        with ``reason="exists"`` when that number was taken meanwhile (someone else
        changed the stage first); nothing is left locally then."""

    def publishes_conditionally(self) -> bool:
        """Whether :meth:`publish` is refused by the remote when anyone published a
        version of the same kind since this workspace last fetched or published
        (git-tags: a lease ref moved with every publish). True lets ``tag`` publish
        in one round trip without fetching first; False (always safe) makes it fetch."""

    # -- optional: :class:`~cpv_core.plugin.bases.VersioningBackendBase` has a default for each,
    # and a backend that lacks one is given that default when it is selected
    def read_files(self, requests: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """:meth:`read_file` of each ``(rev, path)``, answered at once where the backend can."""

    def gc_runs(self) -> dict[str, tuple[bool, float]]:
        """The gc runs the remote records: run id -> (still running, start time) (:mod:`cpv_core.workspace.gc_fence`)."""

    def begin_gc(self) -> str | None:
        """Publish a gc run on the remote before gc reads anything; returns its id (None: no run records)."""

    def end_gc(self, run: str) -> None:
        """Mark gc run ``run`` done on the remote."""

    def unmark_pruned(self, kind: str, versions: Sequence[str]) -> None:
        """Remove the pruned marks of ``versions`` (a gc that found them holding a stage kept their bytes)."""

    def remote_branch_rev(self) -> str | None:
        """The fetched remote branch a pull would move to, readable with :meth:`read_file` (None: unknown)."""

    def code_origin(self, where: Path) -> dict[str, Any] | None:
        """The git repository around ``where`` (the training code, not this workspace):
        ``{"commit", "branch", "dirty"}``; None outside one."""

    def read_scope(self) -> AbstractContextManager[None]:
        """While open, reads of the history (versions, lease refs) may be answered from
        one listing, dropped at any change the backend makes itself; the core opens it
        around an operation that holds the workspace lock (so nobody else changes the
        local history meanwhile), e.g. a tag reads its history once."""


@runtime_checkable
class HostingBackend(Protocol):
    """Where a team/model's git repository lives."""

    name: str

    def remote_url(self) -> str:
        """The git URL of this team/model's repository."""

    def ensure_remote(self) -> str:
        """Make sure the remote repository exists (create it where the host
        allows); return its URL. Raise :class:`RepositoryError` saying exactly
        what to create when it cannot."""

    def validate(self) -> list[CheckResult]:
        """Check that the remote is reachable with the configured credentials."""


@runtime_checkable
class CredentialProvider(Protocol):
    """Credentials for one external service."""

    name: str

    def is_configured(self, config: CPVConfig) -> bool:
        """Whether the user has set this provider up."""

    def setup(self, config: CPVConfig, **options: Any) -> dict[str, Any]:
        """Validate ``options`` and return the config entries to store (paths
        and names only, never secret values)."""

    def validate(self, config: CPVConfig) -> list[CheckResult]:
        """Run each check and report it; must finish in bounded time."""

    def environment(self, config: CPVConfig) -> dict[str, str]:
        """Environment variables subprocesses need to use these credentials."""


# --------------------------------------------------------------------------
# What the registration hooks return
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StorageBackendInfo:
    """A storage backend offered by a plugin: its config name and factory."""

    name: str
    factory: Callable[[BackendContext], StorageBackend]
    description: str = ""
    #: the config keys it reads (``local.root``), so ``cpv config set`` can check a key
    settings: tuple[str, ...] = ()
    #: the provider's list price of a GB-month in USD (``cpv du --cost``'s default), if it has one
    list_price_per_gb_month: float | None = None


@dataclass(frozen=True)
class VersioningBackendInfo:
    """A versioning backend offered by a plugin."""

    name: str
    factory: Callable[[BackendContext], VersioningBackend]
    description: str = ""


@dataclass(frozen=True)
class HostingBackendInfo:
    """A hosting backend offered by a plugin."""

    name: str
    factory: Callable[[BackendContext], HostingBackend]
    description: str = ""
    #: the config keys it reads, so ``cpv config set`` can check a key
    settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CredentialProviderInfo:
    """A credential provider offered by a plugin.

    :param section: the cpv config section its ``setup`` result is stored in
        (default: its name).
    :param selects: the backends it makes the default once configured, by
        kind (``{"storage": "dvc-s3"}``); an explicit ``storage``/``hosting``
        key in the config always wins.
    :param keys: the keys of its section (``bucket``, ``profile`` …), so
        ``cpv config set aws.bucekt`` is refused listing them.
    """

    name: str
    provider: CredentialProvider
    description: str = ""
    section: str = ""
    selects: Mapping[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class SettingInfo:
    """A config key a plugin reads outside its backends' sections (hook ``cpv_settings``).

    :param key: the dotted key (``notify.webhook``).
    :param description: one line for ``cpv config show`` and the docs.
    :param secret: the value grants access (a webhook URL with its token):
        ``cpv config show`` masks it and cpv never logs it.
    :param check: called with the value ``cpv config set`` is given; raises
        ``ValueError`` with a message (that never repeats a secret value) when the
        value cannot work, so nothing is stored.
    """

    key: str
    description: str = ""
    secret: bool = False
    check: Callable[[str], None] | None = None


@dataclass(frozen=True)
class SetupQuestion:
    """One question ``cpv setup`` asks for a :class:`SetupChoice` (and its flag,
    ``--{choice}-{name}`` with ``_`` as ``-``, for ``--non-interactive`` runs).

    :param name: the answer's key (``bucket``).
    :param prompt: what the person reads (``S3 bucket``).
    :param default: the answer when Enter is pressed (None: an answer is required),
        or a function of the answers so far (a workspace defaulting to the user).
    :param check: ``check(value, answers_so_far)`` returns the value to keep or
        raises a :class:`cpv_core.errors.CPVError` saying what is wrong (the
        question is asked again).
    :param help: one line shown before the question.
    """

    name: str
    prompt: str
    default: str | Callable[[Mapping[str, str]], str] | None = None
    check: Callable[[str, Mapping[str, str]], str] | None = None
    help: str = ""


@dataclass(frozen=True)
class SetupChoice:
    """One answer to "which storage / hosting?" in ``cpv setup`` (hook ``cpv_setup_choices``).

    :param kind: ``"storage"`` or ``"hosting"``.
    :param name: what the person types (``s3``).
    :param backend: the backend it selects (``dvc-s3``).
    :param questions: asked in order once this choice is made.
    :param apply: writes the configuration from the answers through the same
        validated code as the plugin's own set-up command; returns lines to show.
    :param current: the answers the present configuration implies (shown as defaults).
    :param provider: the credential provider ``apply`` configures; the sections of
        other providers of the same kind are removed, so one backend is in force.
    :param after: shown (and waited for, interactively) after ``apply`` and before
        the check, e.g. "add the public key to Bitbucket".
    """

    kind: str
    name: str
    backend: str
    label: str
    questions: tuple[SetupQuestion, ...] = ()
    apply: Callable[[Any, Mapping[str, str]], list[str]] | None = None
    current: Callable[[Any], Mapping[str, str]] | None = None
    provider: str | None = None
    after: str = ""

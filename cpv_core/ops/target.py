"""The target object: one kind of checkpoint (model or data) in one workspace.

:class:`Target` holds the workspace, the kind and the read helpers every
operation needs (pointer files, versions, metrics, clean-tree checks). Every
module of :mod:`cpv_core.ops` is a set of functions of one ``Target``; this
module imports none of them, so the operations depend on the target and never
the other way round. :class:`cpv_core.api.checkpoint_manager.Target`
adds one public method per operation on top.

The target never runs git, DVC, boto3 or a subprocess itself: it drives the
backends chosen by configuration (see :mod:`cpv_core.plugin.protocols`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from cpv_core.domain.kinds import MODEL, KindSpec, check_kwargs
from cpv_core.domain.metrics import METRICS_FILE, encode_record, latest_field, latest_metrics, parse_log
from cpv_core.domain.records import MAX_UPLOAD_MESSAGE
from cpv_core.errors import CheckpointNotFoundError, ValidationError, WorkspaceDirtyError
from cpv_core.paths import atomic_path
from cpv_core.plugin.config import CPVConfig
from cpv_core.plugin.protocols import TrackedArtifact, VersionRecord
from cpv_core.workspace.history import fetch_versions, find_version, require_content
from cpv_core.workspace.workspace import Workspace

logger = logging.getLogger("cpv")

_M = TypeVar("_M", bound="Target")


class Target:
    """Upload/tag/list/download/revert/metadata for one kind of checkpoint
    (the base of :class:`ModelsCheckpointsManage` and :class:`DataCheckpointsManage`)."""

    spec: KindSpec = MODEL

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        *,
        config: CPVConfig | None = None,
        verbose: bool = False,
        dry_run: bool = False,
        echo: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        check_kwargs(type(self).__name__, kwargs, "progress", "lock_timeout", "workspace", "caller")
        #: who calls: "python" or "cli"; fix hints name keyword arguments or flags accordingly
        self.caller = str(kwargs.get("caller") or "python")
        self.verbose = verbose
        self.dry_run = dry_run
        self.echo = echo or self._default_echo
        shared = kwargs.get("workspace")
        self.ws = (
            shared
            if isinstance(shared, Workspace)
            else Workspace(
                team_name,
                model_name,
                repo_path,
                config,
                verbose=verbose,
                progress=bool(kwargs.get("progress", False)),
                lock_timeout=kwargs.get("lock_timeout"),
                caller=self.caller,
            )
        )

    @property
    def team_name(self) -> str:
        return self.ws.team

    @property
    def model_name(self) -> str:
        return self.ws.model

    @property
    def repo_path(self) -> Path:
        return self.ws.path

    @property
    def target(self) -> str:
        """Workspace-relative path this manager versions (``model.bin`` / ``data``)."""
        return self.ws.file_for(self.spec.kind)

    def sibling(self, cls: type[_M]) -> _M:
        """A manager of another kind over the same workspace (same lock, same backends)."""
        return cls(
            self.ws.team,
            self.ws.model,
            self.ws.path,
            verbose=self.verbose,
            dry_run=self.dry_run,
            echo=self.echo,
            workspace=self.ws,
            caller=self.caller,
        )

    def _default_echo(self, line: str) -> None:
        if self.dry_run or self.verbose:
            print(line)
        else:
            logger.info(line)

    def hint(self, *, cli: str, python: str) -> str:
        """The half of a fix hint that speaks the caller's language."""
        return cli if self.caller == "cli" else python

    def plan(self, lines: list[str]) -> list[str]:
        for line in lines:
            self.echo(f"[dry-run] {line}")
        return lines

    def check_repo_path(self, repo_path: str | Path | None) -> None:
        """A ``repo_path`` passed again to a seed method (the seeds do) must be this workspace."""
        if repo_path and Path(repo_path).expanduser().resolve() != self.ws.path:
            raise ValidationError(
                f"repo_path {str(repo_path)!r} is not this manager's workspace {self.ws.path}",
                fix="pass repo_path to the constructor only, or create another manager",
            )

    def options(self, kwargs: Mapping[str, Any]) -> tuple[bool, bool]:
        """Per-call ``dry_run`` / ``force`` (seed style ``**kwargs``)."""
        return bool(kwargs.get("dry_run", self.dry_run)), bool(kwargs.get("force", False))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        path = self.ws.path / METRICS_FILE
        existing = path.read_bytes() if path.exists() else b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        with atomic_path(path) as tmp:
            tmp.write_bytes(existing + encode_record(record))

    def fetch(self, *, required: bool) -> None:
        """Fetch the remote's branch and tags; offline, warn (or raise when ``required``)."""
        fetch_versions(self.ws, required=required)

    def records(self) -> list[VersionRecord]:
        return self.ws.versioning.list_versions(self.spec.kind)

    def find(self, tag: str | None, *, fetch: bool = True) -> VersionRecord:
        return find_version(
            self.ws,
            self.spec.kind,
            tag,
            fetch=fetch,
            create_hint="upload and tag one first ("
            + self.hint(
                cli=f"`cpv {self.spec.kind} upload`, `cpv {self.spec.kind} tag`",
                python=f"upload_{self.spec.kind}_checkpoint(), tag_{self.spec.kind}_checkpoint()",
            )
            + ")",
        )

    def require_content(self, record: VersionRecord) -> None:
        """Refuse a version whose content ``cpv gc`` removed, saying when."""
        require_content(self.ws, self.spec.kind, record)

    def target_at(self, rev: str) -> str:
        """The workspace path this kind had at ``rev`` (models may change name or
        become directories from one version to the next)."""
        return self.ws.file_at(self.spec.kind, rev)

    def pointer(self, rev: str) -> bytes | None:
        """The pointer file of this manager's target at ``rev`` (no checkout); None when absent."""
        return self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(self.target_at(rev)))

    def pointer_info(self, rev: str) -> TrackedArtifact | None:
        target = self.target_at(rev)
        pointer = self.ws.versioning.read_file(rev, self.ws.storage.pointer_path(target))
        return self.ws.storage.describe_pointer(target, pointer) if pointer else None

    def current_metrics(self, rev: str = "HEAD") -> dict[str, Any]:
        """The latest metrics of this kind in ``metrics.log`` at ``rev``."""
        return latest_metrics(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind)

    def require_clean_target(self, action: str, force: bool, *, content: bool = True) -> dict[str, str]:
        """Refuse ``action`` while the pointer or metrics.log have uncommitted changes, or (with
        ``content``) while the target's files differ from its pointer; the dirty targets."""
        status = self.ws.storage.status([self.target]) if content else {}
        dirty = {p: s for p, s in status.items() if s in {"modified", "untracked"}}
        changed = self.ws.versioning.changed_files([self.ws.storage.pointer_path(self.target), METRICS_FILE])
        if (dirty or changed) and not force:
            what = ", ".join([f"{p} ({s})" for p, s in dirty.items()] + changed)
            upload = self.hint(cli=f"`cpv {self.spec.kind} upload`", python=f"upload_{self.spec.kind}_checkpoint()")
            if action == "tag":  # tag has no force: what is tagged must be what is stored
                fix = f"upload them first ({upload}), then tag"
            else:
                fix = f"upload them first ({upload}) or {self.hint(cli='pass --force', python='pass force=True')} to discard them"
            raise WorkspaceDirtyError(f"cannot {action}: uncommitted changes in {self.ws.path}: {what}", fix=fix)
        return dirty

    def tag_metadata(self, info: TrackedArtifact) -> dict[str, Any]:
        """What a version of this kind records about the current commit."""
        return {
            "path": self.target,
            "digest": info.digest,
            "size": info.size,
            "nfiles": info.nfiles,
            "metrics": self.current_metrics(),
            "lineage": self.lineage(),
            "upload_message": self.upload_messages(),
            **{name: value for name in ("params", "code") if (value := self.current_field(name))},
        }

    def current_field(self, name: str, rev: str = "HEAD") -> dict[str, Any]:
        """The newest ``params`` or ``code`` of this kind in ``metrics.log`` at ``rev``."""
        return latest_field(parse_log(self.ws.versioning.read_file(rev, METRICS_FILE)), self.spec.kind, name)

    def same_content_as(self, digest: str, records: list[VersionRecord] | None = None) -> str | None:
        """The newest version of this kind whose content is ``digest``, if any (among
        ``records`` when the caller has just read them)."""
        same = [r.version for r in (self.records() if records is None else records) if r.metadata.get("digest") == digest]
        return same[-1] if same else None

    def upload_messages(self) -> str:
        """The messages of this kind's uploads since its latest version (or ever, before
        the first), oldest first, joined with "; ": what a version says when its tag has none."""
        records = self.records()
        before = parse_log(self.ws.versioning.read_file(records[-1].commit, METRICS_FILE)) if records else []
        seen = {encode_record(r) for r in before}
        messages = [
            str(r["message"])
            for r in parse_log(self.ws.versioning.read_file("HEAD", METRICS_FILE))
            if r.get("kind") == self.spec.kind and r.get("event") == "upload" and r.get("message") and encode_record(r) not in seen
        ]
        return "; ".join(dict.fromkeys(messages))[:MAX_UPLOAD_MESSAGE]

    def lineage(self) -> dict[str, Any]:
        """What a version of this kind records about the other kinds it came from (none by default)."""
        return {}

    def check_taggable(self) -> TrackedArtifact:
        info = self.pointer_info("HEAD")
        if info is None:
            raise CheckpointNotFoundError(
                f"nothing to tag: no {self.spec.kind} has been uploaded to {self.ws.team}/{self.ws.model}",
                fix=self.hint(cli=f"run `cpv {self.spec.kind} upload` first", python=f"call upload_{self.spec.kind}_checkpoint() first"),
            )
        # a directory's files are not walked: a tag names the last upload, which is stored, at
        # the same cost for 200 000 files as for one (`cpv status` tells what changed since)
        self.require_clean_target("tag", force=False, content=not (self.ws.path / self.target).is_dir())
        return info

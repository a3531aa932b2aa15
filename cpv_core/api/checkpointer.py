"""Checkpointing from training code: ``save`` returns at once, a background worker
uploads (and tags) in order.

The file or directory handed to :meth:`Checkpointer.save` is snapshotted first
(a reflink where the file system has them, else a copy) into a private
directory, so the training loop may overwrite it with the next epoch as soon
as ``save`` returns. One upload runs at a time; when saves arrive faster than
the uploads drain, the waiting snapshot is replaced by the newer one (the
newest is never dropped; a replaced one is logged). An error in the worker is
raised by the next ``save``, ``wait`` or ``close``, never swallowed.

Example::

    with Checkpointer("AI-Convo", "whisper", keep_best="loss") as ck:
        for epoch in range(epochs):
            train_one_epoch(model)
            torch.save(model.state_dict(), "ckpt.pt")
            ck.save("ckpt.pt", metrics={"loss": loss}, tag="auto")
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cpv_core.domain.metrics import metric_number, validate_metrics
from cpv_core.domain.names import validate_name
from cpv_core.domain.retention_rules import RetentionRules, parse_retention
from cpv_core.errors import ValidationError
from cpv_core.paths import remove_path
from cpv_core.plugin.config import CPVConfig
from cpv_core.trust import visible
from cpv_core.workspace.run_folders import OwnedFolder, remove_abandoned

logger = logging.getLogger("cpv.checkpointer")

_FICLONE = 0x40049409  # Linux ioctl: share the source's blocks (btrfs, xfs, ...)


def clone_or_copy(src: str, dst: str) -> str:
    """Copy ``src`` to ``dst`` sharing blocks when the file system can (a reflink:
    instant, no space, and a later write to either never touches the other)."""
    import fcntl

    with open(src, "rb") as reader, open(dst, "wb") as writer:
        try:
            fcntl.ioctl(writer.fileno(), _FICLONE, reader.fileno())
            return dst
        except OSError:
            pass
    shutil.copyfile(src, dst)
    return dst


def link_or_copy(src: str, dst: str) -> str:
    """Hard-link ``src`` at ``dst`` (nothing is copied); a copy where the file system
    cannot link (another device)."""
    try:
        os.link(src, dst)
    except OSError:
        return clone_or_copy(src, dst)
    return dst


@dataclass
class Snapshot:
    """One saved checkpoint waiting for its upload."""

    number: int
    folder: Path
    path: Path
    metrics: dict[str, Any]
    tag: bool
    message: str | None


class Checkpointer:
    """Non-blocking checkpoints for a training loop (see the module docstring).

    :param every: upload every N-th save (the others are skipped, unless
        ``keep_best`` says the save is the best so far).
    :param keep_best: a metric (``"loss"``, or ``"accuracy:max"`` for higher is
        better); with ``tag="auto"`` only saves that improve it are tagged.
    :param tag: the default for :meth:`save`: True (tag every upload), False,
        or ``"auto"`` (tag when ``keep_best`` improved; every upload without it).
    :param keep: retention rules applied during the run (the same grammar as
        ``.cpv/retention.json``, e.g. ``{"keep_last": 3, "keep_best": [{"metric": "loss", "k": 2}]}``):
        after each tagged version the worker runs the safe gc with them (grace
        ``keep_grace_hours``), so a 500-epoch run keeps what they say, not 500 versions.
    :param keep_grace_hours: the grace of that gc (objects written more recently are
        spared; 0 frees a pruned checkpoint's bytes at once, and teammates' uploads in
        flight stay protected by the gc fence).
    :param manager_kwargs: passed to the :class:`ModelsCheckpointsManage` the
        worker uses (``config=``, ``verbose=`` ...).
    """

    def __init__(
        self,
        team_name: str,
        model_name: str,
        repo_path: str | Path | None = None,
        *,
        every: int = 1,
        keep_best: str | None = None,
        tag: bool | str = "auto",
        keep: Mapping[str, Any] | None = None,
        keep_grace_hours: float = 0.0,
        **manager_kwargs: Any,
    ) -> None:
        self.team = validate_name(team_name, "team name")
        self.model = validate_name(model_name, "model name")
        self.repo_path = repo_path
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValidationError(f"every={every!r} is not a whole number of saves >= 1", fix="e.g. every=1 (each save) or every=5")
        self.every = every
        self.metric, self.higher_is_better = parse_keep_best(keep_best)
        self.default_tag = check_tag(tag)
        self.keep = parse_keep(keep) if keep is not None else None
        if isinstance(keep_grace_hours, bool) or not isinstance(keep_grace_hours, (int, float)) or not 0 <= keep_grace_hours <= 8760:
            raise ValidationError(f"keep_grace_hours={keep_grace_hours!r} is not 0 to 8760 hours", fix="e.g. keep_grace_hours=0")
        self.keep_grace_hours = float(keep_grace_hours)
        #: what the run's retention pruned, version by version (with ``keep``)
        self.pruned: list[str] = []
        self.manager_kwargs = manager_kwargs
        config = manager_kwargs.get("config") or CPVConfig()
        check_reachable(config, self.team, self.model, repo_path)  # before the first epoch, not at its second save
        root = config.config_dir / "checkpointer" / self.team / self.model
        remove_orphaned_snapshots(root)
        self._folder = OwnedFolder(root)  # locked for this run's life: see cpv_core.workspace.run_folders
        self.staging = self._folder.path
        #: versions the worker tagged, in order
        self.versions: list[str] = []
        #: saves uploaded, and saves superseded before their upload started
        self.uploaded = 0
        self.superseded = 0
        self._saves = 0
        self._best: float | None = None
        self._pending: Snapshot | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._closing = False
        self._cond = threading.Condition()
        self._manager: Any = None
        self._thread = threading.Thread(target=self._work, name=f"cpv-checkpointer-{self.model}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the training loop's side --------------------------------------------------------
    def save(
        self,
        path: str | Path,
        metrics: dict[str, Any] | None = None,
        *,
        tag: bool | str | None = None,
        message: str | None = None,
        snapshot: str = "copy",
    ) -> bool:
        """Snapshot ``path`` (a file or a directory) and queue its upload; returns at once.

        ``snapshot="copy"`` (the default) copies it, sharing blocks where the file
        system can (a reflink), so the next epoch may overwrite the file at once.
        ``snapshot="link"`` hard-links it instead, which costs nothing whatever its
        size, and is right only when the files are never rewritten in place after
        this call (a writer that saves each checkpoint to a new folder, like the
        Hugging Face Trainer's ``checkpoint-N``; deleting them later is fine).

        Returns False when this save is skipped (``every``). Raises the error of
        an earlier upload, if one failed since the last call.
        """
        if snapshot not in {"copy", "link"}:
            raise ValidationError(
                f"snapshot={snapshot!r} is not 'copy' or 'link'", fix="snapshot='link' only for files never rewritten in place"
            )
        self._raise_worker_error()
        if self._closing:
            raise ValidationError("this Checkpointer is closed", fix="create a new Checkpointer")
        clean = validate_metrics(metrics)
        source = Path(path).expanduser().resolve()
        if not source.exists():
            raise ValidationError(f"checkpoint path {str(source)!r} does not exist", fix="save the checkpoint first, then pass its path")
        self._saves += 1
        improved = self._improves(clean)
        if self._saves % self.every and not improved:
            return False
        decision = check_tag(self.default_tag if tag is None else tag)
        tag_it = decision is True or (decision == "auto" and (self.metric is None or improved))
        snap = self._snapshot(source, clean, tag_it, message, link=snapshot == "link")
        with self._cond:
            if self._pending is not None:
                logger.warning(
                    "checkpoint of save #%d was replaced by save #%d before its upload started (saves come faster than uploads)",
                    self._pending.number,
                    snap.number,
                )
                self.superseded += 1
                remove_path(self._pending.folder)
            self._pending = snap
            self._cond.notify_all()
        return True

    def wait(self) -> None:
        """Block until every queued checkpoint is uploaded; raise a worker error."""
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait()
        self._raise_worker_error()

    def close(self) -> None:
        """Flush (as :meth:`wait`) and stop the worker. Also called on context exit
        and at interpreter exit."""
        if self._closing:
            return
        try:
            self.wait()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(timeout=60)
            atexit.unregister(self.close)
            self._folder.release()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        try:  # the loop failed: still flush what was saved, but never hide its error
            self.close()
        except Exception:  # noqa: BLE001
            logger.exception("uploading the last checkpoints failed too")

    # -- internals ----------------------------------------------------------------------
    def _improves(self, metrics: dict[str, Any]) -> bool:
        if self.metric is None:
            return False
        value = metric_number(metrics, self.metric)
        if value is None:
            return False
        better = self._best is None or (value > self._best if self.higher_is_better else value < self._best)
        if better:
            self._best = value
        return better

    def _snapshot(self, source: Path, metrics: dict[str, Any], tag: bool, message: str | None, *, link: bool) -> Snapshot:
        folder = self.staging / f"{self._saves:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / source.name
        place = link_or_copy if link else clone_or_copy
        if source.is_dir():
            shutil.copytree(source, dest, symlinks=False, copy_function=place)
        else:
            place(str(source), str(dest))
        return Snapshot(self._saves, folder, dest, metrics, tag, message)

    def _raise_worker_error(self) -> None:
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                snap, self._pending, self._busy = self._pending, None, True
            try:
                self._upload(snap)
            except BaseException as exc:  # noqa: BLE001 - handed to the training loop at its next call
                with self._cond:
                    self._error = exc
            finally:
                remove_path(snap.folder)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _upload(self, snap: Snapshot) -> None:
        """Upload one snapshot (and tag it): the worker's only job."""
        if self._manager is None:
            from cpv_core.api.model_data import ModelsCheckpointsManage

            self._manager = ModelsCheckpointsManage(self.team, self.model, self.repo_path, **self.manager_kwargs)
            if not self._manager.ws.is_initialized():
                self._manager.import_model_init()
        m = self._manager
        # the snapshot is the Checkpointer's own: moved into the workspace, not copied again
        m.upload(snap.path, snap.metrics or None, snap.message, consume_source=True)
        self.uploaded += 1
        if snap.tag:
            self.versions.append(m.tag_model_checkpoint(message=snap.message, allow_duplicate=True))
            if self.keep is not None:
                self._apply_retention(m)

    def _apply_retention(self, m: Any) -> None:
        """The run's retention rules, through the safe gc (its fence, marks and grace)."""
        from cpv_core.ops.retention import RetentionPolicy, collect_garbage

        policy = RetentionPolicy(rules=self.keep, grace_hours=self.keep_grace_hours)
        result = collect_garbage([m], policy, dry_run=False)
        for version in result.pruned.get("model", []):
            if version not in self.pruned:
                self.pruned.append(version)


def parse_keep(keep: Mapping[str, Any]) -> RetentionRules:
    """``keep=`` as retention rules, checked as a ``.cpv/retention.json`` would be."""
    try:
        raw = json.dumps(dict(keep)).encode()
    except (TypeError, ValueError):
        raise ValidationError(
            f"keep={visible(repr(keep))[:80]} is not rules of plain values", fix='e.g. keep={"keep_last": 3} (docs/concepts.md)'
        ) from None
    return parse_retention(raw, "keep=")


def check_reachable(config: CPVConfig, team: str, model: str, repo_path: str | Path | None) -> None:
    """``cpv validate``'s checks for this model (credentials, the store, the hosting and its
    repository): the first failure is raised as the one-line error ``cpv validate`` gives."""
    from cpv_core.errors import CredentialError
    from cpv_core.workspace.workspace import Workspace

    report = config.validate_credentials()
    report.checks.extend(Workspace(team, model, repo_path, config).hosting.validate())
    failed = report.failed()
    if failed:
        first = failed[0]
        raise CredentialError(
            f"the Checkpointer cannot reach what {team}/{model} is stored on: {first.detail}",
            fix=first.fix or "run `cpv validate` and fix what it reports",
        )


def remove_orphaned_snapshots(root: Path) -> None:
    """Remove the snapshots a killed training process left: a checkpoint never uploaded
    is no use once its run died, and a folder can hold gigabytes. A run is dead when
    nobody holds its folder's lock (:func:`cpv_core.workspace.run_folders.remove_abandoned`), never
    by its PID, which another PID namespace or host may reuse. One line per folder."""
    remove_abandoned(root, "snapshots of a training run that ended before uploading them")


def parse_keep_best(value: str | None) -> tuple[str | None, bool]:
    """``"loss"`` -> (loss, lower is better); ``"accuracy:max"`` -> (accuracy, higher is better)."""
    if value is None:
        return None, False
    metric, _, direction = str(value).partition(":")
    if not metric or direction not in {"", "min", "max"}:
        raise ValidationError(f"keep_best={value!r} is not METRIC or METRIC:max", fix="e.g. keep_best='loss' or keep_best='accuracy:max'")
    return metric, direction == "max"


def check_tag(value: bool | str) -> bool | str:
    """``True``, ``False`` or ``"auto"``."""
    if value is True or value is False or value == "auto":
        return value
    raise ValidationError(f"tag={value!r} is not True, False or 'auto'", fix="tag=True tags every upload; 'auto' only improvements")

"""The rule ``cpv gc`` and every publishing command follow, so that a gc running
while a teammate uploads or promotes never deletes bytes a published version needs.

Both sides write first, then read what the other wrote (the git remote orders
the writes):

* gc publishes a *run* ref (``begin``) before it reads the versions, stages and
  branch it must protect, and replaces it by a *done* ref once it has deleted
  (``end``);
* an upload (or a promotion) takes a :class:`Fence` before it asks the store
  what is there, publishes its commit (or stage record), and only then reads
  the runs again (:meth:`Fence.overlapped`).

Either the gc read the published commit (and protects what it names), or the
publisher sees the gc's run: it waits for that run to end, then confirms every
object it relies on against the store once more, re-sending what is gone
(:func:`reconfirm`). Backends without run records (an optional part of the
versioning protocol) get no fence: their gc is only safe on a quiet remote.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cpv_core.errors import CPVError, ValidationError, WorkspaceDirtyError
from cpv_core.paths import atomic_write_bytes

if TYPE_CHECKING:
    from cpv_core.workspace.workspace import Workspace

logger = logging.getLogger("cpv")

#: a run still "running" this long after it started was killed: it is not waited for
STALE_RUN_SECONDS = 6 * 3600
#: how long a publisher waits for an overlapping gc to finish (``CPV_GC_WAIT``)
DEFAULT_WAIT_SECONDS = 300.0

Runs = dict[str, tuple[bool, float]]
#: what a run id looks like (``{start}-{nonce}``, as git-tags writes it)
RUN_ID_RE = re.compile(r"^[0-9]{1,12}-[0-9a-f]{8}$")


#: an upload's fence, kept in the workspace's private directory from just before its commit
#: until its objects are confirmed: a kill in between leaves it for the next command
PENDING_FILE = "gc-fence-upload.json"
#: the gc run this machine published and has not yet marked done
RUN_FILE = "gc-run"


def begin(ws: Workspace) -> str | None:
    """Publish this gc's run ref (None for a backend without run records), first closing
    one a killed gc of this machine left running (it would hold publishers up)."""
    close_killed_run(ws)
    run = ws.versioning.begin_gc()
    if run is not None:
        atomic_write_bytes(state_file(ws, RUN_FILE), run.encode())
    return run


def state_file(ws: Workspace, name: str) -> Path:
    """``name`` in the workspace's private directory (made when missing)."""
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    return ws.state_dir / name


def close_killed_run(ws: Workspace) -> None:
    """Mark done the run a gc of this machine published and was killed before ending
    (recorded in the private directory; nothing else is acted on), saying so."""
    path = ws.state_dir / RUN_FILE
    if not path.is_file() or path.is_symlink():
        return
    run = path.read_text(encoding="utf-8", errors="replace").strip()
    if RUN_ID_RE.fullmatch(run):
        end(ws, run)
        logger.warning("closed gc run %s, which an interrupted cpv gc on this machine had left open", run)
    path.unlink(missing_ok=True)


def end(ws: Workspace, run: str | None) -> None:
    """Mark this gc's run done. A failure here (the remote went away) is said in one
    line and never hides the gc's own result or error: the next gc here closes it, and
    publishers stop waiting for a run once it is :data:`STALE_RUN_SECONDS` old."""
    if run is None:
        return
    try:
        ws.versioning.end_gc(run)
    except CPVError as exc:
        logger.warning("could not mark gc run %s done on the remote (%s); the next cpv gc here closes it", run, exc.message)
        return
    (ws.state_dir / RUN_FILE).unlink(missing_ok=True)


def wait_seconds() -> float:
    """``CPV_GC_WAIT`` (seconds), else :data:`DEFAULT_WAIT_SECONDS`."""
    raw = os.environ.get("CPV_GC_WAIT", "")
    if not raw:
        return DEFAULT_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValidationError(f"CPV_GC_WAIT={raw!r} is not a number of seconds", fix="e.g. CPV_GC_WAIT=300, or unset it") from None
    if not 0 <= value <= 86400:
        raise ValidationError(f"CPV_GC_WAIT={raw!r} is not between 0 and 86400 seconds", fix="e.g. CPV_GC_WAIT=300, or unset it")
    return value


class Fence:
    """Taken before a publisher relies on what the store holds (see the module docstring)."""

    def __init__(self, ws: Workspace, before: Runs | None = None) -> None:
        self.ws = ws
        self.before = ws.versioning.gc_runs() if before is None else before

    def record(self) -> None:
        """Keep this fence until :meth:`clear`: taken just before a commit is published, so
        a kill before the objects are confirmed leaves it to :func:`refuse_unconfirmed`."""
        atomic_write_bytes(state_file(self.ws, PENDING_FILE), json.dumps({"before": self.before}).encode())

    def clear(self) -> None:
        (self.ws.state_dir / PENDING_FILE).unlink(missing_ok=True)

    def overlapped(self) -> bool:
        """After publishing: whether a gc ran (or started) since the fence was taken.
        When one did, wait (bounded) until no such run is still running."""
        after = self.ws.versioning.gc_runs()
        now = time.time()
        live = {r for r, (running, start) in self.before.items() if running and now - start < STALE_RUN_SECONDS}
        new = set(after) - set(self.before)
        if not live and not new:
            return False
        deadline = time.monotonic() + wait_seconds()
        said = False
        while True:
            running = [r for r, (still, start) in after.items() if still and (r in live or r in new) and now - start < STALE_RUN_SECONDS]
            if not running:
                return True
            if time.monotonic() >= deadline:
                logger.warning(
                    "a cpv gc is still running after %.0f s; checking the store now (run `cpv verify --remote` once it ends)",
                    wait_seconds(),
                )
                return True
            if not said:
                logger.warning(
                    "a cpv gc (run %s) is running on this model; waiting up to %.0f s for it to finish before confirming "
                    "the objects this relies on (if that gc was killed, the next cpv gc on its machine closes the run)",
                    ", ".join(running),
                    wait_seconds(),
                )
                said = True
            time.sleep(1.0)
            after, now = self.ws.versioning.gc_runs(), time.time()


def pending(ws: Workspace) -> Fence | None:
    """The fence a killed upload left between publishing its commit and confirming its
    objects (recorded by this machine; a malformed record is dropped), or None."""
    path = ws.state_dir / PENDING_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        raw = json.loads(path.read_bytes()[:1_000_000]).get("before", {})
        before = {str(r): (bool(v[0]), float(v[1])) for r, v in raw.items() if RUN_ID_RE.fullmatch(str(r))}
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):
        path.unlink(missing_ok=True)
        return None
    return Fence(ws, before)


def refuse_unconfirmed(ws: Workspace, kinds: Sequence[str]) -> None:
    """Before a version is published: an upload killed after its commit while a gc ran may
    have left that commit naming objects the gc removed. If no gc overlapped it, the record
    is dropped; otherwise the version is refused until an upload confirms the objects."""
    fence = pending(ws)
    if fence is None:
        return
    if not fence.overlapped():
        fence.clear()
        return
    kind = kinds[0] if kinds else "model"
    raise WorkspaceDirtyError(
        "an upload here was interrupted after publishing its commit while a cpv gc ran, so the store may lack "
        "objects that commit names; nothing was tagged",
        fix=f"run `cpv {kind} upload` again: it confirms every object on the store and sends what is missing; then tag",
    )


def reconfirm(ws: Workspace, paths: Sequence[str]) -> int:
    """Ask the store for every object of ``paths`` (no manifest vouches) and send again
    what a gc removed; returns how many were sent."""
    sent = ws.storage.reconfirm(paths).transferred
    if sent:
        logger.warning("a cpv gc removed %d object(s) this upload relies on while it ran; they were sent again", sent)
    return sent

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

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import CPVError, ValidationError

if TYPE_CHECKING:
    from .workspace import Workspace

logger = logging.getLogger("cpv")

#: a run still "running" this long after it started was killed: it is not waited for
STALE_RUN_SECONDS = 6 * 3600
#: how long a publisher waits for an overlapping gc to finish (``CPV_GC_WAIT``)
DEFAULT_WAIT_SECONDS = 300.0

Runs = dict[str, tuple[bool, float]]


def gc_runs(ws: Workspace) -> Runs:
    """The gc runs the remote records (run -> (running, start)); {} for a backend without them."""
    return ws.versioning.gc_runs()


def begin(ws: Workspace) -> str | None:
    """Publish this gc's run ref (None for a backend without run records)."""
    return ws.versioning.begin_gc()


def end(ws: Workspace, run: str | None) -> None:
    """Mark this gc's run done. A failure here (the remote went away) is said in one
    line and never hides the gc's own result or error: publishers stop waiting for a
    run once it is :data:`STALE_RUN_SECONDS` old."""
    if run is None:
        return
    try:
        ws.versioning.end_gc(run)
    except CPVError as exc:
        logger.warning("could not mark gc run %s done on the remote (%s); uploads may wait for it until it is stale", run, exc.message)


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

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.before = gc_runs(ws)

    def overlapped(self) -> bool:
        """After publishing: whether a gc ran (or started) since the fence was taken.
        When one did, wait (bounded) until no such run is still running."""
        after = gc_runs(self.ws)
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
                logger.warning("a cpv gc is running on this model; waiting for it to finish before confirming the upload's objects")
                said = True
            time.sleep(1.0)
            after, now = gc_runs(self.ws), time.time()


def reconfirm(ws: Workspace, paths: Sequence[str]) -> int:
    """Ask the store for every object of ``paths`` (no manifest vouches) and send again
    what a gc removed; returns how many were sent. Storage backends without
    ``reconfirm`` are pushed again."""
    sent = ws.storage.reconfirm(paths).transferred
    if sent:
        logger.warning("a cpv gc removed %d object(s) this upload relies on while it ran; they were sent again", sent)
    return sent

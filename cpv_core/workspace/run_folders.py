"""Private folders owned by one live process (the Checkpointer's snapshots), and how
another process tells a dead owner's folder from a live one.

A PID says nothing across PID namespaces (a container, a sweep job on a shared
home) or hosts (an NFS home), so ownership is an exclusive lock the owner holds on
a file inside its folder for its whole life: the kernel drops it when the owner
dies, however it dies, and a process in another namespace sees it held. The
folder also records the owner's host: a folder of another host whose lock can be
taken (an NFS mount without a lock manager cannot tell) is only removed once it
has not changed for :data:`FOREIGN_STALE_SECONDS`.

A folder is made under a hidden name, locked, then renamed into place, so no
other process ever sees it unlocked while its owner lives.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

logger = logging.getLogger("cpv")

LOCK_NAME = ".owner.lock"
OWNER_NAME = ".owner.json"
#: another host's unlocked folder is removed only after this long without a change
FOREIGN_STALE_SECONDS = 24 * 3600
#: a half-made (hidden) folder is removed after this long
UNFINISHED_STALE_SECONDS = 3600


def host_id() -> str:
    """This machine's name (recorded in every folder it owns)."""
    return socket.gethostname()


class OwnedFolder:
    """A folder under ``root`` locked by this process until :meth:`release`."""

    def __init__(self, root: Path) -> None:
        from filelock import FileLock

        root.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        making = root / f".{name}"
        making.mkdir()
        (making / OWNER_NAME).write_text(json.dumps({"host": host_id(), "pid": os.getpid()}))
        self._lock = FileLock(str(making / LOCK_NAME))
        self._lock.acquire(timeout=0)  # nobody else knows the folder yet
        self.path = root / name
        os.rename(making, self.path)  # the lock's file moves with it: still held

    def release(self) -> None:
        """Remove the folder and drop the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()


def owner_of(folder: Path) -> dict[str, Any]:
    """What the folder records of its owner ({} when unreadable: it is data, not authority)."""
    try:
        value = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def remove_abandoned(root: Path, what: str) -> list[Path]:
    """Remove every folder under ``root`` whose owner is gone (its lock can be taken), one
    line each; returns them. Links and plain files are left alone."""
    from filelock import FileLock, Timeout

    removed: list[Path] = []
    if not root.is_dir() or root.is_symlink():
        return removed
    now = time.time()
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir():
            continue
        age = now - folder.stat().st_mtime
        if folder.name.startswith("."):
            if age > UNFINISHED_STALE_SECONDS:  # a run killed while making its folder
                shutil.rmtree(folder, ignore_errors=True)
            continue
        lock_file = folder / LOCK_NAME
        if not lock_file.is_file() or lock_file.is_symlink():
            if age > FOREIGN_STALE_SECONDS:  # made by a cpv that kept no lock: only once long untouched
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        lock = FileLock(str(lock_file))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # its owner is alive, in this namespace or another
        try:
            if owner_of(folder).get("host") not in {None, host_id()} and age <= FOREIGN_STALE_SECONDS:
                continue  # another host's: its lock may not reach here (NFS without a lock manager)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            lock.release()
    for folder in removed:
        logger.warning("removed %s: %s", folder, what)
    return removed

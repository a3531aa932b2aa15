"""Sending a directory's files while the rest of it is still being hashed.

A content address is known once a file is hashed, so its upload can start
while the next file is read: for a model of several shards, the hashing of all
but the first overlaps the sending. These sends are only a head start. The
push that follows stays the authority: it asks the remote which objects are
there and uploads (and confirms) whatever an early send did not finish, so an
early send that fails is simply left to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger("cpv.storage")


class EarlyUploads:
    """Objects handed to ``send`` on background threads, at most ``workers`` at once."""

    def __init__(self, send: Callable[[str], None], workers: int) -> None:
        self._send = send
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cpv-early-upload")

    def submit(self, oid: str) -> None:
        """Start sending ``oid`` when a worker is free."""
        self._pool.submit(self._quietly, oid)

    def _quietly(self, oid: str) -> None:
        try:
            self._send(oid)
        except Exception as exc:  # noqa: BLE001 - the push redoes it and reports any failure itself
            logger.debug("early upload of %s did not complete (%s); the push sends it", oid, type(exc).__name__)

    def finish(self) -> None:
        """Wait for every send started (the push then finds those objects stored)."""
        self._pool.shutdown(wait=True)

    def abandon(self) -> None:
        """Start no more sends (the upload failed before its push); those running complete."""
        self._pool.shutdown(wait=False, cancel_futures=True)

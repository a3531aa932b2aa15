"""A test hook for crash-consistency tests: die at a named phase.

``CPV_TEST_KILL_AT=upload.committed`` makes cpv exit at once (``os._exit``,
as a ``kill -9`` would: no cleanup, no ``finally``) when it reaches the
phase of that name. The kill-matrix tests use it to check that the next
command repairs every phase by itself. Unset, it costs one dictionary lookup.
"""

from __future__ import annotations

import os

KILL_ENV = "CPV_TEST_KILL_AT"
KILLED_EXIT = 137


def crash_point(phase: str) -> None:
    """Exit abruptly if ``CPV_TEST_KILL_AT`` names ``phase``."""
    if os.environ.get(KILL_ENV) == phase:
        os._exit(KILLED_EXIT)

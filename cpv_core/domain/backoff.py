"""Retrying a contended operation (a push racing other members for the same
ref): exponential backoff with full jitter, bounded by rounds and by time.

Full jitter (a uniform wait between zero and an exponentially growing ceiling)
spreads racing members apart faster than a fixed or linear wait: with a linear
wait, members that collided once keep colliding, and a member whose round trip
is slower than the others' can lose every round.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How often and how long to retry.

    ``attempts`` bounds the rounds; ``budget`` (seconds) stops retrying once
    spent, whichever comes first. The first round never waits.
    """

    attempts: int
    base: float = 0.05
    cap: float = 2.0
    budget: float = 90.0

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        return random.uniform(0.0, min(self.cap, self.base * 2 ** min(retry, 30)))

    def rounds(self) -> Iterator[int]:
        """Round numbers from 0; waits before every round but the first and
        stops after ``attempts`` rounds or once ``budget`` seconds have passed."""
        start = time.monotonic()
        for attempt in range(self.attempts):
            if attempt:
                if time.monotonic() - start >= self.budget:
                    return
                time.sleep(self.delay(attempt))
            yield attempt

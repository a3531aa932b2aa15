"""Progress for long operations: a bar on a terminal, plain lines otherwise.

Backends receive ``BackendContext.progress``; when it is False (library use
by default) nothing is printed. When it is True, a transfer shows a tqdm bar
(bytes, rate, ETA) if stderr is a terminal, and one summary line per phase
otherwise, so logs of CI jobs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any


def human_bytes(size: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class Progress:
    """``with Progress("upload model.bin", total, enabled) as p: p.update(n)``.

    Thread-safe: parallel transfers may call :meth:`update` concurrently.
    """

    def __init__(self, desc: str, total: int, enabled: bool, *, stream: Any = None, started: float | None = None) -> None:
        self.desc = desc
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        #: appended to the closing line (e.g. "; 2.0 MiB already stored")
        self.note = ""
        self._bar: Any = None
        self._lock = threading.Lock()
        self._start = 0.0
        self._started = started  # a monotonic time when the work began before this bar (early sends)

    def __enter__(self) -> Progress:
        self._start = self._started if self._started is not None else time.monotonic()
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            import shutil

            from tqdm import tqdm

            # a terminal that reports a 0x0 size (a fresh pty) gets 80x24, not an invisible bar
            size = shutil.get_terminal_size((80, 24))
            self._bar = tqdm(
                total=self.total or None,  # unknown (a sub-path): bytes and rate, no percentage
                desc=self.desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                leave=True,
                ncols=size.columns or 80,
                nrows=size.lines or 24,
            )
        return self

    def update(self, n: int) -> None:
        """Count ``n`` more bytes."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and exc_type is None:
            elapsed = max(time.monotonic() - self._start, 1e-6)
            moved = self.done or self.total  # what was counted; the announced total when nothing reported bytes
            rate = f" ({human_bytes(moved / elapsed)}/s)" if moved else ""
            print(f"{self.desc}: {human_bytes(moved)} in {elapsed:.1f} s{rate}{self.note}", file=self.stream, flush=True)

"""A download progress bar on stderr, shown only in a terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_MIN_INTERVAL_S = 0.1
_WIDTH = 28


class Progress:
    """Bytes done out of a total, drawn on one line; silent when ``stream`` is not a TTY.

    Safe to advance from several threads at once (files downloaded in parallel).
    """

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._last = 0.0
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more and redraw (at most ten times a second)."""
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if self._enabled and now - self._last >= _MIN_INTERVAL_S:
                self._last = now
                self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        with self._lock:
            if self._enabled:
                self._draw()
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self) -> None:
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        mib = self.done / (1 << 20)
        self._stream.write(f"\r{self.label} [{bar}] {fraction:6.1%} {mib:8.1f} MiB")
        self._stream.flush()

"""A download progress bar on stderr, shown only in a terminal."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from typing import TextIO

_MIN_INTERVAL_S = 0.1
_WIDTH = 28
#: The rate is measured over the last this many seconds.
_RATE_WINDOW_S = 5.0


class Progress:
    """Bytes done out of a total, the rate and the time left, drawn on one line.

    Silent when ``stream`` is not a TTY. The rate is over the last few seconds of transfer;
    bytes that were there already (:meth:`skip`: a resumed download's) count as done, not in
    the rate. Safe to advance from several threads at once (files downloaded in parallel).
    """

    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._last = 0.0
        self._lock = threading.Lock()
        #: Bytes counted by :meth:`skip`: done, but not transferred.
        self._skipped = 0
        #: (time, bytes transferred) at the start and each draw within the window, oldest first.
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more and redraw (at most ten times a second)."""
        with self._lock:
            self.done += nbytes
            now = time.monotonic()
            if self._enabled and now - self._last >= _MIN_INTERVAL_S:
                self._last = now
                self._draw(now)

    def skip(self, nbytes: int) -> None:
        """Count ``nbytes`` that were there already as done, outside the rate."""
        with self._lock:
            self.done += nbytes
            self._skipped += nbytes

    def close(self) -> None:
        """Draw the final state and end the line."""
        with self._lock:
            if self._enabled:
                self._draw(time.monotonic())
                self._stream.write("\n")
                self._stream.flush()

    def _rate(self, now: float) -> float | None:
        """Bytes per second over the rate window; None until there is a span to measure."""
        samples = self._samples
        transferred = self.done - self._skipped
        samples.append((now, transferred))
        # Drop the oldest while the next one still spans the window; the newest always stays.
        while len(samples) > 1 + 1 and now - samples[1][0] >= _RATE_WINDOW_S:
            samples.popleft()
        first_time, first_done = samples[0]
        span = now - first_time
        return max(transferred - first_done, 0) / span if span > 0 else None

    def _draw(self, now: float) -> None:
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        mib = self.done / (1 << 20)
        rate = self._rate(now)
        speed = "  --.- MiB/s" if rate is None else f"{rate / (1 << 20):6.1f} MiB/s"
        left = max(self.total - self.done, 0)
        eta = _clock(left / rate) if rate else "--:--"
        self._stream.write(
            f"\r{self.label} [{bar}] {fraction:6.1%} {mib:8.1f} MiB {speed} ETA {eta}"
        )
        self._stream.flush()


def _clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

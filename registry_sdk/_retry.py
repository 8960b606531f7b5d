"""One retry budget per operation, shared by every layer that retries.

A network operation (resolve an alias, download a file, create a version, push an outbox
entry) opens an :func:`operation`; every layer below it that wants another try (the REST
transport, a download's whole-file retry, the client's safe re-creation loop) asks the same
:class:`Budget`. So retries add up instead of multiplying, and no new try starts after the
operation's deadline.

What a failure costs depends on whether the caller has a fallback:

- a refused connection or an unknown host: the server is not there. With a fallback (a cached
  alias resolution, the outbox) the operation gives up at once; without one it tries once more
  after a short pause (a server restarting), then gives up.
- a timeout: with a fallback, give up at once; without one, retry like a 5xx.
- 408/429/5xx and a connection dropped mid-reply: exponential backoff with jitter (or the
  server's ``Retry-After``), within the budget and the deadline.
"""

from __future__ import annotations

import contextvars
import enum
import errno
import random
import socket
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from registry_sdk._config import Settings

T = TypeVar("T")

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
#: The pause before the one retry of a refused connection when there is no fallback.
REFUSED_PAUSE = 0.5


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter for the wait after attempt ``attempt`` (1-based)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto


class Failure(enum.Enum):
    """What kind of failure a try ended in, for deciding whether another try is worth it."""

    REFUSED = "refused"  # nothing listens there, or the host is unknown
    TIMEOUT = "timeout"  # connected (or tried to), but no answer in time
    TRANSIENT = "transient"  # 408/429/5xx, or a reply cut short


_REFUSING_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}
)


def is_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says nothing listens there or the host is unknown."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (ConnectionRefusedError, socket.gaierror)):
            return True
        if isinstance(item, OSError) and item.errno in _REFUSING_ERRNOS:
            return True
        if type(item).__name__ == "NameResolutionError":  # urllib3's unknown host
            return True
        # requests and urllib3 wrap the socket's error in args, ``reason`` and the chain.
        stack.extend(item.args)
        stack.extend(getattr(item, attr, None) for attr in ("reason", "__cause__", "__context__"))
    return False


class Budget:
    """The retries and deadline of one operation; see the module's docstring.

    Args:
        retries: how many more tries, in total over every layer, the operation may make.
        deadline_s: seconds from now after which no new try starts.
        fallback: the caller has something to fall back on; a refused connection or a
            timeout ends the operation at once.
        request_timeout: seconds each HTTP call of the operation may take.
    """

    def __init__(
        self,
        retries: int,
        deadline_s: float,
        *,
        fallback: bool = False,
        request_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retries_left = max(0, retries)
        self.fallback = fallback
        self.request_timeout = request_timeout
        self._clock = clock
        self._deadline = clock() + deadline_s
        self._taken = 0
        self._refused_retried = False

    def __repr__(self) -> str:
        return (
            f"Budget(retries_left={self.retries_left}, fallback={self.fallback}, "
            f"seconds_left={self.seconds_left():.1f})"
        )

    def seconds_left(self) -> float:
        """Seconds until the deadline (never negative)."""
        return max(0.0, self._deadline - self._clock())

    def take(self, failure: Failure, retry_after: float | None = None) -> float | None:
        """The seconds to wait before another try, or None when the operation must give up.

        Taking a retry spends it: every layer that asks shares the count.
        """
        if failure is Failure.REFUSED:
            if self.fallback or self._refused_retried:
                return None
            delay = REFUSED_PAUSE
        elif failure is Failure.TIMEOUT and self.fallback:
            return None
        elif retry_after is not None:
            # Honour the server's wish, but never wait longer than one call may take.
            delay = min(retry_after, self.request_timeout)
        else:
            delay = backoff(self._taken + 1)
        if self.retries_left <= 0 or delay > self.seconds_left():
            return None
        self.retries_left -= 1
        self._taken += 1
        if failure is Failure.REFUSED:
            self._refused_retried = True
        return delay


_active: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "registry_sdk_budget", default=None
)


def new_budget(settings: Settings, *, fallback: bool = False) -> Budget:
    """A fresh budget from the client's settings."""
    return Budget(
        settings.max_retries,
        settings.deadline,
        fallback=fallback,
        request_timeout=settings.fallback_timeout if fallback else settings.timeout,
    )


def current(settings: Settings) -> Budget:
    """The budget of the operation under way, or a fresh one for a lone call."""
    return _active.get() or new_budget(settings)


@contextmanager
def operation(
    settings: Settings, *, fallback: bool = False, fresh: bool = False
) -> Iterator[Budget]:
    """Run the block as one operation: every retry inside it spends one shared budget.

    Inside another operation the outer budget is kept (the outer caller's fallback and
    deadline rule), unless ``fresh`` (e.g. each file of a download gets its own retries).
    """
    outer = _active.get()
    if outer is not None and not fresh:
        yield outer
        return
    budget = new_budget(settings, fallback=fallback or (outer is not None and outer.fallback))
    token = _active.set(budget)
    try:
        yield budget
    finally:
        _active.reset(token)


def retry_call(
    attempt: Callable[[], T],
    *,
    budget: Budget,
    classify: Callable[[BaseException], tuple[Failure, float | None] | None],
    sleep: Callable[[float], None],
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> T:
    """Call ``attempt`` until it succeeds, an error is final, or ``budget`` is spent.

    ``classify`` maps an error to its :class:`Failure` kind and the server's ``Retry-After``
    (None: not worth another try). The last error propagates unchanged.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except Exception as exc:
            kind = classify(exc)
            delay = None if kind is None else budget.take(*kind)
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(exc, tries, delay)
            sleep(delay)

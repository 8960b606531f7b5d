"""The retry policy shared by the REST transport and the client's safe re-creation loop."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import tenacity

BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter for the wait after attempt ``attempt`` (1-based)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto


def retrying(
    *,
    attempts: int,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    sleep: Callable[[float], None],
    wait: Callable[[tenacity.RetryCallState], float] | None = None,
    before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` that re-raises the last error once ``attempts`` are spent."""
    import tenacity  # imported here so that `import registry_sdk` stays fast

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=wait or (lambda state: backoff(state.attempt_number)),
        retry=tenacity.retry_if_exception_type(retry_on),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )

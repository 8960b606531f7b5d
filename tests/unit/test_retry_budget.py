"""One retry budget per operation: what each kind of failure costs, with and without a fallback."""

from __future__ import annotations

import socket

import pytest
import requests
import urllib3.exceptions

from registry_sdk._config import Settings
from registry_sdk._retry import (
    REFUSED_PAUSE,
    Budget,
    Failure,
    current,
    is_refused,
    operation,
    retry_call,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def budget(retries: int = 3, *, fallback: bool = False, deadline: float = 120.0) -> Budget:
    return Budget(retries, deadline, fallback=fallback, request_timeout=30.0, clock=Clock())


def test_a_refused_connection_is_given_up_at_once_with_a_fallback():
    assert budget(fallback=True).take(Failure.REFUSED) is None


def test_a_refused_connection_without_a_fallback_gets_one_short_retry_per_operation():
    spent = budget()
    assert spent.take(Failure.REFUSED) == REFUSED_PAUSE
    assert spent.take(Failure.REFUSED) is None
    assert spent.retries_left == 2  # the one retry came out of the shared count


def test_a_timeout_is_given_up_at_once_with_a_fallback_and_retried_without():
    assert budget(fallback=True).take(Failure.TIMEOUT) is None
    assert budget().take(Failure.TIMEOUT) is not None


def test_transient_failures_back_off_until_the_retries_are_spent():
    spent = budget(retries=3)
    delays = [spent.take(Failure.TRANSIENT) for _ in range(4)]
    assert all(d is not None for d in delays[:3])
    assert delays[3] is None
    # Exponential with jitter: each ceiling doubles (0.5, 1, 2 s), the wait is half to all of it.
    for delay, ceiling in zip(delays[:3], (0.5, 1.0, 2.0), strict=True):
        assert delay is not None
        assert ceiling / 2 <= delay <= ceiling


def test_retry_after_is_honoured_but_capped_by_the_request_timeout():
    assert budget().take(Failure.TRANSIENT, retry_after=3.0) == 3.0
    assert budget().take(Failure.TRANSIENT, retry_after=3600.0) == 30.0


def test_no_retry_starts_past_the_deadline():
    clock = Clock()
    spent = Budget(5, 10.0, request_timeout=30.0, clock=clock)
    assert spent.take(Failure.TRANSIENT, retry_after=4.0) == 4.0
    clock.now = 8.0
    assert spent.take(Failure.TRANSIENT, retry_after=4.0) is None  # it would end past 10 s
    assert spent.seconds_left() == 2.0


def test_retry_call_stops_at_the_first_final_error_and_spends_one_budget():
    calls: list[int] = []
    slept: list[float] = []

    def attempt() -> str:
        calls.append(1)
        raise ConnectionError("down")

    shared = budget(retries=2)
    with pytest.raises(ConnectionError):
        retry_call(
            attempt,
            budget=shared,
            classify=lambda _exc: (Failure.TRANSIENT, None),
            sleep=slept.append,
        )
    assert len(calls) == 3
    assert len(slept) == 2
    assert shared.retries_left == 0
    with pytest.raises(ValueError, match="final"):
        retry_call(
            lambda: (_ for _ in ()).throw(ValueError("final")),
            budget=budget(),
            classify=lambda _exc: None,
            sleep=slept.append,
        )


def test_operations_nest_into_the_outer_budget_unless_fresh():
    settings = Settings.resolve("http://127.0.0.1:1", env={}, max_retries=4)
    assert current(settings) is not current(settings)  # a lone call gets its own
    with operation(settings, fallback=True) as outer:
        assert outer.fallback
        assert outer.request_timeout == settings.fallback_timeout
        assert current(settings) is outer
        with operation(settings) as inner:
            assert inner is outer
        with operation(settings, fresh=True) as own:
            assert own is not outer
            assert own.fallback, "a fresh budget keeps the caller's fallback"
            assert own.retries_left == 4
    assert current(settings) is not outer


def _requests_error(reason: BaseException) -> requests.ConnectionError:
    """What requests raises, wrapping urllib3's errors as it does."""
    pool = urllib3.exceptions.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]
    return requests.ConnectionError(pool)


def test_refused_connections_and_unknown_hosts_are_recognised_through_the_wrapping():
    refused = urllib3.exceptions.NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert is_refused(_requests_error(refused))
    unknown = socket.gaierror(-2, "Name or service not known")
    assert is_refused(_requests_error(unknown))


def test_a_reset_or_a_timeout_is_not_a_refusal():
    reset = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "x"))
    assert not is_refused(_requests_error(reset))
    assert not is_refused(requests.ReadTimeout("read timed out"))

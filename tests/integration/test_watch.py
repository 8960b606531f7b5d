"""``rs.watch``: a handle that serves the version an alias points at and follows it as it moves.

Every test talks to a real ``mlflow server`` on loopback: the session's shared SQLite server
(each test with its own model name and its own cache), or, for outages, a server pinned to one
port that is stopped and started again. The two versions of each model are tiny constant
predictors, so every answer says which version gave it.

Nothing here asserts on timing: a swap is awaited by polling the outcome (``.version``, the
answers) against a generous deadline, and a test that waits for something that must *not*
happen waits several poll intervals and then checks it did not.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest
from _servers import PinnedServer, pinned_sqlite_server

import registry_sdk as rs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from _servers import MlflowServer

# Server starts, registrations and bounded waits: pytest-timeout is the backstop, never an
# assertion.
pytestmark = pytest.mark.timeout(240)

INTERVAL = 0.5
#: How long a swap (one poll, one fetch, one load) may take before the test gives up waiting.
SWAP_DEADLINE = 30.0
X = np.zeros((3, 2))


class Constant:
    """Predicts ``value`` for every row: the answer names the version that gave it."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, X):
        return np.full(len(X), self.value, dtype=float)


def answer(value: float) -> list[float]:
    return [float(value)] * len(X)


def as_list(prediction) -> list[float]:
    return [float(v) for v in np.asarray(prediction).ravel()]


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(previous)


def make_client(server: MlflowServer, tmp_path: Path, *, timeout: float = 10) -> rs.RegistryClient:
    return rs.RegistryClient(
        server.uri,
        registry_uri=server.uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=timeout,
        max_retries=1,
    )


@pytest.fixture
def client(mlflow_server_sqlite: MlflowServer, tmp_path: Path) -> Iterator[rs.RegistryClient]:
    """A client of the session's SQLite-backed server, with a cache of its own."""
    with make_client(mlflow_server_sqlite, tmp_path) as registry:
        yield registry


@pytest.fixture
def name() -> str:
    """A model name no other test uses (the session server is shared)."""
    return f"watched-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def watches() -> Iterator[list[rs.Watch]]:
    """Every watch a test appends here is closed at the end, whatever the test did."""
    opened: list[rs.Watch] = []
    yield opened
    for handle in opened:
        handle.close()


# ------------------------------------------------------------------------------ helpers


def register_constant(
    client: rs.RegistryClient, name: str, value: float, *, alias: str | None = None
) -> int:
    """Register a version of ``name`` that predicts ``value``; return its number."""

    @rs.register(name, alias=alias, client=client)
    def train(value: float) -> Constant:
        return Constant(value)

    train(value)
    assert train.last_version is not None, "the registration went to the outbox"
    return train.last_version.version


def two_versions(client: rs.RegistryClient, name: str) -> None:
    """Version 1 predicts 1.0 and holds the alias ``prod``; version 2 predicts 2.0."""
    assert register_constant(client, name, 1.0, alias="prod") == 1
    assert register_constant(client, name, 2.0) == 2


def wait_until(condition: Callable[[], bool], what: str, deadline: float = SWAP_DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail (saying ``what``) once ``deadline`` s have passed."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"gave up after {deadline:.0f} s waiting for {what}")
        time.sleep(0.05)


def count_requests(client: rs.RegistryClient) -> list[str]:
    """Record every REST call the client's backend makes from now on (method and endpoint)."""
    backend = client.backend
    calls: list[str] = []
    original = backend.request

    def counting(method, endpoint, *args, **kwargs):
        calls.append(f"{method} {endpoint}")
        return original(method, endpoint, *args, **kwargs)

    backend.request = counting  # type: ignore[method-assign]
    return calls


# ------------------------------------------------------------------------------ following


def test_follows_the_alias_to_the_new_version(client, name, watches):
    two_versions(client, name)
    handle = rs.watch(f"{name}@prod", interval=INTERVAL, client=client)
    watches.append(handle)
    changes: list[tuple[int, int]] = []
    handle.on_change(lambda old, new: changes.append((old, new)))

    assert handle.version == 1
    assert as_list(handle.predict(X)) == answer(1.0)

    client.set_alias(name, "prod", 2)
    wait_until(lambda: handle.version == 2, "the watch to serve version 2")

    assert as_list(handle.predict(X)) == answer(2.0)
    assert as_list(handle.model.predict(X)) == answer(2.0)
    # The callback runs right after the swap, on the watch's thread.
    wait_until(lambda: len(changes) >= 1, "on_change to be called")
    assert changes == [(1, 2)]
    assert handle.errors == 0
    # Nothing moves any more: no second swap, no second call.
    time.sleep(3 * INTERVAL)
    assert handle.version == 2
    assert changes == [(1, 2)]


def test_no_prediction_fails_while_the_alias_moves_back_and_forth(client, name, watches):
    two_versions(client, name)
    handle = rs.watch(f"{name}@prod", interval=0.2, client=client)
    watches.append(handle)
    valid = {tuple(answer(1.0)), tuple(answer(2.0))}

    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[tuple[float, ...]] = set()
    invalid: list[tuple[float, ...]] = []
    counts = [0, 0, 0]

    def hammer(slot: int) -> None:
        while not stop.is_set():
            try:
                got = tuple(as_list(handle.predict(X)))
            except BaseException as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(exc)
                continue
            counts[slot] += 1
            seen.add(got)
            if got not in valid:
                invalid.append(got)

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        for target in (2, 1, 2, 1, 2):
            client.set_alias(name, "prod", target)
            wait_until(lambda t=target: handle.version == t, f"the watch to serve version {target}")
            # Keep predicting on the new model for a moment before the next move.
            before = sum(counts)
            wait_until(lambda b=before: sum(counts) > b + 20, "predictions on the new version")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    assert errors == [], errors[:3]
    assert invalid == [], invalid[:3]
    assert seen == valid, "both versions answered"
    assert all(n > 0 for n in counts), counts
    assert handle.version == 2
    assert as_list(handle.predict(X)) == answer(2.0)
    assert handle.errors == 0


# ------------------------------------------------------------------------------ on demand


def test_poll_returns_true_only_when_it_swapped(client, name, watches):
    two_versions(client, name)
    # An interval far beyond the test: only the explicit poll() calls below check the alias.
    handle = rs.watch(f"{name}@prod", interval=3600, client=client)
    watches.append(handle)
    changes: list[tuple[int, int]] = []
    handle.on_change(lambda old, new: changes.append((old, new)))

    assert handle.poll() is False
    assert handle.version == 1
    assert changes == []

    client.set_alias(name, "prod", 2)
    assert handle.poll() is True
    assert handle.version == 2
    assert as_list(handle.predict(X)) == answer(2.0)
    assert changes == [(1, 2)]

    assert handle.poll() is False
    assert changes == [(1, 2)]

    client.set_alias(name, "prod", 1)
    assert handle.poll() is True
    assert handle.version == 1
    assert as_list(handle.predict(X)) == answer(1.0)
    assert changes == [(1, 2), (2, 1)]


def test_concurrent_polls_swap_once(client, name, watches):
    """Two poll() calls that both see the move swap it in once: one True, one on_change call."""
    two_versions(client, name)
    handle = rs.watch(f"{name}@prod", interval=3600, client=client)
    watches.append(handle)
    changes: list[tuple[int, int]] = []
    handle.on_change(lambda old, new: changes.append((old, new)))
    client.set_alias(name, "prod", 2)

    barrier = threading.Barrier(2)
    results: list[bool] = []
    failures: list[BaseException] = []

    def poll() -> None:
        barrier.wait()
        try:
            results.append(handle.poll())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SWAP_DEADLINE)
    assert not any(thread.is_alive() for thread in threads)

    assert failures == []
    assert sorted(results) == [False, True]
    assert changes == [(1, 2)]
    assert handle.version == 2
    assert as_list(handle.predict(X)) == answer(2.0)


def test_a_version_reference_never_changes(client, name, watches):
    two_versions(client, name)
    handle = rs.watch(f"{name}/1", interval=INTERVAL, client=client)
    watches.append(handle)
    changes: list[tuple[int, int]] = []
    handle.on_change(lambda old, new: changes.append((old, new)))
    assert handle.version == 1

    client.set_alias(name, "prod", 2)
    assert register_constant(client, name, 3.0, alias="prod") == 3
    assert handle.poll() is False
    time.sleep(3 * INTERVAL)  # several background polls

    assert handle.poll() is False
    assert handle.version == 1
    assert as_list(handle.predict(X)) == answer(1.0)
    assert changes == []
    assert handle.errors == 0


# ------------------------------------------------------------------------------ outages


@pytest.fixture
def pinned(tmp_path: Path) -> Iterator[PinnedServer]:
    """A server pinned to one port, started; its whole process group is killed at the end."""
    server = pinned_sqlite_server(tmp_path / "server")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_keeps_serving_through_an_outage_and_follows_after_it(pinned, tmp_path, watches):
    # A short timeout: each poll against the dead server gives up quickly.
    with make_client(pinned, tmp_path, timeout=2) as client:
        name = "outage"
        two_versions(client, name)
        handle = rs.watch(f"{name}@prod", interval=INTERVAL, client=client)
        watches.append(handle)
        changes: list[tuple[int, int]] = []
        handle.on_change(lambda old, new: changes.append((old, new)))
        assert handle.version == 1
        assert handle.errors == 0

        pinned.stop()
        # As in production, warnings are shown, not raised (the suite turns them into errors,
        # which in the watch's thread would hide what the watch itself does with a failure).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wait_until(lambda: handle.errors >= 3, "failed polls to be counted in .errors")
            # Still serving version 1, from memory, without raising.
            for _ in range(20):
                assert as_list(handle.predict(X)) == answer(1.0)
        assert handle.version == 1
        assert handle._thread.is_alive(), "the watch gave up polling"
        # The watch serves what it holds: it does not pretend to resolve the alias from the cache.
        stale = [w for w in caught if issubclass(w.category, rs.StaleAliasWarning)]
        assert stale == [], [str(w.message) for w in stale[:2]]

        pinned.start()
        # Version 2 was never fetched: the watch must get its files from the restarted server.
        client.set_alias(name, "prod", 2)
        wait_until(lambda: handle.version == 2, "the watch to follow the alias after the outage")
        assert as_list(handle.predict(X)) == answer(2.0)
        wait_until(lambda: len(changes) >= 1, "on_change to be called")
        assert changes == [(1, 2)]


def test_close_stops_polling(client, name):
    two_versions(client, name)
    with rs.watch(f"{name}@prod", interval=0.2, client=client) as handle:
        calls = count_requests(client)
        wait_until(lambda: len(calls) >= 2, "the watch to poll the alias")
        # One request per poll: the alias lookup, nothing else while the alias stays put.
        assert all(c.startswith("GET ") and c.endswith("/registered-models/alias") for c in calls)
        handle.close()
        assert not handle._thread.is_alive()

        client.set_alias(name, "prod", 2)  # a move a live watch would follow
        calls.clear()
        time.sleep(5 * 0.2)  # several intervals in which a live watch would have polled
        assert calls == []
        assert handle.version == 1
        assert as_list(handle.predict(X)) == answer(1.0)  # still usable after close
    # Leaving the block closes it again: harmless.
    assert not handle._thread.is_alive()


def test_a_version_that_cannot_be_loaded_does_not_stop_the_watch(client, name, watches):
    """A broken new version is counted as an error; the next good one is still picked up."""
    two_versions(client, name)
    assert register_constant(client, name, 3.0) == 3

    @rs.register(name, client=client)
    def train_broken() -> Unloadable:
        return Unloadable()

    train_broken()
    assert train_broken.last_version is not None
    broken = train_broken.last_version.version
    assert broken == 4

    handle = rs.watch(f"{name}@prod", interval=INTERVAL, client=client)
    watches.append(handle)
    client.set_alias(name, "prod", broken)
    wait_until(lambda: handle.errors >= 2, "the broken version to be counted as an error")
    assert handle.version == 1
    assert as_list(handle.predict(X)) == answer(1.0)

    client.set_alias(name, "prod", 3)
    wait_until(lambda: handle.version == 3, "the watch to follow the alias past the broken one")
    assert as_list(handle.predict(X)) == answer(3.0)


def _refuse_to_load() -> None:
    msg = "this model refuses to be unpickled"
    raise RuntimeError(msg)


class Unloadable:
    """Pickles fine; unpickling it raises, as a model with a missing dependency would."""

    def __reduce__(self):
        return _refuse_to_load, ()

    def predict(self, X):
        return np.zeros(len(X))

"""Faults between the client and the production shape, injected by a proxy on loopback.

Every client here talks to the production server (PostgreSQL, S3 artifacts, 4 workers)
through :class:`_production.FaultProxy`, which loses replies, answers 502 bursts from a
"load balancer", holds requests, and cuts downloads mid-body. What must hold:

* a lost reply to "create a version" never makes a second version: exactly one per call;
* a 502 burst ends in success within the retry budget, or in ``RegistryUnavailableError``
  once the budget is spent; never in a hang (pytest-timeout bounds every test, and no
  assertion is about time);
* a download cut mid-body is fetched again; no corrupt or partial cache entry is ever visible.

Backoff waits are shortened (``BACKOFF_BASE``): the number of attempts is what is checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import registry_sdk as rs
from registry_sdk import _retry, _tags
from registry_sdk._cache import MANIFEST, sha256_file
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _production import FaultProxy, ProductionStack

#: Fixtures ``production`` and ``auth_server`` (helpers are imported inside functions).
pytest_plugins = ["_production"]
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

CREATE = "/model-versions/create"
RETRIES = 3


class World:
    """A model on the production server with one version (alias ``prod``) to load and copy."""

    def __init__(self, production: ProductionStack, workdir: Path) -> None:
        from _production import make_trainer, training_data

        self.production = production
        self.name = f"faults-{uuid.uuid4().hex[:8]}"
        self.X, y = training_data()
        with self.direct(workdir / "setup-cache") as client:
            train = make_trainer(self.name, client)
            train(self.X, y, 7)
            assert train.last_version is not None
            self.version = train.last_version
            uri = client.backend.get_download_uri(self.name, self.version.version)
            self.remote = uri.removeprefix("mlflow-artifacts:").lstrip("/")
            files = client.backend.list_artifacts(self.remote)
        self.files = {path[len(self.remote) + 1 :]: size for path, _, size in files}
        #: What a new version of the same artifacts needs (MLflow 3 wants the logged model's id).
        self.source = {
            "source": self.version.source,
            "run_id": self.version.run_id,
            "model_id": self.version.source.removeprefix("models:/"),
        }
        #: The biggest file: the one worth cutting.
        self.big = max(self.files, key=lambda f: self.files[f])

    def direct(self, cache: Path) -> rs.RegistryClient:
        """A client talking to the server itself."""
        return rs.RegistryClient(
            self.production.uri, cache_dir=cache, timeout=60, max_retries=RETRIES
        )

    def new_model(self, cache: Path) -> str:
        name = f"{self.name}-{uuid.uuid4().hex[:6]}"
        with self.direct(cache) as client:
            client.create_model(name)
        return name

    def versions(self, name: str, cache: Path) -> list[rs.ModelVersion]:
        with self.direct(cache) as client:
            return sorted(client.search_versions(name), key=lambda v: v.version)


@pytest.fixture(scope="module")
def world(production, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(production, tmp_path_factory.mktemp("faults"))


@pytest.fixture
def proxy(production) -> Iterator[FaultProxy]:
    from _production import FaultProxy

    with FaultProxy(production.uri) as faulty:
        yield faulty


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attempts are what count; waiting 0.5, 1, 2 s between them only slows the suite."""
    monkeypatch.setattr(_retry, "BACKOFF_BASE", 0.01)
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)


def via(proxy: FaultProxy, cache: Path, *, timeout: float = 10, retries: int = RETRIES) -> Any:
    """A client through the proxy; files through the server too (the faults are there)."""
    return rs.RegistryClient(
        proxy.uri,
        cache_dir=cache,
        offline=False,
        timeout=timeout,
        max_retries=retries,
        direct_download_min_bytes=0,
    )


# ================================================================== lost replies on creation


@pytest.mark.parametrize("calls", [4])
def test_every_create_reply_lost_after_the_server_made_it_still_one_version_per_call(
    world, proxy, tmp_path, calls
):
    name = world.new_model(tmp_path / "admin")
    lost = proxy.lose_replies("POST", CREATE, attempts=None, forward=True)
    with via(proxy, tmp_path / "cache") as client:
        made = [client.create_version(name, **world.source) for _ in range(calls)]
    assert lost.hits == calls  # every reply was lost...
    assert proxy.endpoints()["model-versions/create"] == calls  # ...and never blindly resent
    on_server = world.versions(name, tmp_path / "admin")
    assert [v.version for v in made] == [v.version for v in on_server] == list(range(1, calls + 1))
    keys = [v.tags[_tags.IDEMPOTENCY_KEY] for v in on_server]
    assert len(set(keys)) == calls


def test_create_requests_lost_before_the_server_saw_them_are_sent_again_once(
    world, proxy, tmp_path
):
    name = world.new_model(tmp_path / "admin")
    calls = 3
    # The first attempt of every call never arrives: attempts 1, 3, 5 of the create endpoint.
    proxy.lose_replies("POST", CREATE, attempts={1, 3, 5}, forward=False)
    with via(proxy, tmp_path / "cache") as client:
        made = [client.create_version(name, **world.source) for _ in range(calls)]
    assert proxy.endpoints()["model-versions/create"] == 2 * calls
    on_server = world.versions(name, tmp_path / "admin")
    assert [v.version for v in made] == [v.version for v in on_server] == [1, 2, 3]


def test_lost_create_and_lost_lookup_replies_together_still_make_one_version(
    world, proxy, tmp_path
):
    name = world.new_model(tmp_path / "admin")
    proxy.lose_replies("POST", CREATE, attempts={1}, forward=True)
    proxy.lose_replies("GET", "/model-versions/search", attempts={1, 2}, forward=True)
    with via(proxy, tmp_path / "cache") as client:
        made = client.create_version(name, **world.source)
    on_server = world.versions(name, tmp_path / "admin")
    assert [v.version for v in on_server] == [made.version] == [1]


def test_register_with_every_create_reply_lost_registers_once_per_training_call(
    world, proxy, tmp_path
):
    from _production import make_trainer, training_data

    name = world.new_model(tmp_path / "admin")
    proxy.lose_replies("POST", CREATE, attempts=None, forward=True)
    X, y = training_data()
    with via(proxy, tmp_path / "cache") as client:
        train = make_trainer(name, client)
        versions = []
        for ident in (1, 2):
            train(X, y, ident)
            assert train.last_version is not None
            versions.append(train.last_version.version)
    on_server = world.versions(name, tmp_path / "admin")
    assert versions == [v.version for v in on_server] == [1, 2]
    assert [v.metrics["ident"] for v in on_server] == [1.0, 2.0]
    assert [v.aliases for v in on_server] == [(), ("prod",)]


# ================================================================== 502 bursts

#: Read calls a client makes, each a lambda of (client, world).
READS = {
    "get_model": lambda c, w: c.get_model(w.name),
    "get_version": lambda c, w: c.get_version(w.version.ref),
    "resolve_alias": lambda c, w: c.resolve(f"{w.name}@prod"),
    "search_versions": lambda c, w: list(c.search_versions(w.name)),
    "history": lambda c, w: c.history(w.name),
    "load_model": lambda c, w: c.load_model(f"{w.name}@prod"),
}


@pytest.mark.parametrize("call", sorted(READS))
def test_a_502_burst_shorter_than_the_retry_budget_is_ridden_out(world, proxy, tmp_path, call):
    burst = proxy.error_burst(attempts=set(range(1, RETRIES + 1)))  # the first 3 requests
    with via(proxy, tmp_path / "cache") as client:
        result = READS[call](client, world)
    assert burst.hits == RETRIES
    if call == "load_model":
        assert np.all(result.predict(world.X) == 7.0)
    else:
        assert result


@pytest.mark.parametrize("call", sorted(READS))
def test_a_502_burst_longer_than_the_budget_fails_typed_after_exactly_the_budget(
    world, proxy, tmp_path, call
):
    proxy.error_burst(attempts=None)  # every request, forever
    with via(proxy, tmp_path / "cache") as client, pytest.raises(rs.RegistryUnavailableError) as e:
        READS[call](client, world)
    assert e.value.status == 502
    assert "502" in str(e.value) or "Bad Gateway" in str(e.value)
    assert "<html" not in str(e.value).lower()  # the proxy's page is not the message
    counts = proxy.endpoints()
    assert len(counts) == 1  # the first call failed; nothing after it was tried
    assert set(counts.values()) == {RETRIES + 1}


def test_retry_after_on_a_503_is_honoured_and_the_call_succeeds(world, proxy, tmp_path):
    proxy.error_burst("/registered-models/get", attempts={1}, status=503, retry_after="1")
    with via(proxy, tmp_path / "cache") as client:
        assert client.get_model(world.name).name == world.name
    assert proxy.endpoints()["registered-models/get"] == 2


def test_a_502_after_the_server_created_the_version_does_not_make_a_second_one(
    world, proxy, tmp_path
):
    name = world.new_model(tmp_path / "admin")
    proxy.error_burst(CREATE, method="POST", attempts={1}, forward=True)
    with via(proxy, tmp_path / "cache") as client:
        made = client.create_version(name, **world.source)
    assert [v.version for v in world.versions(name, tmp_path / "admin")] == [made.version] == [1]


def test_creating_during_an_endless_502_fails_typed_and_creates_nothing(world, proxy, tmp_path):
    name = world.new_model(tmp_path / "admin")
    proxy.error_burst(attempts=None)
    with via(proxy, tmp_path / "cache") as client, pytest.raises(rs.RegistryUnavailableError):
        client.create_version(name, **world.source)
    assert world.versions(name, tmp_path / "admin") == []
    # One budget for the whole operation, shared by the client's re-creation loop and the
    # transport: the create, then lookups of the idempotency key that never get an answer,
    # max_retries + 1 requests in all. A create is never sent again while the key's fate is
    # unknown.
    counts = proxy.endpoints()
    assert counts["model-versions/create"] == 1
    assert counts["model-versions/create"] + counts["model-versions/search"] == RETRIES + 1


def test_a_load_during_an_endless_502_serves_the_cached_resolution_with_a_warning(
    world, proxy, tmp_path
):
    with via(proxy, tmp_path / "cache") as client:
        first = client.load_model(f"{world.name}@prod")
        proxy.error_burst(attempts=None)
        with pytest.warns(rs.StaleAliasWarning, match="unreachable"):
            again = client.load_model(f"{world.name}@prod")
    assert again.version.version == first.version.version
    assert np.all(again.predict(world.X) == 7.0)


def test_a_server_that_never_answers_fails_typed_after_the_timeouts(world, proxy, tmp_path):
    held = proxy.hold("/registered-models/get", attempts=None)
    try:
        with (
            via(proxy, tmp_path / "cache", timeout=2, retries=1) as client,
            pytest.raises(rs.RegistryUnavailableError, match="cannot reach"),
        ):
            client.get_model(world.name)
    finally:
        held.release.set()
    assert held.hits == 2  # one try and one retry, each ended by the timeout


# ================================================================== downloads cut mid-body


def _entry_dirs(client: rs.RegistryClient, name: str) -> list[str]:
    """Everything in the model's ``versions`` folder of the cache (entries, temp dirs, locks)."""
    folder = cache_for(client).model_dir(name) / "versions"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _server_sha(world: World, tmp_path: Path, file: str) -> str:
    """The sha256 of a file as the server serves it, fetched directly (no proxy)."""
    with world.direct(tmp_path / "sha-cache") as client:
        target = tmp_path / "server-copy"
        response = client.backend.request(
            "GET",
            f"/api/2.0/mlflow-artifacts/artifacts/{world.remote}/{file}",
            action="fetch for the test",
        )
        target.write_bytes(response.content)
    return sha256_file(target)


@pytest.mark.parametrize("keep_length", [True, False], ids=["content-length", "close-delimited"])
def test_a_download_cut_mid_body_is_fetched_again_and_cached_whole(
    world, proxy, tmp_path, keep_length
):
    size = world.files[world.big]
    proxy.cut(world.big, after_bytes=size // 2, attempts=(1,), keep_length=keep_length)
    with via(proxy, tmp_path / "cache") as client:
        model = client.load_model(world.version.ref)
        assert np.all(model.predict(world.X) == 7.0)
        assert client.verify_cache() == {}  # every cached file hashes to its manifest
        entry = cache_for(client).get(world.name, world.version.version)
        assert entry is not None
    assert proxy.file_downloads()[f"{world.remote}/{world.big}"] == 2
    recorded = entry.files[f"artifacts/{world.big}"]
    assert recorded.size == size
    assert recorded.sha256 == _server_sha(world, tmp_path, world.big)


def test_downloads_cut_every_time_fail_typed_and_leave_no_entry(world, proxy, tmp_path):
    size = world.files[world.big]
    remote = f"{world.remote}/{world.big}"
    proxy.cut(world.big, after_bytes=size // 3, attempts=tuple(range(1, 20)))
    with via(proxy, tmp_path / "cache") as client:
        with pytest.raises(rs.RegistryUnavailableError, match=r"cut short|announced"):
            client.load_model(world.version.ref)
        assert cache_for(client).get(world.name, world.version.version) is None
        assert client.cached_versions() == []
        # No entry: the version's lock, and the temp dir kept for the next try to go on from
        # (test_resume_across_processes.py shows that with a file big enough to be cut mid-way).
        kept, lock = _entry_dirs(client, world.name)
        assert lock == f"{world.version.version}.lock"
        assert kept.startswith(f".tmp-{world.version.version}-")
        assert proxy.file_downloads()[remote] == RETRIES + 1
        proxy.clear_faults()
        proxy.clear()
        model = client.load_model(world.version.ref)
        assert np.all(model.predict(world.X) == 7.0)
        assert _entry_dirs(client, world.name) == sorted([lock, str(world.version.version)])
        assert client.verify_cache() == {}
    assert proxy.file_downloads()[remote] == 1


def test_a_file_answered_502_every_time_costs_at_most_max_retries_plus_one_gets(
    world, proxy, tmp_path
):
    proxy.error_burst(world.big, method="GET", attempts=None)
    with via(proxy, tmp_path / "cache") as client:
        with pytest.raises(rs.RegistryUnavailableError) as failed:
            client.load_model(world.version.ref)
        assert failed.value.status == 502
        assert client.cached_versions() == []
    # One budget per file, spent by one layer: not the transport's retries times the
    # download's whole-file retries.
    assert proxy.file_downloads()[f"{world.remote}/{world.big}"] == RETRIES + 1


def test_a_download_stalled_mid_body_times_out_and_is_fetched_again(world, proxy, tmp_path):
    stall = proxy.stall(world.big, after_bytes=world.files[world.big] // 2, attempts=(1,))
    with via(proxy, tmp_path / "cache", timeout=2) as client:
        model = client.load_model(world.version.ref)
        assert stall.reached.is_set()
        assert np.all(model.predict(world.X) == 7.0)
        assert client.verify_cache() == {}


_KILLED_LOADER = """
import sys
import registry_sdk as rs
client = rs.RegistryClient(sys.argv[1], cache_dir=sys.argv[2], timeout=120, max_retries=0)
client.pull(sys.argv[3])
"""


def test_a_loader_killed_mid_download_leaves_no_visible_entry(world, proxy, tmp_path):
    stall = proxy.stall(world.big, after_bytes=world.files[world.big] // 2, attempts=(1,))
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILLED_LOADER, proxy.uri, str(cache), world.version.ref],
        env=env,
        start_new_session=True,
    )
    try:
        assert stall.reached.wait(120), "the loader never reached the stalled download"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        stall.release.set()
    with via(proxy, cache) as client:
        assert cache_for(client).get(world.name, world.version.version) is None
        assert client.cached_versions() == []
        leftovers = [d for d in _entry_dirs(client, world.name) if not d.endswith(".lock")]
        # The killed fill's temp dir may remain, but it is never an entry: no manifest in it.
        assert all(d.startswith(".tmp-") for d in leftovers), leftovers
        folder = cache_for(client).model_dir(world.name) / "versions"
        assert not any((folder / d / MANIFEST).exists() for d in leftovers)
        proxy.clear_faults()
        model = client.load_model(world.version.ref)
        assert np.all(model.predict(world.X) == 7.0)
        assert client.verify_cache() == {}
        # The next fill of that version cleared what the killed one left behind.
        number = str(world.version.version)
        assert _entry_dirs(client, world.name) == [number, f"{number}.lock"]

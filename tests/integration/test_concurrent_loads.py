"""Many threads, and async code, loading one uncached version at once, against a real server.

A service that starts sixteen request handlers, or an ``asyncio`` app that loads through
``asyncio.to_thread``, must get one working model everywhere, from one download. The server is
the session's ``mlflow_server_sqlite`` (artifacts served by it); a small proxy in front of it
(``_proxy.py``) counts the requests the server receives, so the count is the server's, not
registry_sdk's own. Each test has its own cache directory, so each starts cold.

Every wait is bounded by pytest-timeout; there is no timed assertion.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from _client_version import log_model_name
from _proxy import CountingProxy
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(300)

THREADS = 16
#: Given only to skip MLflow's requirement inference (slow).
PIP = ["scikit-learn"]


@dataclass(frozen=True)
class Published:
    """One vanilla-registered version, ``<name>/1``, that ``<name>@prod`` points at."""

    name: str
    X: np.ndarray
    expected: np.ndarray
    #: What one download of it asks the server for: each file under the artifact API, once.
    files: Counter[str]

    @property
    def prod(self) -> str:
        return f"{self.name}@prod"


@pytest.fixture(scope="module")
def published(mlflow_server_sqlite) -> Published:
    """A LogisticRegression logged and registered with plain MLflow, aliased ``prod``."""
    server = mlflow_server_sqlite
    name = f"concurrent-{uuid.uuid4().hex[:8]}"
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    model = LogisticRegression().fit(X, y)
    vanilla = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(server.uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setup, not under test: MLflow's own advice
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model, **log_model_name("model"), pip_requirements=PIP
                )
            mlflow.register_model(info.model_uri, name)
    finally:
        mlflow.set_tracking_uri(previous)
    vanilla.set_registered_model_alias(name, "prod", "1")
    location = vanilla.get_model_version_download_uri(name, "1")
    assert location.startswith("mlflow-artifacts:/"), location
    remote = location.removeprefix("mlflow-artifacts:").lstrip("/")
    folder = server.artifacts_dir / remote
    files = Counter(
        f"{remote}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()
    )
    assert files, f"no artifact files under {folder}"
    return Published(name, X, model.predict(X), files)


@pytest.fixture
def proxy(mlflow_server_sqlite) -> Iterator[CountingProxy]:
    with CountingProxy(mlflow_server_sqlite.uri) as counting:
        yield counting


def make_client(proxy: CountingProxy, cache: Path) -> rs.RegistryClient:
    return rs.RegistryClient(
        proxy.uri,
        registry_uri=proxy.uri,
        cache_dir=cache,
        offline=False,
        timeout=30,
        max_retries=1,
    )


def assert_downloaded_once(proxy: CountingProxy, published: Published) -> None:
    """The server sent each file of the version once, and listed its artifacts once."""
    assert proxy.file_downloads() == published.files, proxy.endpoints()
    assert proxy.endpoints()["artifact-list"] == 1, proxy.endpoints()


# ================================================================================ threads


@pytest.mark.parametrize("clients", ["one client", "a client per thread"])
def test_sixteen_threads_loading_one_uncached_version_download_it_once(
    published, proxy, tmp_path, clients
):
    cache = tmp_path / "cache"
    shared = make_client(proxy, cache)
    start = threading.Barrier(THREADS)

    def load(_: int) -> np.ndarray:
        own = None if clients == "one client" else make_client(proxy, cache)
        try:
            start.wait(timeout=60)  # all sixteen ask at once, on an empty cache
            model = rs.load_model(published.prod, client=own or shared)
            return model.predict(published.X)
        finally:
            if own is not None:
                own.close()

    with shared, ThreadPoolExecutor(THREADS) as pool:
        predictions = list(pool.map(load, range(THREADS)))
        cached = [entry.version.ref for entry in shared.cached_versions()]
        problems = shared.verify_cache()

    assert len(predictions) == THREADS
    for predicted in predictions:
        np.testing.assert_array_equal(predicted, published.expected)
    assert_downloaded_once(proxy, published)
    assert cached == [f"{published.name}/1"]
    assert problems == {}


def test_sixteen_threads_asking_for_a_shared_model_get_one_object(published, proxy, tmp_path):
    start = threading.Barrier(THREADS)
    with make_client(proxy, tmp_path / "cache") as client:

        def load(_: int) -> object:
            start.wait(timeout=60)
            return rs.load_model(published.prod, client=client, shared=True)

        with ThreadPoolExecutor(THREADS) as pool:
            models = list(pool.map(load, range(THREADS)))
        native = {id(client.load_model(published.prod, flavor="native", shared=True))}
        native.add(id(rs.load_model(published.prod, client=client, flavor="native", shared=True)))
        own = rs.load_model(published.prod, client=client)

    assert len({id(model) for model in models}) == 1  # one object, loaded once
    np.testing.assert_array_equal(models[0].predict(published.X), published.expected)
    assert len(native) == 1  # one per flavor asked for: the native object is shared too
    assert native != {id(models[0])}
    assert own is not models[0]  # without shared=, every call gets an object of its own
    assert_downloaded_once(proxy, published)


# ================================================================================ async code


def test_loads_pull_and_watch_through_to_thread_keep_the_event_loop_responsive(
    published, proxy, tmp_path
):
    client = make_client(proxy, tmp_path / "cache")
    loads = 8

    async def main() -> tuple[list[object], object, object, int]:
        done = asyncio.Event()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        try:
            results = await asyncio.gather(
                *(
                    asyncio.to_thread(rs.load_model, published.prod, client=client)
                    for _ in range(loads)
                ),
                asyncio.to_thread(rs.pull, published.prod, client=client),
                asyncio.to_thread(rs.watch, published.prod, client=client, interval=3600),
            )
        finally:
            done.set()
            await ticking
        *models, path, watcher = results
        return models, path, watcher, ticks

    with client:
        models, path, watcher, ticks = asyncio.run(main())
        try:
            assert len(models) == loads
            for model in models:
                np.testing.assert_array_equal(model.predict(published.X), published.expected)
            np.testing.assert_array_equal(watcher.predict(published.X), published.expected)
            assert watcher.version == 1
            assert path == models[0].path
            assert (path / "MLmodel").is_file()
        finally:
            watcher.close()
    # The loop ran other work while the loads waited on the network and the disk.
    assert ticks >= 3, f"the ticker ran {ticks} times"
    assert_downloaded_once(proxy, published)


def test_a_load_from_inside_a_running_loop_works_without_to_thread(published, proxy, tmp_path):
    """Blocking, so not what an app should do, but it must not fail for being under a loop."""
    client = make_client(proxy, tmp_path / "cache")

    async def main() -> np.ndarray:
        return rs.load_model(published.prod, client=client).predict(published.X)

    with client:
        predicted = asyncio.run(main())
    np.testing.assert_array_equal(predicted, published.expected)
    assert_downloaded_once(proxy, published)

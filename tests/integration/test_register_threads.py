"""``@register`` from many threads at once, to different registries, leaves the process as it was.

Hyperparameter sweeps run trials in threads (Optuna's ``n_jobs``, joblib's threading backend),
and a training service runs a worker pool: eight threads register at once, half to one registry
and half to another (two embedded stores, then two real servers: SQLite and PostgreSQL
backends). Every version must land in its own registry, with its own params and metrics,
exactly once. Around every kind of call (a success, a failure, one that goes to the outbox,
concurrent ones) the environment, the interpreter's switch interval and MLflow's global URIs
must be exactly what they were.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import uuid
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cloudpickle
import mlflow
import numpy as np
import pytest
from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

import registry_sdk as rs
from registry_sdk.decorators import PendingRegistrationWarning

if TYPE_CHECKING:
    from pathlib import Path

THREADS = 8


class Scaled:
    """A tiny plain model; its factor says which call trained it."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, X: Any) -> Any:
        return np.asarray(X) * self.factor


def process_state(loggers_of: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a library embedded in the process must leave exactly as it found it.

    ``loggers_of``: an earlier state, whose MLflow loggers are the ones compared (importing a
    module creates new ones).
    """
    loggers = logging.Logger.manager.loggerDict
    if loggers_of is not None:
        loggers = {name: loggers[name] for name in loggers_of["mlflow loggers"]}
    return {
        "environ": dict(os.environ),
        "switch interval": sys.getswitchinterval(),
        "tracking uri set": mlflow.is_tracking_uri_set(),
        "tracking uri": mlflow.get_tracking_uri(),
        "registry uri": mlflow.get_registry_uri(),
        "active run": mlflow.active_run(),
        "mlflow loggers": {
            name: (logger.level, logger.disabled, tuple(logger.filters))
            for name, logger in sorted(loggers.items())
            if name.startswith("mlflow") and isinstance(logger, logging.Logger)
        },
        "pickled by value": cloudpickle.list_registry_pickle_by_value(),
        # As a multiset, without OpenTelemetry's own: MLflow 2 asks it for a tracer now and
        # then, and each get_tracer call (re-)adds that filter, as any use of MLflow 2 does.
        "warning filters": Counter(
            repr(f) for f in warnings.filters if "InstrumentationScope" not in repr(f)
        ),
    }


def make_trainer(name: str, client: rs.RegistryClient) -> Any:
    @rs.register(name, client=client)
    def train(trial: int, lr: float = 0.1) -> Any:
        rs.log_metric("trial_metric", float(trial))
        return Scaled(lr), {"score": trial / 10}

    return train


def run_sweep(trainers: list[Any]) -> list[tuple[int, Any]]:
    """``THREADS`` calls at once, trial i on trainer i % len(trainers); (trial, version)."""
    start = threading.Barrier(THREADS)

    def trial(i: int) -> tuple[int, Any]:
        train = trainers[i % len(trainers)]
        start.wait()
        train(i, lr=i / 100)
        return i, train.last_version

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(trial, range(THREADS)))


def download(vanilla: Any, uri: str, name: str, version: str, tmp_path: Path) -> str:
    """A version's files, with vanilla MLflow, from this registry (not MLflow's global one)."""
    location = vanilla.get_model_version_download_uri(name, version)
    target = tmp_path / f"vanilla-{uuid.uuid4().hex}"
    target.mkdir()
    if location.startswith("mlflow-artifacts:"):  # MLflow 2 resolves it against the global URI
        resolved = MlflowArtifactsRepository.resolve_uri(location, uri)
        return str(HttpArtifactRepository(resolved).download_artifacts("", str(target)))
    return str(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(target)))


def check_registry(uri: str, name: str, trials: set[int], tmp_path: Path) -> None:
    """Exactly one version per trial in ``uri``, each with its own run, params and metrics."""
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = vanilla.search_model_versions(f"name = '{name}'")
    assert sorted(int(v.version) for v in versions) == list(range(1, len(trials) + 1))
    seen = set()
    for version in versions:
        run = vanilla.get_run(version.run_id)
        trial = int(run.data.params["trial"])
        seen.add(trial)
        assert run.data.params == {"trial": str(trial), "lr": str(trial / 100)}
        assert run.data.metrics == {"trial_metric": float(trial), "score": trial / 10}
        assert run.info.status == "FINISHED"
        assert version.tags["registry_sdk.metrics.score"] == repr(trial / 10)
        model = mlflow.pyfunc.load_model(download(vanilla, uri, name, version.version, tmp_path))
        np.testing.assert_allclose(model.predict(np.ones((1, 2))), [[trial / 100] * 2])
    assert seen == trials


def sweep_two_registries(uris: tuple[str, str], tmp_path: Path) -> None:
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    clients = [
        rs.RegistryClient(uri, registry_uri=uri, cache_dir=tmp_path / f"cache-{i}")
        for i, uri in enumerate(uris)
    ]
    for uri in uris:
        warm_up(uri, tmp_path)
    before = process_state()
    results = run_sweep([make_trainer(name, c) for c in clients])
    assert process_state(before) == before
    # Each thread's last_version is the version its own call registered.
    for trial, version in results:
        uri = uris[trial % 2]
        run = mlflow.MlflowClient(tracking_uri=uri).get_run(version.run_id)
        assert run.data.params["trial"] == str(trial)
    for i, uri in enumerate(uris):
        check_registry(uri, name, {t for t in range(THREADS) if t % 2 == i}, tmp_path)
    for client in clients:
        client.close()


def warm_up(uri: str, tmp_path: Path) -> None:
    """Two registrations to ``uri`` before any state is compared.

    The first uses of MLflow import what it needs (pydantic, opentelemetry, ...), which may add
    warning filters and loggers of their own once per process, as any use of MLflow would
    (MLflow 2 sets up its tracer on the second call, adding an OpenTelemetry filter). That is
    not a call changing the process. In the test, since pytest resets the warning filters for
    each test.
    """
    root = tmp_path / f"warm-{uuid.uuid4().hex[:8]}"
    with rs.RegistryClient(uri, registry_uri=uri, cache_dir=root / "cache") as client:
        train = make_trainer(f"warm-{uuid.uuid4().hex[:8]}", client)
        with warnings.catch_warnings():  # a registry that is down: the outbox, warned about
            warnings.simplefilter("ignore", PendingRegistrationWarning)
            train(0)
            train(1)


def test_eight_threads_register_to_two_embedded_stores_each_version_in_its_own(tmp_path):
    uris = tuple(f"sqlite:///{tmp_path / f'store-{i}.db'}" for i in range(2))
    sweep_two_registries(uris, tmp_path)  # type: ignore[arg-type]


def test_eight_threads_register_to_two_servers_each_version_in_its_own(
    mlflow_server_sqlite, mlflow_server_postgres, tmp_path
):
    sweep_two_registries((mlflow_server_sqlite.uri, mlflow_server_postgres.uri), tmp_path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("global_uri", [None, "set"], ids=["mlflow-unset", "mlflow-set"])
def test_no_call_changes_the_process_succeeding_failing_or_going_to_the_outbox(
    tmp_path, monkeypatch, global_uri
):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    if global_uri:
        # The user pointed MLflow somewhere else; that must stay exactly as they set it.
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'theirs.db'}")
    try:
        client = rs.RegistryClient(uri, registry_uri=uri, cache_dir=tmp_path / "cache")
        down = f"http://127.0.0.1:{closed_port()}"
        offline = rs.RegistryClient(down, registry_uri=down, cache_dir=tmp_path / "cache-down")

        @rs.register("stateless", client=client)
        def succeeds(seed: int = 1) -> Any:
            return Scaled(float(seed))

        @rs.register("stateless", client=client)
        def fails() -> Any:
            raise ValueError("diverged")

        @rs.register("stateless", client=offline)
        def waits() -> Any:
            return Scaled(2.0)

        warm_up(uri, tmp_path)
        warm_up(down, tmp_path)  # the outbox's first use
        before = process_state()
        succeeds()
        assert succeeds.last_version is not None
        assert process_state(before) == before
        with pytest.raises(ValueError, match="diverged"):
            fails()
        assert process_state(before) == before
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            waits()
        assert waits.last_version is None
        assert any(issubclass(w.category, PendingRegistrationWarning) for w in caught)
        assert process_state(before) == before
        # Concurrent: successes and failures at once, in threads.
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(succeeds, i) for i in range(3)] + [pool.submit(fails)]
        assert [f.exception() is None for f in futures] == [True, True, True, False]
        assert process_state(before) == before
        assert len(list(client.search_versions("stateless"))) == 4  # 1 + 3 successes
    finally:
        if global_uri:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]

# Training functions here take arguments only for @register to log or fingerprint them.
# ruff: noqa: ARG001
"""``@register`` as a user meets it, against MLflow's own embedded store (SQLite in a temp dir).

Everything is read back with vanilla ``mlflow.MlflowClient``: the run's params and metrics,
the versions and their tags. The last section checks, with the fake REST server, that the
client's safe re-creation of a version waits as long as the server's ``Retry-After`` asks.
"""

from __future__ import annotations

import inspect
import json
import uuid

import mlflow
import numpy as np
import pytest
from _rest_fakes import FakeMlflowServer, FakeSleep, error_body, make_client, make_settings
from _rest_fakes import mock_http as rest_mock

import registry_sdk as rs
from registry_sdk import _outbox, _tags
from registry_sdk.errors import InvalidReferenceError


class Scaler:
    """A tiny plain model: saved as a cloudpickle-backed pyfunc, quickly."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, X):
        return np.asarray(X) * self.factor


X = np.arange(12, dtype=np.float64).reshape(4, 3)
Y = np.array([0, 1, 0, 1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("register-unit")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = mlflow.MlflowClient(uri).create_experiment(
        "register-unit", artifact_location=(root / "artifacts").as_uri()
    )
    return uri, experiment_id


@pytest.fixture
def vanilla(store):
    uri, _ = store
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def client(store, tmp_path, monkeypatch):
    """A client on the embedded store; runs go to this module's experiment."""
    uri, experiment_id = store
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    with rs.RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=30,
        max_retries=1,
    ) as registry:
        yield registry
    while mlflow.active_run() is not None:  # a failed test must not leak its run
        mlflow.end_run("KILLED")


def unique(label: str) -> str:
    return f"unit-{label}-{uuid.uuid4().hex[:10]}"


# ============================================================================ the run


def test_scalar_arguments_including_defaults_are_logged_as_params(client, vanilla):
    @rs.register(unique("params"), client=client)
    def train(X, y, n_estimators: int = 10, lr: float = 0.1, criterion="gini", bootstrap=True):
        return Scaler(lr)

    train(X, Y, 25, criterion="entropy")

    run = vanilla.get_run(train.last_version.run_id)
    assert run.data.params == {
        "n_estimators": "25",
        "lr": "0.1",
        "criterion": "entropy",
        "bootstrap": "True",
    }


def test_metrics_returned_and_logged_inside_end_on_the_run_and_the_version(client, vanilla):
    @rs.register(unique("metrics"), client=client)
    def train(X, y):
        rs.log_metric("loss", 0.25)
        rs.log_metrics({"auc": 0.875, "f1": 0.5})
        rs.log_metric("loss", 0.125)  # the final value wins
        return Scaler(2.0), {"accuracy": 0.75, "f1": 0.625}  # returned values win too

    train(X, Y)

    expected = {"loss": 0.125, "auc": 0.875, "f1": 0.625, "accuracy": 0.75}
    mv = train.last_version
    assert vanilla.get_run(mv.run_id).data.metrics == expected
    version_tags = vanilla.get_model_version(mv.name, str(mv.version)).tags
    assert {
        k.removeprefix(_tags.METRICS_PREFIX): float(v)
        for k, v in version_tags.items()
        if k.startswith(_tags.METRICS_PREFIX)
    } == expected
    assert dict(mv.metrics) == expected


def test_a_run_started_by_the_user_is_reused_and_left_running(client, vanilla, store):
    uri, experiment_id = store
    name = unique("user-run")

    @rs.register(name, client=client)
    def train(X, y, depth: int = 3):
        rs.log_metric("score", 0.5)
        return Scaler(1.0)

    runs_before = {r.info.run_id for r in vanilla.search_runs([experiment_id])}
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id) as run:
            train(X, Y)
            assert mlflow.active_run() is not None
            assert mlflow.active_run().info.run_id == run.info.run_id
            assert vanilla.get_run(run.info.run_id).info.status == "RUNNING"
    finally:
        mlflow.set_tracking_uri(None)

    assert train.last_version.run_id == run.info.run_id
    finished = vanilla.get_run(run.info.run_id)
    assert finished.info.status == "FINISHED"  # ended by the user's `with`, not by us
    assert finished.data.params == {"depth": "3"}
    assert finished.data.metrics == {"score": 0.5}
    runs_after = {r.info.run_id for r in vanilla.search_runs([experiment_id])}
    assert runs_after - runs_before == {run.info.run_id}  # no run of our own besides the user's


def test_a_run_we_start_is_finished_and_not_left_active(client, vanilla):
    @rs.register(unique("own-run"), client=client)
    def train():
        assert mlflow.active_run() is not None  # training runs inside the run
        return Scaler(1.0)

    train()

    assert mlflow.active_run() is None
    assert vanilla.get_run(train.last_version.run_id).info.status == "FINISHED"


# ============================================================================ versions


def test_each_call_registers_exactly_one_version(client, vanilla):
    name = unique("one-per-call")

    @rs.register(name, client=client)
    def train(factor: float):
        return Scaler(factor)

    seen = []
    for factor in (1.0, 2.0, 3.0):
        train(factor)
        seen.append(train.last_version.version)

    versions = vanilla.search_model_versions(f"name = '{name}'")
    assert seen == [1, 2, 3]
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    keys = {v.tags[_tags.IDEMPOTENCY_KEY] for v in versions}
    assert len(keys) == 3
    assert _outbox.pending(client.settings.cache_dir) == []  # nothing left behind


def test_last_version_is_the_registered_version_with_its_alias(client, vanilla):
    name = unique("last-version")

    @rs.register(name, alias="prod", tags={"team": "growth"}, description="nightly", client=client)
    def train():
        return Scaler(1.0)

    assert train.last_version is None
    train()
    first = train.last_version
    train()
    second = train.last_version

    assert isinstance(second, rs.ModelVersion)
    assert (second.name, second.version, second.aliases) == (name, 2, ("prod",))
    assert first.version == 1
    stored = vanilla.get_model_version_by_alias(name, "prod")
    assert int(stored.version) == 2
    assert stored.description == "nightly" == second.description
    assert stored.tags == dict(second.tags)
    assert stored.tags["team"] == "growth"
    assert second.run_id == stored.run_id
    assert second.tags[_tags.IDEMPOTENCY_KEY] == stored.tags[_tags.IDEMPOTENCY_KEY]


def test_bare_register_names_the_model_after_the_function(client, vanilla, monkeypatch):
    # Bare, there is no client argument: the default client reads the environment.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(client.settings.cache_dir))
    monkeypatch.delenv("REGISTRY_SDK_OFFLINE", raising=False)

    @rs.register
    def churn_model_bare():
        return Scaler(1.0)

    assert isinstance(churn_model_bare, rs.Registered)
    churn_model_bare()

    assert churn_model_bare.last_version.name == "churn_model_bare"
    assert vanilla.get_registered_model("churn_model_bare").name == "churn_model_bare"
    assert vanilla.get_model_version("churn_model_bare", "1").run_id is not None


def test_data_arguments_are_fingerprinted_not_logged_as_params(client, vanilla):
    import pandas as pd

    frame = pd.DataFrame(X, columns=["a", "b", "c"])

    @rs.register(unique("data"), client=client)
    def train(features, labels, frame, seed: int = 0):
        return Scaler(1.0)

    train(X, Y, frame)

    mv = train.last_version
    assert vanilla.get_run(mv.run_id).data.params == {"seed": "0"}
    data = {
        k.removeprefix(_tags.DATA_PREFIX): json.loads(v)
        for k, v in mv.tags.items()
        if k.startswith(_tags.DATA_PREFIX)
    }
    assert set(data) == {"features", "labels", "frame"}
    assert data["features"]["shape"] == [4, 3]
    assert data["labels"]["dtype"] == "int64"
    assert data["frame"]["columns"] == ["a", "b", "c"]


# ============================================================================ the wrapper


def test_the_wrapper_keeps_the_signature_name_and_docstring(client):
    def train(X, y, *, n_estimators: int = 100, name: str | None = None) -> Scaler:
        """Train the churn model."""
        return Scaler(1.0)

    wrapped = rs.register("churn-sig", client=client)(train)

    assert inspect.signature(wrapped) == inspect.signature(train)
    assert wrapped.__name__ == "train"
    assert wrapped.__doc__ == "Train the churn model."
    assert wrapped.__wrapped__ is train


def test_the_model_object_itself_is_returned(client):
    made = []

    @rs.register(unique("identity"), client=client)
    def train():
        made.append(Scaler(4.0))
        return made[-1]

    result = train()

    assert result is made[0]


def test_the_returned_tuple_is_returned_as_is(client):
    made = []

    @rs.register(unique("tuple"), client=client)
    def train():
        made.append((Scaler(4.0), {"accuracy": 0.5}))
        return made[-1]

    result = train()

    assert result is made[0]
    assert result[0] is made[0][0]
    assert train.last_version.metrics == {"accuracy": 0.5}


# ============================================================================ misuse


def test_log_metric_outside_a_registered_function_raises():
    with pytest.raises(RuntimeError, match="@register"):
        rs.log_metric("accuracy", 0.5)
    with pytest.raises(RuntimeError, match="@register"):
        rs.log_metrics({"accuracy": 0.5})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "bad/name"}, InvalidReferenceError),
        ({"name": ""}, InvalidReferenceError),
        ({"name": "has\nnewline"}, InvalidReferenceError),
        ({"name": "ok", "alias": "not valid!"}, InvalidReferenceError),
        ({"name": "ok", "alias": "latest"}, InvalidReferenceError),
        ({"name": "ok", "flavor": "tensorflow"}, ValueError),
    ],
)
def test_bad_name_alias_or_flavor_raise_when_decorating(kwargs, error):
    name = kwargs.pop("name")
    with pytest.raises(error):
        rs.register(name, **kwargs)  # before any function is even given


def test_when_training_raises_no_version_is_made_and_the_run_fails(client, vanilla):
    name = unique("fails")
    runs = []
    boom = ValueError("diverged")

    @rs.register(name, alias="prod", client=client)
    def train():
        runs.append(mlflow.active_run().info.run_id)
        rs.log_metric("loss", 9.0)
        raise boom

    with pytest.raises(ValueError, match="diverged") as caught:
        train()

    assert caught.value is boom
    assert vanilla.get_run(runs[0]).info.status == "FAILED"
    assert mlflow.active_run() is None
    assert vanilla.search_model_versions(f"name = '{name}'") == []
    assert vanilla.search_registered_models(f"name = '{name}'") == []
    assert train.last_version is None
    outbox = _outbox.outbox_dir(client.settings.cache_dir)
    assert not outbox.exists() or list(outbox.iterdir()) == []


# ============================================================================ Retry-After


class RateLimitedServer(FakeMlflowServer):
    """The fake server, answering ``model-versions/create`` with 429 + Retry-After first."""

    def __init__(self, http, *, retry_after: str, times: int = 1) -> None:
        self.retry_after = retry_after
        self.rate_limited = times
        super().__init__(http)

    def _create_version(self, request):
        if self.rate_limited > 0:
            self.rate_limited -= 1
            self.create_calls += 1
            body = error_body("REQUEST_LIMIT_EXCEEDED", "too many requests")
            headers = {"Content-Type": "application/json", "Retry-After": self.retry_after}
            return 429, headers, json.dumps(body)
        return super()._create_version(request)


@pytest.mark.parametrize(("retry_after", "waited"), [("7", 7.0), ("0", 0.0), ("600", 30.0)])
def test_version_creation_waits_as_long_as_retry_after_asks_capped_by_the_timeout(
    retry_after, waited
):
    sleep = FakeSleep()
    client = make_client(make_settings(max_retries=3, timeout=30), sleep)
    with rest_mock() as http:
        server = RateLimitedServer(http, retry_after=retry_after)
        server.add_model("churn")

        mv = client.create_version("churn", "s3://bucket/model")

    assert sleep.calls == [waited]
    assert server.create_calls == 2
    [stored] = server.versions_of("churn")
    assert mv.version == int(stored["version"]) == 1

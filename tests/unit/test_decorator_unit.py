# Training functions here take arguments only for @register to log or fingerprint them, and a
# pyfunc model's predict takes MLflow's whole argument list.
# ruff: noqa: ARG001, ARG002
"""``@register`` as a user meets it, against MLflow's own embedded store (SQLite in a temp dir).

Everything is read back with vanilla ``mlflow.MlflowClient``: the run's params and metrics,
the versions and their tags. The outbox sections check what a push trusts (only entries for the
pushing client's own registry, from a private outbox, never recording credentials) and the
artifact digest every version carries. The last section checks, with the fake REST server,
that the client's safe re-creation of a version waits as long as the server's ``Retry-After``
asks.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import stat
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pytest
from _rest_fakes import FakeMlflowServer, FakeSleep, error_body, make_client, make_settings
from _rest_fakes import mock_http as rest_mock

import registry_sdk as rs
from registry_sdk import _digest, _outbox, _tags
from registry_sdk._capabilities import version_tuple
from registry_sdk.errors import CacheIntegrityError, InvalidReferenceError


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


def test_a_run_we_start_is_active_while_training_where_mlflow_points_at_the_client(
    client, vanilla, store, monkeypatch
):
    uri, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's global URI is the client's
    inside = []

    @rs.register(unique("own-run"), client=client)
    def train():
        inside.append(mlflow.active_run().info.run_id)  # training runs inside the run
        mlflow.log_metric("fluent", 2.0)  # so MLflow's fluent API reaches it
        return Scaler(1.0)

    train()

    assert inside == [train.last_version.run_id]
    assert mlflow.active_run() is None
    finished = vanilla.get_run(train.last_version.run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.metrics == {"fluent": 2.0}


def test_a_run_we_start_is_not_made_active_where_mlflow_points_elsewhere(client, vanilla):
    # MLflow's global URI is its default, not the client's store: a fluent call inside the
    # function would send the run's id to the wrong store, so the run is not made active.
    @rs.register(unique("own-run-elsewhere"), client=client)
    def train():
        assert mlflow.active_run() is None
        return Scaler(1.0)

    train()

    assert mlflow.active_run() is None
    assert mlflow.is_tracking_uri_set() is False
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


def test_when_training_raises_no_version_is_made_and_the_run_fails(
    client, vanilla, store, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])  # the run is active while training
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


# ============================================================================ outbox: trust


class Doubler(mlflow.pyfunc.PythonModel):
    """A pyfunc model to stage by hand, as ``@register`` would have."""

    def predict(self, context, model_input: list[float], params=None) -> list[float]:
        return [2 * x for x in model_input]


def stage(cache: Path, name: str, uri: str, *, experiment_id: str | None = None) -> _outbox.Entry:
    """An outbox entry for ``uri``, staged the way ``@register`` does when the push fails."""
    key = uuid.uuid4().hex
    staging = _outbox.new_entry_dir(cache, key)
    # Explicit requirements: MLflow infers none in a subprocess.
    mlflow.pyfunc.save_model(
        str(staging / _outbox.MODEL_DIR), python_model=Doubler(), pip_requirements=["mlflow"]
    )
    entry = _outbox.Entry(
        path=staging,
        key=key,
        name=name,
        tracking_uri=uri,
        registry_uri=uri,
        experiment_id=experiment_id,
        tags={"origin": "staged"},
    )
    return _outbox.commit(entry)


FOREIGN = "http://registry.example:5000"


def test_push_pending_never_contacts_the_registry_another_entry_names(
    client, store, vanilla, monkeypatch
):
    _, experiment_id = store
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-do-not-send")
    cache = client.settings.cache_dir
    mine = stage(cache, unique("mine"), client.tracking_uri, experiment_id=experiment_id)
    theirs = stage(cache, unique("theirs"), "http://alice:s3cret-pw@registry.example:5000")
    raw_before = (theirs.path / _outbox.ENTRY_FILE).read_bytes()
    seen = []

    def record(request):
        seen.append((request.method, request.url, request.headers.get("Authorization")))
        return 404, {}, json.dumps(error_body("RESOURCE_DOES_NOT_EXIST", "nothing here"))

    with rest_mock() as http:
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            http.add_callback(
                method, re.compile(r"https?://([^/@]*@)?registry\.example[:/].*"), record
            )
        with pytest.warns(rs.PendingRegistrationWarning) as caught:
            pushed = rs.push_pending(client)

    assert seen == [], "the entry's host got requests (and the caller's token)"
    assert [(v.name, v.version) for v in pushed] == [(mine.name, 1)]
    assert vanilla.get_model_version(mine.name, "1").tags["origin"] == "staged"
    # The other entry waits, untouched, and the warning says how to push it.
    [left] = _outbox.pending(cache)
    assert left.path == theirs.path
    assert (left.path / _outbox.ENTRY_FILE).read_bytes() == raw_before
    [warning] = caught
    message = str(warning.message)
    assert repr(theirs.name) in message
    assert f"registry at {FOREIGN}" in message
    assert f"push_pending(RegistryClient('{FOREIGN}'))" in message
    assert f"`registry --tracking-uri {FOREIGN} push`" in message
    assert "s3cret" not in message
    assert "alice" not in message


@pytest.mark.parametrize(
    ("entry_uri", "client_uri"),
    [
        ("http://registry.example:5000", "http://alice:s3cret@registry.example:5000"),
        ("http://registry.example:5000/", "HTTP://Registry.Example:5000"),
        ("https://registry.example", "https://registry.example:443/"),
        ("http://registry.example/mlflow", "http://registry.example:80/mlflow/"),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
    ],
)
def test_an_entry_belongs_to_a_client_with_the_same_server_whatever_its_credentials(
    entry_uri, client_uri, tmp_path
):
    entry = _outbox.Entry(
        tmp_path, key="k", name="m", tracking_uri=entry_uri, registry_uri=entry_uri
    )
    with rs.RegistryClient(client_uri, cache_dir=tmp_path) as registry:
        assert _outbox.same_registry(entry, registry)


@pytest.mark.parametrize(
    "client_uri",
    [
        "http://registry.example:5001",
        "https://registry.example:5000",
        "http://other.example:5000",
        "http://registry.example:5000/prefix",
        "http://registry.example.evil.test:5000",
        "sqlite:///registry.example.db",
    ],
)
def test_an_entry_does_not_belong_to_a_client_of_another_server(client_uri, tmp_path):
    entry = _outbox.Entry(tmp_path, key="k", name="m", tracking_uri=FOREIGN, registry_uri=FOREIGN)
    with rs.RegistryClient(client_uri, cache_dir=tmp_path) as registry:
        assert not _outbox.same_registry(entry, registry)
    # The registry counts too, not only the tracking server.
    with rs.RegistryClient(FOREIGN, registry_uri=client_uri, cache_dir=tmp_path) as registry:
        assert not _outbox.same_registry(entry, registry)


def test_an_entry_never_records_the_credentials_of_its_uris(tmp_path):
    cache = tmp_path / "cache"
    entry = stage(cache, "m", "http://alice:s3cret-pw@registry.example:5000/")
    raw = (entry.path / _outbox.ENTRY_FILE).read_text(encoding="utf-8")
    assert "s3cret-pw" not in raw
    assert "alice" not in raw
    assert json.loads(raw)["tracking_uri"] == "http://registry.example:5000/"
    assert json.loads(raw)["registry_uri"] == "http://registry.example:5000/"

    # An entry written with credentials (by an older version) loses them when read.
    data = json.loads(raw)
    data["registry_uri"] = "https://bob:hunter2@registry.example"
    (entry.path / _outbox.ENTRY_FILE).write_text(json.dumps(data), encoding="utf-8")
    [loaded] = _outbox.pending(cache)
    assert loaded.registry_uri == "https://registry.example"
    loaded.save()
    assert "hunter2" not in (entry.path / _outbox.ENTRY_FILE).read_text(encoding="utf-8")


def test_the_outbox_and_its_entries_are_private(tmp_path):
    cache = tmp_path / "cache"
    previous = os.umask(0o022)  # the usual umask, whatever the test runner's is
    try:
        entry = stage(cache, "m", FOREIGN)
    finally:
        os.umask(previous)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(cache) == 0o700
    assert mode(_outbox.outbox_dir(cache)) == 0o700
    assert mode(entry.path) == 0o700
    assert mode(entry.path / _outbox.ENTRY_FILE) == 0o600


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_an_outbox_other_users_can_write_to_is_refused(client, store, vanilla):
    _, experiment_id = store
    cache = client.settings.cache_dir
    # A planted entry naming the user's own registry: only the outbox's privacy stops it.
    planted = stage(cache, unique("planted"), client.tracking_uri, experiment_id=experiment_id)
    outbox = _outbox.outbox_dir(cache)
    outbox.chmod(0o777)
    trained = []

    @rs.register(unique("refused"), client=client)
    def train():
        trained.append(Scaler(1.0))
        return trained[-1]

    with pytest.raises(CacheIntegrityError, match=r"outbox .* writable by other users.*chmod go-w"):
        rs.push_pending(client)
    with pytest.raises(CacheIntegrityError, match="outbox"):
        _outbox.pending(cache)
    with pytest.raises(CacheIntegrityError, match="outbox"):
        train()

    assert trained == [], "refused before training, not after it"
    assert vanilla.search_registered_models(f"name = '{planted.name}'") == []
    assert (planted.path / _outbox.ENTRY_FILE).is_file()


# ============================================================================ artifact digest


def test_the_version_carries_the_digest_of_what_vanilla_mlflow_downloads(
    client, vanilla, store, tmp_path
):
    uri, _ = store
    name = unique("digest")

    @rs.register(name, client=client)
    def train():
        return Scaler(3.0)

    train()

    tags = vanilla.get_model_version(name, "1").tags
    assert tags == dict(train.last_version.tags)
    recorded = tags[_tags.ARTIFACTS_SHA256]
    # The version's own artifact location: exactly the tree that was uploaded.
    plain = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=vanilla.get_model_version_download_uri(name, "1"),
            dst_path=str(tmp_path / "plain"),
            tracking_uri=uri,
        )
    )
    records = _digest.tree_records(plain)
    assert _digest.tree_digest(records) == recorded
    assert _digest.digest_tags(records) == {
        _tags.ARTIFACTS_SHA256: recorded,
        _tags.ARTIFACTS_FILES: tags[_tags.ARTIFACTS_FILES],
    }
    assert "MLmodel" in json.loads(tags[_tags.ARTIFACTS_FILES])
    # Through models:/, MLflow adds one file of its own (the name and version it resolved).
    mlflow.set_tracking_uri(uri)
    try:
        via_models = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/1", dst_path=str(tmp_path / "via-models")
            )
        )
    finally:
        mlflow.set_tracking_uri(None)
    # The digest leaves that file out, so the models:/ download verifies as it is.
    assert (via_models / "registered_model_meta").is_file()
    assert _digest.differences(_digest.tree_records(via_models), tags) == []
    assert _digest.tree_digest(_digest.tree_records(via_models)) == recorded


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


# ============================================================================ serialization


@pytest.mark.parametrize(
    ("flavor", "requested", "readers", "chosen"),
    [
        # skops where every reader of the registry loads it: mlflow.sklearn from 3.8.1 on.
        ("sklearn", None, "3.17.2", "skops"),
        ("sklearn", None, "3.8.1", "skops"),
        ("sklearn", None, "3.8.0", "cloudpickle"),
        ("sklearn", None, "2.22.5", "cloudpickle"),
        ("sklearn", None, "2.9.2", "cloudpickle"),
        # LightGBM's scikit-learn API models: mlflow.lightgbm reads skops from 3.9.0 on.
        ("lightgbm", None, "3.8.1", "cloudpickle"),
        ("lightgbm", None, "3.9.0", "skops"),
        # Readers unknown (the server could not tell, and never did here): what all read.
        ("sklearn", None, None, "cloudpickle"),
        # What the user asks for wins, either way.
        ("sklearn", "skops", "2.9.2", "skops"),
        ("sklearn", "pickle", "3.17.2", "pickle"),
        ("sklearn", "cloudpickle", None, "cloudpickle"),
    ],
)
def test_the_format_is_skops_only_where_every_reader_loads_it(flavor, requested, readers, chosen):
    from registry_sdk._flavors import choose_serialization

    assert choose_serialization(flavor, requested=requested, readers=readers) == chosen


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serialization": "joblib"}, "unknown serialization 'joblib'"),
        ({"serialization": "skops", "flavor": "pyfunc"}, "cloudpickle format only"),
        ({"serialization": "pickle", "flavor": "xgboost"}, "its own format only"),
    ],
)
def test_a_serialization_that_cannot_apply_is_refused_when_decorating(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rs.register("ok", **kwargs)


def test_skops_is_refused_where_the_installed_mlflow_cannot_write_it():
    from registry_sdk._flavors import check_serialization

    with pytest.raises(ValueError, match=r"needs mlflow >= 3\.8\.1.*installed mlflow is 2\.22\.5"):
        check_serialization("skops", installed="2.22.5")
    assert check_serialization("skops", installed="3.8.1") == "skops"
    assert check_serialization("cloudpickle", installed="2.22.5") == "cloudpickle"


def _sklearn_model(X, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, y)


def _saved_format(store, name: str, tmp_path: Path) -> str | None:
    """The ``serialization_format`` in the sklearn flavor of the version's MLmodel."""
    import yaml

    uri, _ = store
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=mlflow.MlflowClient(uri, uri).get_model_version_download_uri(name, "1"),
        dst_path=str(tmp_path / name),
        tracking_uri=uri,
    )
    conf = yaml.safe_load((Path(path) / "MLmodel").read_text(encoding="utf-8"))
    return conf["flavors"].get("sklearn", {}).get("serialization_format")


def test_the_embedded_store_gets_what_the_installed_mlflow_reads_and_the_tag_says_so(
    client, vanilla, store, tmp_path
):
    """The embedded store's readers run the installed mlflow: skops from 3.8.1, else cloudpickle."""
    name = unique("skops")
    rs.register(name, client=client)(_sklearn_model)(X, Y)

    skops_readable = version_tuple(mlflow.__version__) >= version_tuple("3.8.1")
    expected = "skops" if skops_readable else "cloudpickle"
    assert vanilla.get_model_version(name, "1").tags["registry_sdk.serialization"] == expected
    assert _saved_format(store, name, tmp_path) == expected


@pytest.mark.parametrize("asked", ["cloudpickle", "pickle"])
def test_serialization_forces_the_format_and_the_tag_records_it(
    client, vanilla, store, tmp_path, asked
):
    name = unique(f"forced-{asked}")
    train = rs.register(name, client=client, serialization=asked)(_sklearn_model)

    model = train(X, Y)

    assert vanilla.get_model_version(name, "1").tags["registry_sdk.serialization"] == asked
    assert _saved_format(store, name, tmp_path) == asked
    loaded = rs.load_model(f"{name}/1", client=client)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_lightgbm_sklearn_api_model_takes_the_format_asked_for(client, vanilla, store, tmp_path):
    import yaml
    from lightgbm import LGBMClassifier

    name = unique("lgbm-forced")
    X_big = np.random.default_rng(1).normal(size=(40, 3))
    y_big = (X_big[:, 0] > 0).astype(int)

    @rs.register(name, client=client, serialization="cloudpickle")
    def train():
        return LGBMClassifier(n_estimators=3, num_leaves=3, verbose=-1).fit(X_big, y_big)

    model = train()

    assert vanilla.get_model_version(name, "1").tags["registry_sdk.serialization"] == "cloudpickle"
    uri, _ = store
    path = mlflow.artifacts.download_artifacts(
        artifact_uri=vanilla.get_model_version_download_uri(name, "1"),
        dst_path=str(tmp_path / name),
        tracking_uri=uri,
    )
    conf = yaml.safe_load((Path(path) / "MLmodel").read_text(encoding="utf-8"))
    # MLflow before 3.9 always cloudpickles a LightGBM scikit-learn API model and names no format.
    assert conf["flavors"]["lightgbm"].get("serialization_format", "cloudpickle") == "cloudpickle"
    loaded = rs.load_model(f"{name}/1", client=client)
    np.testing.assert_array_equal(loaded.predict(X_big), model.predict(X_big))


def test_a_plain_model_is_cloudpickle_and_the_tag_says_so(client, vanilla):
    name = unique("plain-format")
    rs.register(name, client=client)(lambda: Scaler(2.0))()

    assert vanilla.get_model_version(name, "1").tags["registry_sdk.serialization"] == "cloudpickle"


def _dead_client(tmp_path: Path, *, userinfo: str = "") -> rs.RegistryClient:
    """A client for a server on a loopback port where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://{userinfo}127.0.0.1:{port}"
    return rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", timeout=2, max_retries=0
    )


def test_a_server_that_cannot_be_asked_is_taken_at_the_version_it_last_reported(tmp_path):
    from registry_sdk._capabilities import version_tuple
    from registry_sdk._flavors import installed_mlflow
    from registry_sdk.decorators import _oldest_reader

    client = _dead_client(tmp_path)
    cache = client.settings.cache_dir
    assert _oldest_reader(client, server_down=False) is None
    assert _oldest_reader(client, server_down=True) is None

    # Credentials do not tell registries apart; the file keeps none.
    with_password = client.settings.registry_uri.replace("http://", "http://bob:pw-123@")
    _outbox.remember_server_version(cache, with_password, "2.22.5")
    # Capped by the installed mlflow (an MLflow 2.16 client writes for 2.16 readers).
    expected = min("2.22.5", installed_mlflow(), key=version_tuple)
    assert _oldest_reader(client, server_down=False) == expected
    assert _oldest_reader(client, server_down=True) == expected
    recorded = cache / "server-versions.json"
    assert "pw-123" not in recorded.read_text(encoding="utf-8")
    assert stat.S_IMODE(recorded.stat().st_mode) == 0o600

    # Capped by the installed mlflow, which writes the model.
    _outbox.remember_server_version(cache, client.settings.registry_uri, "99.0.0")
    assert _oldest_reader(client, server_down=True) == installed_mlflow()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_server_versions_file_others_may_write_is_ignored(tmp_path):
    client = _dead_client(tmp_path)
    cache = client.settings.cache_dir
    _outbox.remember_server_version(cache, client.settings.registry_uri, "3.17.2")
    recorded = cache / "server-versions.json"
    recorded.chmod(0o666)

    assert _outbox.remembered_server_version(cache, client.settings.registry_uri) is None


@pytest.mark.parametrize(("remembered", "staged"), [(None, "cloudpickle"), ("3.17.2", "skops")])
def test_a_model_staged_while_the_server_is_down_gets_what_its_readers_load(
    tmp_path, monkeypatch, remembered, staged
):
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    client = _dead_client(tmp_path)
    cache = client.settings.cache_dir
    if remembered is not None:
        _outbox.remember_server_version(cache, client.settings.registry_uri, remembered)

    if version_tuple(mlflow.__version__) < version_tuple("3.8.1"):
        staged = "cloudpickle"  # the installed mlflow, which writes the model, caps its readers

    with pytest.warns(rs.PendingRegistrationWarning):
        rs.register(unique("down"), client=client)(_sklearn_model)(X, Y)

    [entry] = _outbox.pending(cache)
    assert entry.tags["registry_sdk.serialization"] == staged
    mlmodel = (entry.model_path / "MLmodel").read_text(encoding="utf-8")
    assert f"serialization_format: {staged}" in mlmodel


def test_an_alias_on_a_server_without_aliases_is_refused_before_anything_is_created(
    client, tmp_path
):
    from registry_sdk._capabilities import Capabilities

    entry = _outbox.Entry(
        path=tmp_path / "entry",
        key=uuid.uuid4().hex,
        name="churn",
        tracking_uri=client.tracking_uri,
        registry_uri=client.settings.registry_uri,
        alias="prod",
    )

    with pytest.raises(rs.UnsupportedServerError) as caught:
        _outbox._check_server(entry, client, Capabilities("2.2.1"))

    assert (caught.value.feature, caught.value.minimum) == ("model version aliases", "2.3.0")
    assert caught.value.server_version == "2.2.1"
    _outbox._check_server(entry, client, Capabilities("2.3.0"))  # has them: no error

"""Nothing is lost: a model trained while the registry is down waits in the outbox, and is
registered exactly once when the registry is back.

Each test runs its own ``mlflow server`` (SQLite backend store, artifacts in tmp) pinned to one
port, so stopping and starting it again is an outage of the same server, with the same store.
Every check of the registry afterwards uses vanilla MLflow, not registry_sdk: among them, that
the version's ``registry_sdk.artifacts.sha256`` is the digest of the artifacts vanilla MLflow
downloads, however many pushes it took.

The last test checks whom a push trusts: an entry staged for another registry is never sent
there (nor the caller's credentials) by ``push_pending`` with the caller's own client; only a
client for that registry pushes it.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

import _proxy
import mlflow
import numpy as np
import pytest
from _client_version import artifact_paths, download_artifacts
from _servers import PinnedServer, free_port, migrated_sqlite_db, pinned_sqlite_server
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import _digest, _outbox
from registry_sdk._backends.rest import RestBackend

if TYPE_CHECKING:
    from pathlib import Path

# A push against a dead server must give up, not hang: pytest-timeout bounds every test here
# (server starts included); there is no timed assertion.
pytestmark = pytest.mark.timeout(240)

#: MLflow 3 clients log a logged model; MLflow 2 clients (nox -s tests_mlflow2) run artifacts.
LOGGED_MODELS = hasattr(mlflow.MlflowClient, "create_logged_model")
IDEMPOTENCY_TAG = "registry_sdk.idempotency_key"
DIGEST_TAG = "registry_sdk.artifacts.sha256"
NAME = "m"
ALIAS = "prod"


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch):
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite_db(tmp_path_factory.mktemp("template") / "mlflow.db")


@pytest.fixture
def server(tmp_path: Path, store_template: Path):
    """A pinned server, not started yet; its whole process group is killed at the end."""
    srv = pinned_sqlite_server(tmp_path / "server", template=store_template)
    try:
        yield srv
    finally:
        srv.stop()


def make_client(server: PinnedServer, tmp_path: Path) -> rs.RegistryClient:
    # Small timeout and few retries: giving up on a dead server must be quick.
    return rs.RegistryClient(
        server.uri,
        registry_uri=server.uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=2,
        max_retries=1,
    )


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int)
    return X, y


def the_entry(client: rs.RegistryClient) -> tuple[_outbox.Entry, dict]:
    """The single outbox entry (and its raw entry.json); fails if there is not exactly one."""
    root = _outbox.outbox_dir(client.settings.cache_dir)
    children = sorted(p.name for p in root.iterdir())
    entries = _outbox.pending(client.settings.cache_dir)
    assert len(entries) == 1, children
    entry = entries[0]
    assert children == [entry.path.name], "no leftover staging directory"
    assert (entry.model_path / "MLmodel").is_file()
    raw = json.loads((entry.path / _outbox.ENTRY_FILE).read_text(encoding="utf-8"))
    assert raw["name"] == NAME
    assert raw["key"] == entry.key
    return entry, raw


def assert_outbox_empty(client: rs.RegistryClient) -> None:
    assert _outbox.pending(client.settings.cache_dir) == []
    root = _outbox.outbox_dir(client.settings.cache_dir)
    assert sorted(p.name for p in root.iterdir()) == []


def vanilla(server: PinnedServer) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def versions_of(server: PinnedServer, name: str = NAME) -> list:
    return list(vanilla(server).search_model_versions(f"name = '{name}'"))


def downloaded_digest(server: PinnedServer, name: str, version: str) -> str:
    """The digest of the version's artifacts as vanilla MLflow downloads them from the server."""
    uri = vanilla(server).get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifacts(uri, tmp, server.uri)
        return _digest.tree_digest(_digest.tree_records(path))


def assert_registered_once(
    server: PinnedServer,
    raw_entry: dict,
    model: LogisticRegression,
    X: np.ndarray,
    *,
    params: dict[str, str],
    metrics: dict[str, float],
) -> None:
    """Exactly one version of NAME, with every recorded tag, the alias, the run, the model."""
    mlflow_client = vanilla(server)
    versions = versions_of(server)
    assert len(versions) == 1, [(v.version, v.tags) for v in versions]
    mv = mlflow_client.get_model_version(NAME, versions[0].version)
    assert mv.tags[IDEMPOTENCY_TAG] == raw_entry["key"]
    assert mv.tags[DIGEST_TAG] == downloaded_digest(server, NAME, mv.version)
    missing = {k: v for k, v in raw_entry["tags"].items() if mv.tags.get(k) != v}
    assert not missing, f"tags recorded in entry.json but not on the version: {missing}"
    assert raw_entry["tags"]["registry_sdk.code.function"].endswith("train")

    assert mlflow_client.get_model_version_by_alias(NAME, ALIAS).version == mv.version

    assert mv.run_id
    if raw_entry["run_id"] is not None:
        assert mv.run_id == raw_entry["run_id"]
    run = mlflow_client.get_run(mv.run_id)
    assert run.info.status == "FINISHED", "a run registry_sdk started is ended, outage or not"
    assert params.items() <= run.data.params.items()
    assert run.data.metrics == pytest.approx(metrics)
    for key, value in metrics.items():
        assert float(mv.tags[f"registry_sdk.metrics.{key}"]) == pytest.approx(value)

    if LOGGED_MODELS:
        # Exactly one logged model was created for it, and it is the version's source.
        logged = mlflow_client.search_logged_models(experiment_ids=[run.info.experiment_id])
        assert [f"models:/{m.model_id}" for m in logged] == [mv.source]
        if raw_entry["model_id"] is not None:
            assert mv.source == f"models:/{raw_entry['model_id']}"
    else:
        # MLflow 2's way: uploaded once, as the run's artifacts under model/, the source.
        assert artifact_paths(server.uri, run.info.run_id) == ["model"]
        assert mv.source == f"{run.info.artifact_uri}/model"

    mlflow.set_tracking_uri(server.uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}@{ALIAS}")
    np.testing.assert_array_equal(np.asarray(loaded.predict(X)), model.predict(X))


def test_server_stopped_before_training_ends(server, tmp_path):
    server.start()
    client = make_client(server, tmp_path)
    X, y = dataset()
    trained: list[LogisticRegression] = []

    @rs.register(NAME, alias=ALIAS, client=client)
    def train(X, y, C: float = 1.0):
        model = LogisticRegression(C=C).fit(X, y)
        rs.log_metric("loss", 1.0)
        rs.log_metric("loss", 0.25)  # the final value is what counts
        rs.log_metric("accuracy", model.score(X, y))
        trained.append(model)
        server.stop()  # the registry goes away while training ends
        return model

    with pytest.warns(rs.PendingRegistrationWarning) as caught:
        returned = train(X, y, C=0.5)

    assert returned is trained[0]
    assert train.last_version is None
    entry, raw = the_entry(client)
    [pending] = [w for w in caught if w.category is rs.PendingRegistrationWarning]
    assert str(entry.path) in str(pending.message)
    assert raw["run_id"] is not None, "the run was started while the server was up"
    accuracy = trained[0].score(X, y)
    assert raw["metrics"] == {"loss": 0.25, "accuracy": accuracy}

    server.start()  # same port, same backend store, same artifacts
    pushed = rs.push_pending(client)

    assert [(v.name, v.version) for v in pushed] == [(NAME, 1)]
    assert ALIAS in pushed[0].aliases
    assert pushed[0].tags[IDEMPOTENCY_TAG] == entry.key
    assert_outbox_empty(client)
    assert_registered_once(
        server,
        raw,
        returned,
        X,
        params={"C": "0.5"},
        metrics={"loss": 0.25, "accuracy": accuracy},
    )

    assert rs.push_pending(client) == []
    assert len(versions_of(server)) == 1


def test_server_down_when_training_starts(server, tmp_path):
    client = make_client(server, tmp_path)  # nothing listens on server.port yet
    X, y = dataset()

    @rs.register(NAME, alias=ALIAS, client=client)
    def train(X, y, C: float = 1.0):
        model = LogisticRegression(C=C).fit(X, y)
        rs.log_metric("accuracy", model.score(X, y))
        return model

    with pytest.warns(rs.PendingRegistrationWarning):
        model = train(X, y, C=2.0)

    assert isinstance(model, LogisticRegression)
    assert train.last_version is None
    _, raw = the_entry(client)
    assert raw["run_id"] is None, "no run could be started without a server"
    assert raw["params"] == {"C": "2.0"}
    assert raw["metrics"] == {"accuracy": model.score(X, y)}

    server.start()
    pushed = rs.push_pending(client)

    assert [(v.name, v.version) for v in pushed] == [(NAME, 1)]
    assert pushed[0].run_id is not None, "the run is created at push time"
    assert_outbox_empty(client)
    assert_registered_once(
        server, raw, model, X, params={"C": "2.0"}, metrics={"accuracy": model.score(X, y)}
    )

    assert rs.push_pending(client) == []
    assert len(versions_of(server)) == 1


def _cut_before_version(monkeypatch, server):
    """The server dies after the logged model is complete, before the version is created."""
    original = rs.RegistryClient.create_model

    def create_model(self, *args, **kwargs):
        server.stop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rs.RegistryClient, "create_model", create_model)


def _cut_reply_lost(monkeypatch, server):
    """The version is created, then the server dies before its reply arrives."""
    original = RestBackend.create_version

    def create_version(self, *args, **kwargs):
        original(self, *args, **kwargs)
        server.stop()
        msg = "connection reset before the reply (simulated)"
        raise rs.RegistryUnavailableError(msg)

    monkeypatch.setattr(RestBackend, "create_version", create_version)


def _cut_before_alias(monkeypatch, server):
    """The version is created and acknowledged; the server dies before the alias is set."""
    original = rs.RegistryClient.set_alias

    def set_alias(self, *args, **kwargs):
        server.stop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rs.RegistryClient, "set_alias", set_alias)


@pytest.mark.parametrize(
    ("cut", "versions_left"),
    [(_cut_before_version, 0), (_cut_reply_lost, 1), (_cut_before_alias, 1)],
    ids=["before-version", "reply-lost", "before-alias"],
)
def test_interrupted_push_completes_exactly_once(server, tmp_path, cut, versions_left):
    server.start()
    client = make_client(server, tmp_path)
    X, y = dataset()

    @rs.register(NAME, alias=ALIAS, client=client)
    def train(X, y, C: float = 1.0):
        model = LogisticRegression(C=C).fit(X, y)
        rs.log_metric("accuracy", model.score(X, y))
        return model

    with pytest.MonkeyPatch.context() as mp:
        cut(mp, server)
        with pytest.warns(rs.PendingRegistrationWarning):
            model = train(X, y)
    assert not server.running, "the cut really happened during the push"
    assert train.last_version is None
    entry, raw = the_entry(client)
    if LOGGED_MODELS:
        assert entry.model_id is not None, "the logged model was created before the cut"
    else:
        assert (entry.run_artifact_path, entry.artifacts_logged) == ("model", True)
    assert entry.attempts == 1
    # What the first push uploaded (and digested); the second push digests it again.
    staged = _digest.tree_digest(_digest.tree_records(entry.model_path))

    server.start()
    # What the interrupted push left behind: a complete model, and the version or not.
    if LOGGED_MODELS:
        from mlflow.entities import LoggedModelStatus

        assert vanilla(server).get_logged_model(entry.model_id).status == LoggedModelStatus.READY
    else:
        assert artifact_paths(server.uri, entry.run_id) == ["model"]
    left = versions_of(server)
    assert len(left) == versions_left
    assert all(v.tags[IDEMPOTENCY_TAG] == entry.key for v in left)
    if versions_left:
        assert vanilla(server).get_registered_model(NAME).aliases == {}

    pushed = rs.push_pending(client)

    assert [(v.name, v.version) for v in pushed] == [(NAME, 1)]
    assert pushed[0].tags[IDEMPOTENCY_TAG] == entry.key
    assert pushed[0].tags[DIGEST_TAG] == staged
    assert_outbox_empty(client)
    assert_registered_once(
        server, raw, model, X, params={"C": "1.0"}, metrics={"accuracy": model.score(X, y)}
    )
    assert rs.push_pending(client) == []
    assert len(versions_of(server)) == 1


# ================================================================================ trust


class HeaderProxy(_proxy.CountingProxy):
    """The counting proxy on a port chosen in advance, also recording Authorization headers."""

    def __init__(self, upstream: str, port: int) -> None:
        super().__init__(upstream)
        self.port = port
        self.authorizations: list[str | None] = []

    def start(self) -> HeaderProxy:
        proxy = self

        class Handler(_proxy._Handler):
            owner = proxy

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.authorizations.append(self.headers.get("Authorization"))
                super()._forward()

        server = ThreadingHTTPServer((_proxy.HOST, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="proxy", daemon=True)
        self._thread.start()
        return self


def test_an_entry_for_another_registry_is_pushed_only_by_a_client_for_it(
    server, tmp_path, monkeypatch
):
    """Their registry is a proxy (recording headers) in front of a real server."""
    cache = tmp_path / "cache"
    theirs = f"http://127.0.0.1:{free_port()}"  # nothing listens there yet: staged, not pushed
    staging_client = rs.RegistryClient(
        theirs.replace("http://", "http://alice:s3cret-pw@"),
        cache_dir=cache,
        timeout=2,
        max_retries=0,
    )
    X, y = dataset()

    @rs.register(NAME, alias=ALIAS, client=staging_client)
    def train(X, y, C: float = 1.0):
        return LogisticRegression(C=C).fit(X, y)

    with pytest.warns(rs.PendingRegistrationWarning):
        model = train(X, y)
    entry, raw = the_entry(staging_client)
    text = (entry.path / _outbox.ENTRY_FILE).read_text(encoding="utf-8")
    assert "s3cret-pw" not in text
    assert "alice" not in text
    assert (raw["tracking_uri"], raw["registry_uri"]) == (theirs, theirs)

    server.start()
    proxy = HeaderProxy(server.uri, int(theirs.rpartition(":")[2])).start()
    try:
        # The caller's own registry (an embedded store) and token: neither is theirs.
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-for-my-registry-only")
        own = rs.RegistryClient(f"sqlite:///{tmp_path / 'own.db'}", cache_dir=cache)
        with pytest.warns(rs.PendingRegistrationWarning) as caught:
            assert rs.push_pending(own) == []

        assert proxy.seen == []
        assert proxy.authorizations == []
        assert the_entry(own)[1] == raw, "the entry stays, untouched"
        [pending] = [w for w in caught if w.category is rs.PendingRegistrationWarning]
        message = str(pending.message)
        assert f"push_pending(RegistryClient('{theirs}'))" in message
        assert f"`registry --tracking-uri {theirs} push`" in message
        assert "s3cret-pw" not in message

        # A client for their registry pushes it, with credentials from the environment.
        monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pw")
        with rs.RegistryClient(theirs, cache_dir=cache, timeout=30, max_retries=1) as for_them:
            pushed = rs.push_pending(for_them)
    finally:
        proxy.stop()

    assert [(v.name, v.version, v.aliases) for v in pushed] == [(NAME, 1, (ALIAS,))]
    assert_outbox_empty(own)
    basic = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    assert proxy.seen
    assert set(proxy.authorizations) == {basic}
    assert_registered_once(server, raw, model, X, params={"C": "1.0"}, metrics={})

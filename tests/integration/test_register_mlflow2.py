"""``@register`` against real MLflow 2.x servers (2.22 and 2.9), which have no logged-models API.

Each server runs from its own environment (``_versions.ensure_mlflow_env``). A push to such a
server logs the model as run artifacts under ``model/`` and registers it from the run's
artifact URI, as MLflow 2's ``register_model("runs:/<run id>/model", ...)`` did; a scikit-learn
model is saved with cloudpickle, the format an MLflow 2.x client reads. What a test checks:

* one version, with the documented tags (the digest is that of what vanilla MLflow downloads,
  the ``registry_sdk.serialization`` tag says what the model was saved as), the alias, the
  run's params and metrics, and the source and run MLflow itself records; the same on the
  newest 3.x (a logged model there), each with proxied and with direct artifacts;
* that server's own MLflow client loads it with ``mlflow.pyfunc.load_model("models:/
  name@alias")`` and predicts what the trained model predicts; so does ``registry_sdk``, twice,
  each in a fresh process (cold, then from the cache the first filled);
* ``serialization=`` forces the format (and the tag records it);
* a push interrupted after the upload completes exactly once, and a model staged while the
  server is down is saved in the format that server's clients read;
* a proxy that hides ``/version`` in front of a 2.x server: the push finds the logged-models
  endpoint missing and falls back to the run's artifacts;
* what a 2.x client logs and registers loads through the SDK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

import _proxy
import mlflow
import mlflow.artifacts
import numpy as np
import pytest
import yaml
from _client_version import artifact_paths, download_artifacts
from _servers import PinnedServer
from _versions import (
    INSTALLED,
    NEW_2X,
    NEWEST_3X,
    OLD_2X,
    VERSIONS_TIMEOUT,
    ensure_mlflow_env,
    mlflow_for,
)
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import _digest, _outbox, _tags
from registry_sdk._capabilities import version_tuple

pytestmark = [pytest.mark.versions, pytest.mark.timeout(VERSIONS_TIMEOUT)]

P = _tags.PREFIX
SERIALIZATION = f"{P}serialization"
ALIAS = "prod"
SUBPROCESS_TIMEOUT = 300

RNG = np.random.default_rng(11)
X = RNG.normal(size=(60, 4))
Y = (X[:, 0] - 0.5 * X[:, 2] > 0).astype(np.int64)


class Affine:
    """A plain Python model: saved as a cloudpickle-backed pyfunc (this module by value)."""

    def __init__(self, weights: list[float], bias: float) -> None:
        # Plain floats: a NumPy 2 array pickled here would not load where MLflow 2.9 is
        # installed (it needs NumPy 1); that is the environment's mismatch, not the format's.
        self.weights = [float(w) for w in weights]
        self.bias = float(bias)

    def predict(self, data):
        return np.asarray(data) @ np.asarray(self.weights) + self.bias


def fit_sklearn(X, y, C: float = 1.0):
    model = LogisticRegression(C=C).fit(X, y)
    return model, {"accuracy": model.score(X, y)}


def fit_plain(X, y, bias: float = 0.5):  # noqa: ARG001 - data arguments, fingerprinted
    model = Affine([1.0, -2.0, 0.5, 0.25], bias)
    rs.log_metric("accuracy", 0.5)
    return model, {}


TRAINERS = {"sklearn": fit_sklearn, "plain": fit_plain}
PARAMS = {"sklearn": {"C": "1.0"}, "plain": {"bias": "0.5"}}
#: The tags every version carries here (the checkout's git tags come on top, when git is there).
TAGS = {
    f"{P}created_by",
    f"{P}code.function",
    f"{P}code.sha256",
    f"{P}env.python",
    f"{P}env.platform",
    f"{P}env.packages",
    f"{P}metrics.accuracy",
    f"{P}data.X",
    f"{P}data.y",
    f"{P}idempotency_key",
    f"{P}artifacts.sha256",
    f"{P}artifacts.files",
    SERIALIZATION,
    "team",
}
GIT_TAGS = {f"{P}git.commit", f"{P}git.branch", f"{P}git.dirty", f"{P}git.remote"}


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch):
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    while mlflow.active_run() is not None:  # a failed test must not leak its run
        mlflow.end_run("KILLED")
    mlflow.set_tracking_uri(previous)


def unique(label: str) -> str:
    return f"m2-{label}-{uuid.uuid4().hex[:8]}"


def make_client(uri: str, cache: Path, *, timeout: float = 30, retries: int = 1):
    return rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=cache, offline=False, timeout=timeout, max_retries=retries
    )


def vanilla(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions_of(uri: str, name: str) -> list:
    return list(vanilla(uri).search_model_versions(f"name = '{name}'"))


def downloaded(uri: str, name: str, version: str, into: Path) -> Path:
    """The version's files as vanilla MLflow downloads them (from get-download-uri)."""
    source = vanilla(uri).get_model_version_download_uri(name, version)
    return download_artifacts(source, into, uri)


def child_env(**extra: str) -> dict[str, str]:
    prefixes = ("MLFLOW_", "REGISTRY_SDK_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env.update(extra)
    return env


VANILLA_LOAD = textwrap.dedent(
    """\
    import sys
    import mlflow, mlflow.pyfunc, numpy as np
    model = mlflow.pyfunc.load_model(sys.argv[1])
    np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]))))
    print(mlflow.__version__)
    """
)
SDK_LOAD = textwrap.dedent(
    """\
    import json, sys
    import numpy as np, registry_sdk as rs
    model = rs.load_model(sys.argv[1])
    np.save(sys.argv[3], np.asarray(model.predict(np.load(sys.argv[2]))))
    print(json.dumps({"version": model.version.version, "path": str(model.path)}))
    """
)


def predict_elsewhere(python: Path | str, script: str, ref: str, tmp: Path, **env: str):
    """Run ``script`` (load ``ref``, predict on X) in a fresh process; (stdout, predictions)."""
    tmp.mkdir(parents=True, exist_ok=True)
    np.save(tmp / "X.npy", X)
    out = tmp / f"out-{uuid.uuid4().hex[:6]}.npy"
    proc = subprocess.run(
        [str(python), "-c", script, ref, str(tmp / "X.npy"), str(out)],
        cwd=tmp,  # not the checkout: nothing of the project is importable by accident
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1], np.load(out, allow_pickle=False)


def mlmodel(path: Path) -> dict:
    return yaml.safe_load((path / "MLmodel").read_text(encoding="utf-8"))


def server_python(version: str) -> Path:
    """The interpreter of that server's MLflow: this one for the installed version."""
    if version == INSTALLED:
        return Path(sys.executable)
    return ensure_mlflow_env(version) / "bin" / "python"


# ======================================================================= @register on 2.x


SERVER_KINDS = [
    pytest.param(NEW_2X, "proxied", id=f"{NEW_2X}-proxied"),
    pytest.param(NEW_2X, "direct", id=f"{NEW_2X}-direct"),
    pytest.param(OLD_2X, "proxied", id=f"{OLD_2X}-proxied"),
    pytest.param(OLD_2X, "direct", id=f"{OLD_2X}-direct"),
]
#: The 2.x servers and the newest 3.x, each with proxied and with direct artifacts.
EVERY_SERVER_KIND = [
    *SERVER_KINDS,
    pytest.param(NEWEST_3X, "proxied", id=f"{NEWEST_3X}-proxied"),
    pytest.param(NEWEST_3X, "direct", id=f"{NEWEST_3X}-direct"),
]


def logs_logged_models(server_version: str) -> bool:
    """Whether ``@register`` makes a logged model: the server and the installed client have it."""
    client_has_it = hasattr(mlflow.MlflowClient, "create_logged_model")
    return client_has_it and version_tuple(server_version) >= version_tuple("3.0.0")


def sklearn_format(server_version: str) -> str:
    """What a scikit-learn model is saved as: skops only where every reader loads it."""
    oldest = min(server_version, mlflow.__version__, key=version_tuple)
    return "skops" if version_tuple(oldest) >= version_tuple("3.8.1") else "cloudpickle"


def assert_registered_as_that_mlflow_would(version, uri, name, stored, run, written) -> None:
    """MLflow 3 (client and server): a logged model; else MLflow 2's run artifacts."""
    if logs_logged_models(version):
        # A logged model of the run; the version is registered from it.
        assert stored.source == f"models:/{written['model_id']}"
        logged = vanilla(uri).get_logged_model(written["model_id"])
        assert logged.source_run_id == run.info.run_id
        return
    # As register_model("runs:/<run id>/model") did: source, run artifacts, model history.
    assert stored.source == f"{run.info.artifact_uri}/model"
    assert vanilla(uri).get_model_version_download_uri(name, "1") == stored.source
    assert artifact_paths(uri, run.info.run_id) == ["model"]
    history = json.loads(run.data.tags["mlflow.log-model.history"])
    assert [(h["run_id"], h["artifact_path"]) for h in history] == [(run.info.run_id, "model")]
    assert written["artifact_path"] == "model"
    assert written.get("model_id") is None


def assert_loads_twice_in_fresh_processes(uri: str, ref: str, expected, tmp_path: Path) -> None:
    """``rs.load_model(ref)`` in two fresh processes sharing a cache: cold, then warm.

    The first fills the cache (verifying the digest); the second loads that entry as it is
    (the same files: nothing downloaded again).
    """
    loads = []
    for attempt in ("cold", "warm"):
        said, predicted = predict_elsewhere(
            sys.executable,
            SDK_LOAD,
            ref,
            tmp_path / f"sdk-{attempt}",
            MLFLOW_TRACKING_URI=uri,
            REGISTRY_SDK_CACHE_DIR=str(tmp_path / "sdk-cache"),
        )
        np.testing.assert_array_equal(predicted, expected)
        loaded = json.loads(said)
        mlmodel_file = Path(loaded["path"]) / "MLmodel"
        loads.append((loaded["version"], mlmodel_file, mlmodel_file.stat().st_ino))
    (first, cold_file, cold_inode), (second, warm_file, warm_inode) = loads
    assert first == second == 1
    assert (warm_file, warm_inode) == (cold_file, cold_inode), "the warm load downloaded again"


@pytest.mark.parametrize("kind", ["sklearn", "plain"])
@pytest.mark.parametrize(("version", "artifacts"), EVERY_SERVER_KIND)
def test_register_makes_one_version_that_loads_in_fresh_processes_and_in_the_servers_client(
    versioned_server, tmp_path, version, artifacts, kind
):
    server = versioned_server(version, artifacts=artifacts)
    client = make_client(server.uri, tmp_path / "cache")
    name = unique(kind)
    train = rs.register(name, alias=ALIAS, tags={"team": "growth"}, client=client)(TRAINERS[kind])

    model, metrics = train(X, Y)

    expected = np.asarray(model.predict(X))
    mv = train.last_version
    assert (mv.name, mv.version, mv.aliases) == (name, 1, (ALIAS,))
    [stored] = versions_of(server.uri, name)
    tags = dict(stored.tags)
    assert TAGS <= set(tags) <= TAGS | GIT_TAGS
    assert tags["team"] == "growth"
    saved_as = sklearn_format(version) if kind == "sklearn" else "cloudpickle"
    assert tags[SERIALIZATION] == saved_as
    if metrics:
        assert float(tags[f"{P}metrics.accuracy"]) == metrics["accuracy"]

    run = vanilla(server.uri).get_run(stored.run_id)
    assert stored.run_id == mv.run_id
    assert run.info.status == "FINISHED"
    assert run.data.params == PARAMS[kind]
    assert run.data.metrics == {"accuracy": pytest.approx(float(tags[f"{P}metrics.accuracy"]))}
    assert vanilla(server.uri).get_model_version_by_alias(name, ALIAS).version == "1"

    # The digest is that of exactly what vanilla MLflow downloads.
    files = downloaded(server.uri, name, "1", tmp_path / "download")
    assert tags[f"{P}artifacts.sha256"] == _digest.tree_digest(_digest.tree_records(files))
    written = mlmodel(files)
    assert written["run_id"] == run.info.run_id
    assert_registered_as_that_mlflow_would(version, server.uri, name, stored, run, written)
    if kind == "sklearn":
        assert written["flavors"]["sklearn"]["serialization_format"] == saved_as
        needs_skops = "skops" in (files / "requirements.txt").read_text(encoding="utf-8")
        assert needs_skops == (saved_as == "skops")

    # Before any vanilla load: with direct artifacts on this machine, a vanilla load of
    # models:/... writes MLflow's registered_model_meta file into the artifact store itself.
    assert_loads_twice_in_fresh_processes(server.uri, f"{name}@{ALIAS}", expected, tmp_path)

    # That server's own MLflow client, vanilla, in a fresh process.
    said, predicted = predict_elsewhere(
        server_python(version),
        VANILLA_LOAD,
        f"models:/{name}@{ALIAS}",
        tmp_path / "vanilla",
        MLFLOW_TRACKING_URI=server.uri,
    )
    assert said == version
    np.testing.assert_array_equal(predicted, expected)


def test_a_second_model_in_the_same_run_gets_its_own_artifact_path(versioned_server, tmp_path):
    """Two calls inside the user's own run: neither model overwrites the other."""
    server = versioned_server(NEW_2X)
    client = make_client(server.uri, tmp_path / "cache")
    name = unique("same-run")
    train = rs.register(name, client=client)(fit_sklearn)

    mlflow.set_tracking_uri(server.uri)
    with mlflow.start_run() as run:
        first, _ = train(X, Y, C=1.0)
        second, _ = train(X, Y, C=0.01)

    stored = sorted(versions_of(server.uri, name), key=lambda v: int(v.version))
    assert [v.run_id for v in stored] == [run.info.run_id] * 2
    base = run.info.artifact_uri
    assert stored[0].source == f"{base}/model"
    assert stored[1].source.startswith(f"{base}/model-")
    for mv, model in zip(stored, (first, second), strict=True):
        files = downloaded(server.uri, name, mv.version, tmp_path / f"v{mv.version}")
        digest = _digest.tree_digest(_digest.tree_records(files))
        assert mv.tags[f"{P}artifacts.sha256"] == digest
        loaded = rs.load_model(f"{name}/{mv.version}", client=client)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


# ======================================================================= serialization


@pytest.mark.parametrize(
    ("asked", "vanilla_2x_loads"),
    [
        pytest.param(
            "skops",
            False,
            marks=pytest.mark.skipif(
                version_tuple(mlflow.__version__) < version_tuple("3.8.1"),
                reason="the installed mlflow cannot write skops (3.8.1 and later can)",
            ),
        ),
        ("pickle", True),
        ("cloudpickle", True),
    ],
)
def test_serialization_forces_the_format_and_the_tag_records_it(
    versioned_server, tmp_path, asked, vanilla_2x_loads
):
    server = versioned_server(NEW_2X)
    client = make_client(server.uri, tmp_path / "cache")
    name = unique(f"forced-{asked}")
    train = rs.register(name, alias=ALIAS, client=client, serialization=asked)(fit_sklearn)

    model, _ = train(X, Y)

    [stored] = versions_of(server.uri, name)
    assert stored.tags[SERIALIZATION] == asked
    files = downloaded(server.uri, name, "1", tmp_path / "download")
    assert mlmodel(files)["flavors"]["sklearn"]["serialization_format"] == asked
    # registry_sdk reads every format the installed mlflow writes.
    loaded = rs.load_model(f"{name}@{ALIAS}", client=client)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    ref = f"models:/{name}@{ALIAS}"
    if vanilla_2x_loads:
        _, predicted = predict_elsewhere(
            server_python(NEW_2X), VANILLA_LOAD, ref, tmp_path / "v", MLFLOW_TRACKING_URI=server.uri
        )
        np.testing.assert_array_equal(predicted, model.predict(X))
    else:
        # Why skops is not the default on a 2.x server: its own clients cannot read it.
        proc = subprocess.run(
            [str(server_python(NEW_2X)), "-c", VANILLA_LOAD, ref, "X.npy", "out.npy"],
            cwd=tmp_path,
            env=child_env(MLFLOW_TRACKING_URI=server.uri),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
        assert proc.returncode != 0
        assert "Unrecognized serialization format: skops" in proc.stderr


# ======================================================================= the outbox on 2.x


@pytest.fixture
def pinned_2x(tmp_path: Path):
    """A 2.22 server pinned to one port (stopped and started again by the test), not started."""
    ensure_mlflow_env(NEW_2X)
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = PinnedServer("pinned-2x", f"sqlite:///{workdir / 'mlflow.db'}", workdir)
    server.mlflow = mlflow_for(NEW_2X)
    try:
        yield server
    finally:
        server.stop()


def _cut_before_version(monkeypatch, server):
    """The server dies after the artifacts are uploaded, before the version is created."""
    original = rs.RegistryClient.create_model

    def create_model(self, *args, **kwargs):
        server.stop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rs.RegistryClient, "create_model", create_model)


def _cut_reply_lost(monkeypatch, server):
    """The version is created, then the server dies before its reply arrives."""
    from registry_sdk._backends.rest import RestBackend

    original = RestBackend.create_version

    def create_version(self, *args, **kwargs):
        original(self, *args, **kwargs)
        server.stop()
        msg = "connection reset before the reply (simulated)"
        raise rs.RegistryUnavailableError(msg)

    monkeypatch.setattr(RestBackend, "create_version", create_version)


@pytest.mark.parametrize(
    ("cut", "versions_left"),
    [(_cut_before_version, 0), (_cut_reply_lost, 1)],
    ids=["after-upload", "reply-lost"],
)
def test_a_push_interrupted_after_the_upload_completes_exactly_once(
    pinned_2x, tmp_path, cut, versions_left
):
    server = pinned_2x.start(timeout=120)
    client = make_client(server.uri, tmp_path / "cache", timeout=5)
    name = unique("cut")
    train = rs.register(name, alias=ALIAS, client=client)(fit_sklearn)

    with pytest.MonkeyPatch.context() as mp:
        cut(mp, server)
        with pytest.warns(rs.PendingRegistrationWarning):
            model, _ = train(X, Y)
    assert not server.running, "the cut really happened during the push"
    [entry] = _outbox.pending(client.settings.cache_dir)
    assert (entry.run_artifact_path, entry.artifacts_logged, entry.model_id) == (
        "model",
        True,
        None,
    )
    staged = _digest.tree_digest(_digest.tree_records(entry.model_path))

    server.start(timeout=120)
    assert artifact_paths(server.uri, entry.run_id) == ["model"]
    assert len(versions_of(server.uri, name)) == versions_left

    pushed = rs.push_pending(client)

    assert [(v.name, v.version, v.aliases) for v in pushed] == [(name, 1, (ALIAS,))]
    [stored] = versions_of(server.uri, name)
    assert stored.tags[f"{P}idempotency_key"] == entry.key
    assert stored.tags[f"{P}artifacts.sha256"] == staged
    files = downloaded(server.uri, name, "1", tmp_path / "download")
    assert _digest.tree_digest(_digest.tree_records(files)) == staged
    assert _outbox.pending(client.settings.cache_dir) == []
    assert rs.push_pending(client) == []
    assert len(versions_of(server.uri, name)) == 1
    loaded = rs.load_model(f"{name}@{ALIAS}", client=client)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_model_staged_while_the_2x_server_is_down_is_saved_for_its_clients(pinned_2x, tmp_path):
    """The server's version, learnt by an earlier registration here, decides the format."""
    server = pinned_2x.start(timeout=120)
    cache = tmp_path / "cache"
    name = unique("down")
    rs.register(name, client=make_client(server.uri, cache))(fit_sklearn)(X, Y)

    server.stop()
    # A new client (as in a new training process): it cannot ask the server now.
    client = make_client(server.uri, cache, timeout=2)
    train = rs.register(name, alias=ALIAS, client=client)(fit_sklearn)
    with pytest.warns(rs.PendingRegistrationWarning):
        model, _ = train(X, Y, C=0.5)
    [entry] = _outbox.pending(cache)
    assert entry.tags[SERIALIZATION] == "cloudpickle"

    server.start(timeout=120)
    pushed = rs.push_pending(client)

    assert [(v.version, v.aliases) for v in pushed] == [(2, (ALIAS,))]
    _, predicted = predict_elsewhere(
        server_python(NEW_2X),
        VANILLA_LOAD,
        f"models:/{name}@{ALIAS}",
        tmp_path / "vanilla",
        MLFLOW_TRACKING_URI=server.uri,
    )
    np.testing.assert_array_equal(predicted, model.predict(X))


# ======================================================================= a hidden version


class HidingProxy(_proxy.CountingProxy):
    """The counting proxy, answering ``GET /version`` with a page of its own (404, HTML)."""

    def start(self) -> HidingProxy:
        proxy = self

        class Handler(_proxy._Handler):
            owner = proxy

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] == "/version":
                    body = b"<html><body>Not Found</body></html>"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                super().do_GET()

        server = ThreadingHTTPServer((_proxy.HOST, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self


def test_behind_a_proxy_hiding_the_version_the_missing_endpoint_is_found_and_avoided(
    versioned_server, tmp_path
):
    server = versioned_server(NEW_2X)
    proxy = HidingProxy(server.uri).start()
    try:
        client = make_client(proxy.uri, tmp_path / "cache")
        name = unique("hidden")
        train = rs.register(name, alias=ALIAS, client=client)(fit_sklearn)
        model, _ = train(X, Y)
        tried = [s.endpoint for s in proxy.seen if s.method == "POST"]
    finally:
        proxy.stop()

    # An MLflow 3 client tries the logged-models endpoint once; an MLflow 2 client has no such API.
    client_has_it = hasattr(mlflow.MlflowClient, "create_logged_model")
    assert tried.count("logged-models") == (1 if client_has_it else 0), tried
    [stored] = versions_of(server.uri, name)
    run = vanilla(server.uri).get_run(stored.run_id)
    assert stored.source == f"{run.info.artifact_uri}/model"
    # The version could not be learnt and was never seen here: the format every client reads.
    assert stored.tags[SERIALIZATION] == "cloudpickle"
    with tempfile.TemporaryDirectory() as tmp:
        _, predicted = predict_elsewhere(
            server_python(NEW_2X),
            VANILLA_LOAD,
            f"models:/{name}@{ALIAS}",
            Path(tmp),
            MLFLOW_TRACKING_URI=server.uri,
        )
    np.testing.assert_array_equal(predicted, model.predict(X))


# ======================================================================= the other direction

VANILLA_REGISTER = textwrap.dedent(
    """\
    import sys
    import mlflow, mlflow.sklearn, numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    X, y = np.load(sys.argv[2]), np.load(sys.argv[3])
    mlflow.set_tracking_uri(sys.argv[1])
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            LogisticRegression().fit(X, y), "model", registered_model_name=sys.argv[4]
        )
    MlflowClient().set_registered_model_alias(sys.argv[4], "prod", "1")
    print(mlflow.__version__)
    """
)


@pytest.mark.parametrize(("version", "artifacts"), SERVER_KINDS)
def test_what_a_2x_client_logs_and_registers_loads_through_the_sdk(
    versioned_server, tmp_path, version, artifacts
):
    server = versioned_server(version, artifacts=artifacts)
    name = unique("vanilla2x")
    work = tmp_path / "vanilla"
    work.mkdir()
    np.save(work / "X.npy", X)
    np.save(work / "y.npy", Y)
    proc = subprocess.run(
        [str(server_python(version)), "-c", VANILLA_REGISTER, server.uri, "X.npy", "y.npy", name],
        cwd=work,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == version  # logged by that MLflow 2.x client

    expected = LogisticRegression().fit(X, Y).predict(X)
    client = make_client(server.uri, tmp_path / "cache")
    mv = client.resolve(f"{name}@prod")
    assert _digest.DIGEST_TAG not in mv.tags  # registered by vanilla MLflow: no digest
    np.testing.assert_array_equal(client.load_model(f"{name}@prod").predict(X), expected)
    # In a fresh process too, and verified once sealed.
    assert client.seal(mv.ref).ok
    printed, predicted = predict_elsewhere(
        sys.executable,
        SDK_LOAD,
        f"{name}@prod",
        tmp_path / "fresh",
        MLFLOW_TRACKING_URI=server.uri,
        REGISTRY_SDK_CACHE_DIR=str(tmp_path / "fresh-cache"),
        REGISTRY_SDK_REQUIRE_DIGEST="1",
    )
    assert json.loads(printed)["version"] == 1
    np.testing.assert_array_equal(predicted, expected)

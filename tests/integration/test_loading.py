"""``load_model`` / ``pull`` and the model cache, against a real ``mlflow server``.

One server for the module (SQLite store, artifacts served by the server) holds models that
vanilla MLflow registered: RandomForests logged by ``mlflow.sklearn.log_model`` in its default
format (skops with MLflow 3 installed; cloudpickle with MLflow 2, which has no skops: see
``MODEL_FILE``). Each test has its own cache directory, so each starts cold. Requests are counted,
and faults injected, by a small proxy on loopback in front of the server (``_proxy.py``).

Every server, proxy and subprocess is stopped even when a test fails; waits are bounded by
pytest-timeout; there is no timed assertion.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pytest
from _client_version import MLFLOW_3, log_model_name
from _proxy import CountingProxy
from _servers import PinnedServer, pinned_sqlite_server
from sklearn.ensemble import RandomForestClassifier

import registry_sdk as rs
from registry_sdk._cache import FAST, MANIFEST, sha256_file
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(300)

#: The format ``mlflow.sklearn.log_model`` saves in by default, and the file it writes: skops
#: since MLflow 3 (the types it may build are given below); MLflow 2 has only the pickle formats.
SERIALIZATION, MODEL_FILE = ("skops", "model.skops") if MLFLOW_3 else ("cloudpickle", "model.pkl")
FORMAT_OPTIONS = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]} if MLFLOW_3 else {}
#: Given only to skip MLflow's requirement inference (slow); the format stays the default.
PIP = ["scikit-learn", "skops" if MLFLOW_3 else "cloudpickle"]
#: Names a user may give a model that are awkward as paths; MLflow accepts them all.
ODD_NAMES = ("modèle v1.2 ✓", ".hidden x", "a..b", "%2E%2E", "x.")
#: Variables that tell MLflow it runs under a test or in CI (it then disables its telemetry).
_TEST_OR_CI = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE")


@dataclass
class World:
    server: PinnedServer
    X: np.ndarray
    x_file: Path
    forests: dict[int, RandomForestClassifier]  # rf/1, rf/2
    files: dict[int, list[str]]  # artifact files of rf/<n>, as the server stores them
    remote: dict[int, str]  # rf/<n>'s path under the artifact API

    def expected(self, version: int) -> np.ndarray:
        return self.forests[version].predict(self.X)

    def server_file(self, version: int, name: str) -> Path:
        return self.server.artifacts_dir / self.remote[version] / name


def _clean_environment(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            mp.delenv(key)


def _register(server: PinnedServer, workdir: Path) -> World:
    rng = np.random.RandomState(0)
    X = rng.rand(300, 5)
    labels = {1: (X[:, 0] + X[:, 1] > 1).astype(int), 2: (X[:, 2] > 0.5).astype(int)}
    forests = {
        n: RandomForestClassifier(n_estimators=20, random_state=n, n_jobs=1).fit(X, y)
        for n, y in labels.items()
    }
    assert not np.array_equal(forests[1].predict(X), forests[2].predict(X))
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(server.uri)
    vanilla = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setup, not under test: MLflow's own advice
            uris = {}
            for n, forest in forests.items():
                with mlflow.start_run():
                    info = mlflow.sklearn.log_model(
                        forest, **log_model_name("model"), **FORMAT_OPTIONS, pip_requirements=PIP
                    )
                uris[n] = info.model_uri
            for name, sources in [
                ("rf", [1, 2]),
                ("pr", [1, 2, 1]),
                *[(odd, [1]) for odd in ODD_NAMES],
            ]:
                for n in sources:
                    mlflow.register_model(uris[n], name)
            vanilla.set_registered_model_alias("rf", "prod", "1")
            vanilla.set_registered_model_alias("pr", "prod", "1")
            files, remote = {}, {}
            for n in (1, 2):
                uri = vanilla.get_model_version_download_uri("rf", str(n))
                assert uri.startswith("mlflow-artifacts:/"), uri
                remote[n] = uri.removeprefix("mlflow-artifacts:").lstrip("/")
                folder = server.artifacts_dir / remote[n]
                files[n] = sorted(
                    p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                )
    finally:
        mlflow.set_tracking_uri(previous)
    assert MODEL_FILE in files[1], files[1]
    x_file = workdir / "X.npy"
    np.save(x_file, X)
    return World(server, X, x_file, forests, files, remote)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("loading")
    with pytest.MonkeyPatch.context() as mp:
        _clean_environment(mp)
        server = pinned_sqlite_server(workdir / "server", name="loading")
        try:
            server.start()
            yield _register(server, workdir)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    """No MLFLOW_* / REGISTRY_SDK_* variable leaks in; the module's server is up."""
    _clean_environment(monkeypatch)
    if not world.server.running:  # a test that stopped it failed to restart it
        world.server.start()


@pytest.fixture
def proxy(world: World) -> Iterator[CountingProxy]:
    with CountingProxy(world.server.uri) as counting:
        yield counting


def make_client(
    uri: str, cache: Path, *, timeout: float = 10, max_retries: int = 1
) -> rs.RegistryClient:
    return rs.RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=cache,
        offline=False,
        timeout=timeout,
        max_retries=max_retries,
    )


def flip_byte(path: Path, *, keep_mtime: bool = False) -> None:
    """Rewrite ``path`` with its middle byte changed (same size)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif path.stat().st_mtime_ns == before.st_mtime_ns:  # a coarse clock: within one tick
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def version_dir(client: rs.RegistryClient, name: str, version: int) -> Path:
    return cache_for(client).version_dir(name, version)


def cached_refs(client: rs.RegistryClient) -> list[str]:
    return sorted(entry.version.ref for entry in client.cached_versions())


def child_env(*, like_a_user: bool = False, **extra: str) -> dict[str, str]:
    """A subprocess environment with no MLFLOW_* / REGISTRY_SDK_* variable but ``extra``.

    ``like_a_user`` also drops the variables that make MLflow believe it runs under a test or
    in CI; otherwise MLflow's telemetry is switched off, as it would be under pytest.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))
    }
    if like_a_user:
        for key in _TEST_OR_CI:
            env.pop(key, None)
    else:
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def run_python(code: str, *args: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# ====================================================================== 1. requests per load


def test_warm_alias_load_makes_one_request_and_a_warm_version_load_none(world, proxy, tmp_path):
    client = make_client(proxy.uri, tmp_path / "cache")

    cold = rs.load_model("rf@prod", client=client)
    # What a cold load costs: resolve the alias (which describes the version: it is not asked
    # for again), its artifact location, list the artifacts, ask once for a presigned URL (this
    # server, over a local directory, has none: every file then goes through it), then one GET
    # per file.
    n_files = len(world.files[1])
    endpoints = proxy.endpoints()
    presigned = [e for e in endpoints if e.startswith("/api/2.0/mlflow-artifacts/presigned/")]
    assert [endpoints[e] for e in presigned] == [1], endpoints
    assert endpoints - Counter(presigned) == Counter(
        {
            "registered-models/alias": 1,
            "model-versions/get-download-uri": 1,
            "artifact-list": 1,
            "artifact-file": n_files,
        }
    ), f"a cold load costs {len(proxy.seen)} requests: {endpoints}"
    assert proxy.file_downloads() == Counter({f"{world.remote[1]}/{f}": 1 for f in world.files[1]})
    assert cached_refs(client) == ["rf/1"]
    np.testing.assert_array_equal(cold.predict(world.X), world.expected(1))

    proxy.clear()
    warm = rs.load_model("rf@prod", client=client)
    assert [s.endpoint for s in proxy.seen] == ["registered-models/alias"]
    np.testing.assert_array_equal(warm.predict(world.X), world.expected(1))

    proxy.clear()
    by_version = rs.load_model("rf/1", client=client)
    native = rs.load_model("rf/1", client=client, flavor="native")
    with make_client(proxy.uri, tmp_path / "cache") as fresh_client:  # a new session, same cache
        fresh = fresh_client.load_model("rf/1")
    assert proxy.seen == []
    for model in (by_version, native, fresh):
        np.testing.assert_array_equal(model.predict(world.X), world.expected(1))


def test_an_alias_that_moved_loads_the_new_version(world, proxy, tmp_path):
    client = make_client(proxy.uri, tmp_path / "cache")
    vanilla = mlflow.MlflowClient(tracking_uri=world.server.uri, registry_uri=world.server.uri)
    vanilla.set_registered_model_alias("rf", "canary", "1")
    try:
        np.testing.assert_array_equal(
            rs.load_model("rf@canary", client=client).predict(world.X), world.expected(1)
        )
        vanilla.set_registered_model_alias("rf", "canary", "2")
        proxy.clear()
        moved = rs.load_model("rf@canary", client=client)
        np.testing.assert_array_equal(moved.predict(world.X), world.expected(2))
        assert proxy.endpoints()["artifact-file"] == len(world.files[2])
        assert cached_refs(client) == ["rf/1", "rf/2"]
    finally:
        vanilla.delete_registered_model_alias("rf", "canary")


# ====================================================================== 2. server down, offline


def test_with_the_server_down_a_cached_alias_loads_with_a_warning_saying_how_old(world, tmp_path):
    client = make_client(world.server.uri, tmp_path / "cache", timeout=2, max_retries=1)
    rs.load_model("rf@prod", client=client)
    refs = cache_for(client).model_dir("rf") / "refs" / "prod"
    recorded = json.loads(refs.read_text(encoding="utf-8"))
    assert recorded["version"] == 1
    recorded["resolved_at"] = time.time() - 3 * 3600  # last resolved three hours ago
    refs.write_text(json.dumps(recorded), encoding="utf-8")

    world.server.stop()
    try:
        with pytest.warns(rs.StaleAliasWarning) as caught:
            stale = rs.load_model("rf@prod", client=client)
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "rf@prod" in message
        assert "version 1" in message
        assert "3.0 h ago" in message
        assert caught[0].filename == __file__  # points at the caller's line
        np.testing.assert_array_equal(stale.predict(world.X), world.expected(1))

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a version reference needs no registry: no warning
            np.testing.assert_array_equal(
                rs.load_model("rf/1", client=client).predict(world.X), world.expected(1)
            )
        with pytest.raises(rs.RegistryUnavailableError):
            rs.load_model("rf/2", client=client)  # never cached
        with pytest.raises(rs.RegistryUnavailableError):
            rs.load_model("rf@never-resolved", client=client)
        with pytest.raises(rs.RegistryUnavailableError):
            rs.pull("rf/2", client=client)
        assert cached_refs(client) == ["rf/1"]
    finally:
        world.server.start()


def test_offline_in_process_makes_no_request_and_refuses_what_is_not_cached(
    world, proxy, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    client = make_client(proxy.uri, cache)
    rs.load_model("rf@prod", client=client)
    proxy.clear()

    loaded = [
        rs.load_model("rf@prod", client=client, offline=True),
        rs.load_model("rf/1", client=client, offline=True, flavor="native"),
        client.with_offline(offline=True).load_model("rf@prod"),
    ]
    with pytest.raises(rs.OfflineError):
        rs.load_model("rf/2", client=client, offline=True)
    with pytest.raises(rs.OfflineError):
        rs.load_model("rf@other", client=client, offline=True)
    with pytest.raises(rs.OfflineError):
        client.with_offline(offline=True).pull("rf/2")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", proxy.uri)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(cache))
    monkeypatch.setenv("REGISTRY_SDK_OFFLINE", "1")
    loaded.append(rs.load_model("rf@prod"))
    with pytest.raises(rs.OfflineError):
        rs.load_model("rf/2")

    assert proxy.seen == []
    for model in loaded:
        np.testing.assert_array_equal(model.predict(world.X), world.expected(1))
    assert cached_refs(client) == ["rf/1"]


#: Before anything is imported: every way Python code reaches the network, recorded and
#: refused; what was recorded over the whole life of the process (exit handlers included, as
#: this one runs last) goes to the file named by the first argument.
GUARD = r"""
import atexit, json, socket, sys

attempts = []
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(attempts)))


def refuse(what):
    def refused(*args, **kwargs):
        attempts.append([what, repr(args)[:200]])
        raise OSError(f"the test forbids the network ({what})")
    return refused


socket.socket.connect = refuse("connect")
socket.socket.connect_ex = refuse("connect_ex")
socket.socket.sendto = refuse("sendto")
socket.create_connection = refuse("create_connection")
socket.getaddrinfo = refuse("getaddrinfo")
"""

OFFLINE_CHILD = (
    GUARD
    + r"""
import numpy as np
import registry_sdk as rs

X = np.load(sys.argv[2])
out = {}
# The cache holds only what rs.pull fetched: the first load goes through MLflow's loader.
out["alias"] = rs.load_model("rf@prod").predict(X).tolist()
out["version"] = rs.load_model("rf/1").predict(X).tolist()
out["native"] = rs.load_model("rf/1", flavor="native").predict(X).tolist()
for ref in ("rf/2", "rf@other"):
    try:
        rs.load_model(ref)
        out[ref] = "loaded"
    except rs.OfflineError:
        out[ref] = "OfflineError"
    except Exception as exc:
        out[ref] = repr(exc)
out["mlflow_imported"] = "mlflow" in sys.modules
print(json.dumps(out))
"""
)

#: The guard works: the same code online does reach for the network, and is recorded.
CONTROL_CHILD = (
    GUARD
    + r"""
import registry_sdk as rs

uri, cache = sys.argv[2:4]
client = rs.RegistryClient(uri, registry_uri=uri, cache_dir=cache, offline=False, max_retries=0)
try:
    client.get_version("rf", 1)
    print(json.dumps("reached the server"))
except rs.RegistryUnavailableError:
    print(json.dumps("RegistryUnavailableError"))
"""
)


def test_offline_opens_no_socket_at_all(world, tmp_path):
    cache = tmp_path / "cache"
    with make_client(world.server.uri, cache) as client:
        path = rs.pull("rf@prod", client=client)  # e.g. at image build time
    assert (path / "MLmodel").is_file()
    # The server stays up: any connection attempt would succeed, were it not refused. The
    # child looks like a user's process (MLflow's telemetry is on), with offline set by env.
    env = child_env(
        like_a_user=True,
        MLFLOW_TRACKING_URI=world.server.uri,
        REGISTRY_SDK_CACHE_DIR=str(cache),
        REGISTRY_SDK_OFFLINE="1",
    )
    attempts_file = tmp_path / "attempts.json"
    result = run_python(OFFLINE_CHILD, str(attempts_file), str(world.x_file), env=env)
    assert json.loads(attempts_file.read_text(encoding="utf-8")) == []
    assert result["mlflow_imported"] is True  # the first load did go through MLflow
    for key in ("alias", "version", "native"):
        assert result[key] == world.expected(1).tolist(), key
    assert result["rf/2"] == "OfflineError"
    assert result["rf@other"] == "OfflineError"

    control_file = tmp_path / "control.json"
    control = run_python(
        CONTROL_CHILD, str(control_file), world.server.uri, str(cache), env=child_env()
    )
    assert control == "RegistryUnavailableError"
    assert json.loads(control_file.read_text(encoding="utf-8")) != []


# ====================================================================== 3. integrity


def test_a_flipped_byte_is_fetched_again_online_and_refused_offline(world, proxy, tmp_path):
    client = make_client(proxy.uri, tmp_path / "cache")
    rs.load_model("rf/1", client=client)
    model_file = version_dir(client, "rf", 1) / "artifacts" / MODEL_FILE
    original = model_file.read_bytes()
    assert original == world.server_file(1, MODEL_FILE).read_bytes()

    flip_byte(model_file)
    proxy.clear()
    repaired = rs.load_model("rf/1", client=client)
    assert model_file.read_bytes() == original
    assert proxy.file_downloads()[f"{world.remote[1]}/{MODEL_FILE}"] == 1
    np.testing.assert_array_equal(repaired.predict(world.X), world.expected(1))
    assert client.verify_cache() == {}

    flip_byte(model_file)
    proxy.clear()
    with pytest.raises(rs.CacheIntegrityError, match=re.escape(MODEL_FILE)):
        rs.load_model("rf/1", client=client, offline=True)
    with pytest.raises(rs.CacheIntegrityError):
        rs.load_model("rf/1", client=client, offline=True, flavor="native")
    assert proxy.seen == []


def test_verify_cache_reports_what_the_cheap_check_misses_and_repair_evicts_it(
    world, proxy, tmp_path
):
    client = make_client(proxy.uri, tmp_path / "cache")
    rs.load_model("rf/1", client=client)
    rs.load_model("rf/2", client=client)
    assert client.verify_cache() == {}
    # Same size, same mtime: only a full hash can tell.
    flip_byte(version_dir(client, "rf", 2) / "artifacts" / MODEL_FILE, keep_mtime=True)

    assert client.verify_cache() == {"rf/2": [f"artifacts/{MODEL_FILE}"]}
    assert cached_refs(client) == ["rf/1", "rf/2"]  # reporting changes nothing
    assert client.verify_cache(repair=True) == {"rf/2": [f"artifacts/{MODEL_FILE}"]}
    assert cached_refs(client) == ["rf/1"]
    assert not version_dir(client, "rf", 2).exists()
    assert client.verify_cache() == {}
    with pytest.raises(rs.OfflineError):
        rs.load_model("rf/2", client=client, offline=True)
    proxy.clear()
    again = rs.load_model("rf/2", client=client)
    assert proxy.file_downloads()[f"{world.remote[2]}/{MODEL_FILE}"] == 1
    np.testing.assert_array_equal(again.predict(world.X), world.expected(2))


class TouchOnUnpickle:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_fast_form_is_never_unpickled(world, tmp_path):
    client = make_client(world.server.uri, tmp_path / "cache")
    rs.load_model("rf/1", client=client)
    vdir = version_dir(client, "rf", 1)
    fast = vdir / FAST / "native.pkl"
    manifest_file = vdir / MANIFEST
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    assert manifest["fast"]["file"] == f"{FAST}/native.pkl"

    # The payload works: unpickling it does create its marker.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(TouchOnUnpickle(control)))  # noqa: S301 - our own payload
    assert control.exists()

    marker = tmp_path / "marker"
    fast.write_bytes(pickle.dumps(TouchOnUnpickle(marker)))
    # A consistent forgery: every record now describes the planted file, its hash included.
    st = fast.stat()
    planted = sha256_file(fast)
    manifest["files"][f"{FAST}/native.pkl"] = {
        "sha256": planted,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }
    manifest["fast"]["sha256"] = planted
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    # Without the cache's key the manifest cannot be sealed again: it is refused.
    with pytest.raises(rs.CacheIntegrityError, match="seal does not match"):
        rs.load_model("rf/1", client=client, offline=True)
    assert client.verify_cache() == {"rf/1": ["manifest.json"]}
    assert not marker.exists()

    for kwargs in ({}, {"flavor": "native"}):  # online: fetched again whole, then loaded
        repaired = rs.load_model("rf/1", client=client, **kwargs)
        np.testing.assert_array_equal(repaired.predict(world.X), world.expected(1))
    assert not marker.exists()
    assert client.verify_cache() == {}


# ====================================================================== 4. many processes at once

CONCURRENT_LAUNCHER = r"""
import contextlib, json, os, pathlib, sys, time, traceback

uri, cache, go, x_file, ref, count, results, serialization = sys.argv[1:9]
# The imports are paid once, before forking: on a small machine they cost far more than the
# loads under test, and every loading process would pay them again.
import importlib
import numpy as np
import registry_sdk as rs
import mlflow.pyfunc, mlflow.sklearn, sklearn.ensemble
importlib.import_module({"skops": "skops.io"}.get(serialization, serialization))

with contextlib.suppress(Exception):  # MLflow's requirement check scans every installed package
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()

X = np.load(x_file)
pids = []
for _ in range(int(count)):
    pid = os.fork()
    if pid == 0:  # one loading process, with its own client, HTTP session and file locks
        status = 1
        try:
            while not pathlib.Path(go).exists():
                time.sleep(0.005)
            client = rs.RegistryClient(
                uri, registry_uri=uri, cache_dir=cache, offline=False, timeout=60, max_retries=2
            )
            predictions = rs.load_model(ref, client=client).predict(X).tolist()
            pathlib.Path(results, f"{os.getpid()}.json").write_text(json.dumps(predictions))
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    pids.append(pid)
print("ready", flush=True)
print(json.dumps({str(pid): os.waitpid(pid, 0)[1] for pid in pids}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the loading processes")
def test_eight_processes_loading_one_uncached_version_download_it_once(world, proxy, tmp_path):
    cache, go, results = tmp_path / "cache", tmp_path / "go", tmp_path / "results"
    results.mkdir()
    args = [proxy.uri, str(cache), str(go), str(world.x_file), "rf/2", "8", str(results)]
    args.append(SERIALIZATION)
    launcher = subprocess.Popen(
        [sys.executable, "-c", CONCURRENT_LAUNCHER, *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the launcher and its forks: one process group to kill
    )
    try:
        assert launcher.stdout is not None
        if launcher.stdout.readline().strip() != "ready":
            pytest.fail(f"the launcher did not start:\n{launcher.communicate()[1][-6000:]}")
        go.touch()  # the eight processes start loading at once
        out, err = launcher.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    assert launcher.returncode == 0, err[-6000:]
    statuses = json.loads(out.strip().splitlines()[-1])
    assert list(statuses.values()) == [0] * 8, err[-6000:]
    predictions = [json.loads(p.read_text(encoding="utf-8")) for p in results.iterdir()]
    assert len(predictions) == 8
    assert all(p == world.expected(2).tolist() for p in predictions)

    assert proxy.file_downloads() == Counter({f"{world.remote[2]}/{f}": 1 for f in world.files[2]})
    assert proxy.endpoints()["artifact-list"] == 1
    with make_client(proxy.uri, cache) as client:
        assert cached_refs(client) == ["rf/2"]
        assert client.verify_cache() == {}
        versions = version_dir(client, "rf", 2).parent
    assert sorted(p.name for p in versions.iterdir()) == ["2", "2.lock"]


# ====================================================================== 5. interrupted downloads


@pytest.mark.parametrize("keep_length", [True, False], ids=["content-length", "close-delimited"])
def test_a_body_cut_mid_stream_is_fetched_again(world, proxy, tmp_path, keep_length):
    remote_file = f"{world.remote[1]}/{MODEL_FILE}"
    size = world.server_file(1, MODEL_FILE).stat().st_size
    proxy.cut(f"/{MODEL_FILE}", after_bytes=size // 2, keep_length=keep_length)
    client = make_client(proxy.uri, tmp_path / "cache", max_retries=2)

    model = rs.load_model("rf/1", client=client)

    assert proxy.file_downloads()[remote_file] == 2  # cut once, fetched whole the second time
    entry = cache_for(client).get("rf", 1)
    assert entry is not None
    assert entry.check(full=True) == []
    for name in world.files[1]:
        cached = (entry.artifacts / name).read_bytes()
        assert cached == world.server_file(1, name).read_bytes(), name
    np.testing.assert_array_equal(model.predict(world.X), world.expected(1))


def test_a_body_cut_on_every_attempt_leaves_nothing_behind(world, proxy, tmp_path):
    size = world.server_file(1, MODEL_FILE).stat().st_size
    proxy.cut(f"/{MODEL_FILE}", after_bytes=size // 2, attempts=(1, 2, 3))
    client = make_client(proxy.uri, tmp_path / "cache", max_retries=2)

    with pytest.raises(rs.RegistryUnavailableError):
        rs.load_model("rf/1", client=client)

    assert proxy.file_downloads()[f"{world.remote[1]}/{MODEL_FILE}"] == 3
    assert cached_refs(client) == []
    versions = version_dir(client, "rf", 1).parent
    assert sorted(p.name for p in versions.iterdir()) == ["1.lock"]
    assert not list((tmp_path / "cache").rglob(MANIFEST))


SLOW_CHILD = r"""
import sys
import registry_sdk as rs

uri, cache = sys.argv[1:3]
client = rs.RegistryClient(
    uri, registry_uri=uri, cache_dir=cache, offline=False, timeout=120, max_retries=0
)
rs.load_model("rf/2", client=client)
print("loaded: the stall did not stall", flush=True)
"""


def test_a_process_killed_mid_download_leaves_no_visible_entry(world, proxy, tmp_path):
    cache = tmp_path / "cache"
    stall = proxy.stall(f"/{MODEL_FILE}", after_bytes=4096)
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_CHILD, proxy.uri, str(cache)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reached = stall.reached.wait(180)
        if not reached:
            child.kill()
        assert reached, child.communicate(timeout=30)
        client = make_client(proxy.uri, cache)
        versions = version_dir(client, "rf", 2).parent
        during = sorted(p.name for p in versions.iterdir())
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        with contextlib.suppress(ValueError):
            child.communicate()
    assert child.returncode == -signal.SIGKILL
    # The download was in progress, in a temporary directory beside the version's.
    assert [name for name in during if name.startswith(".tmp-2-")], during

    after = sorted(p.name for p in versions.iterdir())
    assert "2" not in after
    assert all(name.startswith(".tmp-2-") or name == "2.lock" for name in after), after
    assert not list(cache.rglob(MANIFEST))
    assert cached_refs(client) == []
    with pytest.raises(rs.OfflineError):
        rs.load_model("rf/2", client=client, offline=True)

    proxy.clear_faults()
    model = rs.load_model("rf/2", client=client)
    np.testing.assert_array_equal(model.predict(world.X), world.expected(2))
    assert cached_refs(client) == ["rf/2"]
    assert client.verify_cache() == {}


# ====================================================================== 6. vanilla MLflow models


def test_a_vanilla_random_forest_loads_as_pyfunc_and_native_and_predicts_the_same(world, tmp_path):
    original = world.forests[1]
    pyfunc_client = make_client(world.server.uri, tmp_path / "pyfunc")
    model = rs.load_model("rf@prod", client=pyfunc_client)
    assert isinstance(model, rs.LoadedModel)
    assert model.version.ref == "rf/1"
    assert model.path.is_relative_to(tmp_path / "pyfunc")
    assert model.metadata["flavors"]["sklearn"]["serialization_format"] == SERIALIZATION
    np.testing.assert_array_equal(model.predict(world.X), original.predict(world.X))
    assert isinstance(model.unwrap(), RandomForestClassifier)

    native_client = make_client(world.server.uri, tmp_path / "native")
    native = rs.load_model("rf/1", client=native_client, flavor="native")  # via mlflow.sklearn
    assert isinstance(native, RandomForestClassifier)
    np.testing.assert_array_equal(native.predict(world.X), original.predict(world.X))
    np.testing.assert_array_equal(native.predict_proba(world.X), original.predict_proba(world.X))

    # Both caches now hold the fast form.
    for client in (pyfunc_client, native_client):
        fast = cache_for(client).get("rf", 1)
        assert fast is not None
        assert fast.fast is not None
        assert fast.fast["kind"] == "predict"


FAST_CHILD = r"""
import json, sys

import numpy as np
import registry_sdk as rs

uri, cache, x_file = sys.argv[1:4]
X = np.load(x_file)
client = rs.RegistryClient(uri, registry_uri=uri, cache_dir=cache, offline=False, timeout=10)
pyfunc = rs.load_model("rf/1", client=client)
alias = rs.load_model("rf@prod", client=client)
native = rs.load_model("rf/1", client=client, flavor="native")
print(json.dumps({
    "backend": type(client.backend).__name__,
    "mlflow_imported": sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")),
    "pyfunc_type": type(pyfunc).__name__,
    "native_type": type(native).__name__,
    "pyfunc": pyfunc.predict(X).tolist(),
    "alias": alias.predict(X).tolist(),
    "native": native.predict(X).tolist(),
    "proba": native.predict_proba(X).tolist(),
}))
"""


def test_a_second_load_in_a_fresh_process_uses_the_fast_form_without_mlflow(world, tmp_path):
    cache = tmp_path / "cache"
    with make_client(world.server.uri, cache) as client:
        rs.load_model("rf@prod", client=client)  # the first load writes the fast form
    result = run_python(
        FAST_CHILD, world.server.uri, str(cache), str(world.x_file), env=child_env()
    )
    assert result["backend"] == "RestBackend"
    assert result["mlflow_imported"] == []
    assert result["pyfunc_type"] == "LoadedModel"
    assert result["native_type"] == "RandomForestClassifier"
    expected = world.expected(1).tolist()
    assert result["pyfunc"] == expected
    assert result["alias"] == expected
    assert result["native"] == expected
    assert np.array_equal(np.array(result["proba"]), world.forests[1].predict_proba(world.X))


# ====================================================================== 7. pull, prune, paths


def test_pull_returns_a_directory_mlflow_loads(world, proxy, tmp_path):
    client = make_client(proxy.uri, tmp_path / "cache")
    path = rs.pull("rf@prod", client=client)
    assert path == version_dir(client, "rf", 1) / "artifacts"
    assert path.is_relative_to(tmp_path / "cache")
    assert sorted(p.name for p in path.iterdir()) == world.files[1]
    vanilla = mlflow.pyfunc.load_model(str(path))
    np.testing.assert_array_equal(vanilla.predict(world.X), world.expected(1))
    proxy.clear()
    assert client.pull("rf/1") == path  # cached: no request
    assert proxy.seen == []


def test_prune_keeps_the_newest_version_and_every_cached_alias_target(world, tmp_path):
    client = make_client(world.server.uri, tmp_path / "cache")
    for ref in ("pr/1", "pr/2", "pr/3", "pr@prod", "rf/1", "rf/2"):
        rs.pull(ref, client=client)
    assert cached_refs(client) == ["pr/1", "pr/2", "pr/3", "rf/1", "rf/2"]

    assert sorted(client.prune_cache(keep=1)) == ["pr/2", "rf/1"]
    # pr/3 is the newest, pr/1 is where the cached pr@prod points.
    assert cached_refs(client) == ["pr/1", "pr/3", "rf/2"]
    assert client.prune_cache(keep=1) == []
    assert sorted(client.prune_cache(keep=0)) == ["pr/3", "rf/2"]
    assert cached_refs(client) == ["pr/1"]
    np.testing.assert_array_equal(
        rs.load_model("pr@prod", client=client, offline=True).predict(world.X), world.expected(1)
    )


def test_cached_files_are_private(world, tmp_path):
    cache = tmp_path / "fresh" / "cache"
    client = make_client(world.server.uri, cache)
    rs.load_model("rf@prod", client=client)  # a fill, an alias ref, a fast form
    rs.load_model("rf/2", client=client, flavor="native")
    paths = [cache, *cache.rglob("*")]
    assert any(p.name == "native.pkl" for p in paths)
    assert any(p.parent.name == "refs" for p in paths)
    wrong = {
        str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.lstat().st_mode))
        for p in paths
        if stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)
    }
    assert wrong == {}


def test_odd_model_names_stay_inside_the_cache_and_path_like_ones_are_refused(
    world, proxy, tmp_path
):
    outer = tmp_path / "outer"
    cache = outer / "cache"
    client = make_client(proxy.uri, cache)
    hostile = ["../evil/1", "../1", "a/../../b/1", "..@prod", "../../etc/passwd", "./1", "m/.."]
    for ref in hostile:
        with pytest.raises(rs.InvalidReferenceError):
            rs.load_model(ref, client=client)
        with pytest.raises(rs.InvalidReferenceError):
            rs.pull(ref, client=client)
    assert proxy.seen == []
    assert not outer.exists()

    for name in ODD_NAMES:
        model = rs.load_model(f"{name}/1", client=client)
        assert model.version.name == name
        np.testing.assert_array_equal(model.predict(world.X), world.expected(1))
    assert sorted(p.name for p in outer.iterdir()) == ["cache"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outer"]
    for path in cache.rglob("*"):
        assert not path.is_symlink(), path
        assert path.resolve().is_relative_to(cache.resolve()), path
    assert sorted(e.version.name for e in client.cached_versions()) == sorted(ODD_NAMES)
    model_dirs = {cache_for(client).model_dir(name) for name in ODD_NAMES}
    assert len(model_dirs) == len(ODD_NAMES)
    assert all(d.parent == cache_for(client).base for d in model_dirs)
    proxy.clear()
    for name in ODD_NAMES:  # each name finds its own entry again, and MLflow loads it
        rs.load_model(f"{name}/1", client=client, offline=True)
        vanilla = mlflow.pyfunc.load_model(str(rs.pull(f"{name}/1", client=client)))
        np.testing.assert_array_equal(vanilla.predict(world.X), world.expected(1))
    assert proxy.seen == []

"""Big files from ``@register`` go to the artifact store in parts, through a real server.

On the production shape (PostgreSQL + S3 on moto, proxied artifacts) the server opens an S3
multipart upload and hands out a presigned URL per part; the parts go to moto directly and the
server completes the upload. Over a local artifact directory (``mlflow_server_sqlite``) the
server says it takes no multipart upload, and the file goes whole through the server, as MLflow
sends it, asked once per server. A store that refuses a part gets the upload aborted and a typed
error, with nothing registered. MLflow's thresholds are lowered for the test through the
environment (5 MiB minimum and parts, S3's smallest part), so the model is about 11 MiB.

Nothing of the process's environment may change: the variables the test set are read, and
nothing is added or removed.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
from _client_version import download_artifacts
from _servers import MlflowServer

import registry_sdk as rs
from registry_sdk import _digest, _upload
from registry_sdk.errors import PermissionDeniedError
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _production import FaultProxy, ProductionStack

#: Fixture ``production`` (its helpers are imported inside functions: it is a plugin).
pytest_plugins = ["_production"]
pytestmark = pytest.mark.timeout(600)

MIB = 1 << 20
#: S3's smallest part (all but the last): the threshold and the part size of these tests.
PART = 5 * MIB
#: The model's payload: two whole parts and a short last one, once pickled.
PAYLOAD = 2 * PART + 700_000
PICKLE = "python_model.pkl"
#: A prefix of its own in the bucket for the server in front of a refusing store.
REFUSING_PREFIX = "refusing"
MPU_ROUTE = "/api/2.0/mlflow-artifacts/mpu"


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_* / REGISTRY_SDK_* of the caller; MLflow's multipart sizes at 5 MiB."""
    for key in [k for k in os.environ if k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(PART))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(PART))
    _upload.forget_servers()  # each test finds out what its server takes
    yield
    _upload.forget_servers()


def _environment() -> dict[str, str]:
    """The process's environment, less MLflow's telemetry session id.

    MLflow's telemetry thread removes that one on its own schedule, whenever its configuration
    cannot be fetched (no internet here), whatever the code under test does.
    """
    return {k: v for k, v in os.environ.items() if k != "_MLFLOW_TELEMETRY_SESSION_ID"}


def _trainer(name: str, client: rs.RegistryClient) -> Any:
    """A ``@register`` function whose model holds ``PAYLOAD`` random bytes made from ``seed``.

    The model predicts the payload's SHA-256 for every row: a load of a model missing a byte
    predicts something else.
    """

    @rs.register(name, client=client)
    def train(seed: int) -> Any:
        class Blob:  # defined here, so cloudpickle saves it by value
            def __init__(self, payload: bytes) -> None:
                self.payload = payload

            def predict(self, rows: Any) -> list[str]:
                import hashlib

                return [hashlib.sha256(self.payload).hexdigest()] * len(rows)

        return Blob(np.random.default_rng(seed).bytes(PAYLOAD)), {"seed": float(seed)}

    return train


def _expected(seed: int) -> str:
    return hashlib.sha256(np.random.default_rng(seed).bytes(PAYLOAD)).hexdigest()


def _client(uri: str, cache: Path) -> rs.RegistryClient:
    return rs.RegistryClient(uri, registry_uri=uri, cache_dir=cache, timeout=60, max_retries=2)


def _log_lines(path: Path, since: int) -> list[str]:
    """The lines a server wrote to its log after byte ``since``."""
    with path.open("rb") as log:
        log.seek(since)
        return log.read().decode("utf-8", "replace").splitlines()


def _requests(lines: list[str], method: str, route: str) -> list[str]:
    """Access-log lines of ``method`` requests to a path starting with ``route``."""
    return [line for line in lines if f'"{method} {route}' in line]


def _check_loads(uri: str, mv: rs.ModelVersion, cache: Path, seed: int, tmp: Path) -> None:
    """The version loads and verifies with registry_sdk, and vanilla MLflow gets its digest."""
    with _client(uri, cache) as client:
        recorded = client.get_version(mv.ref).tags[_digest.DIGEST_TAG]
        loaded = client.load_model(mv.ref)
        assert list(loaded.predict([[0], [1]])) == [_expected(seed)] * 2
        entry = cache_for(client).get(mv.name, mv.version)
        assert entry is not None
        assert entry.digest_verified
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    location = vanilla.get_model_version_download_uri(mv.name, str(mv.version))
    got = download_artifacts(location, tmp / "vanilla", uri)
    assert (got / PICKLE).stat().st_size > 2 * PART
    assert _digest.tree_digest(_digest.tree_records(got)) == recorded


# ------------------------------------------------------------------------------ S3: in parts


@pytest.mark.postgres
def test_register_uploads_a_big_file_in_parts_straight_to_s3(
    production: ProductionStack, tmp_path: Path
) -> None:
    from _production import BUCKET

    server_log = production.server.log_path
    moto_log = production.moto.log_path
    server_since, moto_since = server_log.stat().st_size, moto_log.stat().st_size
    environment = _environment()
    name = f"mpu-{uuid.uuid4().hex[:8]}"

    with _client(production.uri, tmp_path / "writer") as client:
        train = _trainer(name, client)
        train(11)
    mv = train.last_version
    assert mv is not None
    assert _environment() == environment

    server = _log_lines(server_log, server_since)
    assert len(_requests(server, "POST", f"{MPU_ROUTE}/create/")) == 1
    assert len(_requests(server, "POST", f"{MPU_ROUTE}/complete/")) == 1
    assert not _requests(server, "POST", f"{MPU_ROUTE}/abort/")
    # The big file never went through the server; the small ones did.
    puts = _requests(server, "PUT", "/api/2.0/mlflow-artifacts/artifacts/")
    assert puts
    assert not [line for line in puts if f"/{PICKLE} " in line]
    # moto took three parts of it, each a PUT of a presigned URL.
    moto = _log_lines(moto_log, moto_since)
    parts = [
        line for line in moto if re.search(rf'"PUT /{BUCKET}/\S*/{PICKLE}\?\S*partNumber=', line)
    ]
    assert len(parts) == 3, parts
    keys = [k for k in production.s3_keys() if k.endswith(f"/{PICKLE}")]
    sizes = {
        k: production.moto.s3().head_object(Bucket=BUCKET, Key=k)["ContentLength"] for k in keys
    }
    assert any(size > 2 * PART for size in sizes.values()), sizes

    _check_loads(production.uri, mv, tmp_path / "reader", 11, tmp_path)
    assert _environment() == environment


@pytest.mark.postgres
def test_multipart_set_false_by_the_user_sends_the_file_whole(
    production: ProductionStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    server_log = production.server.log_path
    since = server_log.stat().st_size
    name = f"mpu-off-{uuid.uuid4().hex[:8]}"

    with _client(production.uri, tmp_path / "writer") as client:
        train = _trainer(name, client)
        train(12)
    mv = train.last_version
    assert mv is not None

    server = _log_lines(server_log, since)
    assert not _requests(server, "POST", MPU_ROUTE)
    assert [line for line in server if f"/{PICKLE} HTTP" in line and '"PUT ' in line]
    _check_loads(production.uri, mv, tmp_path / "reader", 12, tmp_path)


# ------------------------------------------------------------------------------ local: whole


def test_over_a_local_artifact_directory_the_file_goes_whole_and_the_server_is_asked_once(
    mlflow_server_sqlite: MlflowServer, tmp_path: Path
) -> None:
    server = mlflow_server_sqlite
    since = server.log_path.stat().st_size
    environment = _environment()
    name = f"mpu-local-{uuid.uuid4().hex[:8]}"

    with _client(server.uri, tmp_path / "writer") as client:
        train = _trainer(name, client)
        train(13)
        first = train.last_version
        train(14)
        second = train.last_version
    assert first is not None
    assert second is not None
    assert _environment() == environment

    # This test's requests only: the server is shared with other tests.
    ours = {v.run_id for v in (first, second)} | {
        v.source.removeprefix("models:/") for v in (first, second)
    }
    lines = [
        line
        for line in _log_lines(server.log_path, since)
        if any(mark and mark in line for mark in ours)
    ]
    # Asked once: the answer (501, "not supported for the current artifact repository") is
    # remembered for the server, and the second model's file goes whole at once.
    creates = _requests(lines, "POST", f"{MPU_ROUTE}/create/")
    assert len(creates) == 1, creates
    assert " 501 " in creates[0]
    whole = [line for line in _requests(lines, "PUT", "/api/2.0/") if f"/{PICKLE} " in line]
    assert len(whole) == 2, whole
    stored = [
        path
        for path in server.artifacts_dir.rglob(PICKLE)
        if any(mark and mark in path.as_posix() for mark in ours)
    ]
    assert len(stored) == 2
    assert all(path.stat().st_size > 2 * PART for path in stored)

    _check_loads(server.uri, first, tmp_path / "reader", 13, tmp_path / "first")
    _check_loads(server.uri, second, tmp_path / "reader", 14, tmp_path / "second")


# ------------------------------------------------------------------------------ store failures


class _S3BehindProxy(MlflowServer):
    """An ``mlflow server`` (SQLite) whose artifacts go to moto through a :class:`FaultProxy`.

    The presigned URLs it hands out name the proxy, so the client's part uploads cross it too.
    """

    def __init__(self, workdir: Path, endpoint: str) -> None:
        from _production import AWS_DUMMY_ENV

        super().__init__("refusing-store", f"sqlite:///{workdir / 'mlflow.db'}", workdir)
        self.extra_env.update(AWS_DUMMY_ENV)
        self.extra_env["MLFLOW_S3_ENDPOINT_URL"] = endpoint

    @property
    def artifacts_location(self) -> str:
        from _production import BUCKET

        return f"s3://{BUCKET}/{REFUSING_PREFIX}"


@pytest.fixture(scope="module")
def store_proxy(production: ProductionStack) -> Iterator[FaultProxy]:
    from _production import FaultProxy

    with FaultProxy(production.moto.uri) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxied_store_server(
    store_proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_S3BehindProxy]:
    server = _S3BehindProxy(tmp_path_factory.mktemp("refusing-store"), store_proxy.uri)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.postgres
def test_a_store_refusing_a_part_aborts_the_upload_and_nothing_is_registered(
    production: ProductionStack,
    store_proxy: FaultProxy,
    proxied_store_server: _S3BehindProxy,
    tmp_path: Path,
) -> None:
    from _production import BUCKET

    server = proxied_store_server
    since = server.log_path.stat().st_size
    environment = _environment()
    store_proxy.clear()
    refusal = store_proxy.error_burst(f"/{PICKLE}", method="PUT", attempts=None, status=403)
    name = f"mpu-refused-{uuid.uuid4().hex[:8]}"
    try:
        with _client(server.uri, tmp_path / "writer") as client:
            train = _trainer(name, client)
            with pytest.raises(PermissionDeniedError) as raised:
                train(15)
            assert train.last_version is None
            assert list(client.search_versions(name)) == []
    finally:
        store_proxy.clear_faults()
    assert _environment() == environment

    message = str(raised.value)
    assert "part" in message
    assert "HTTP 403" in message
    assert "aborted" in message
    assert "X-Amz-Signature" not in message
    assert refusal.hits >= 1
    lines = _log_lines(server.log_path, since)
    assert len(_requests(lines, "POST", f"{MPU_ROUTE}/create/")) == 1
    assert len(_requests(lines, "POST", f"{MPU_ROUTE}/abort/")) == 1
    assert not _requests(lines, "POST", f"{MPU_ROUTE}/complete/")
    # The server aborted it in the store: no upload left open, no object made of it.
    s3 = production.moto.s3()
    open_uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{REFUSING_PREFIX}/")
    assert not open_uploads.get("Uploads")
    keys = production.moto.keys(BUCKET, f"{REFUSING_PREFIX}/")
    assert not [k for k in keys if k.endswith(f"/{PICKLE}")]


@pytest.mark.postgres
def test_a_part_the_store_fails_once_is_sent_again(
    production: ProductionStack,
    store_proxy: FaultProxy,
    proxied_store_server: _S3BehindProxy,
    tmp_path: Path,
) -> None:
    from _production import BUCKET

    server = proxied_store_server
    since = server.log_path.stat().st_size
    store_proxy.clear()
    burst = store_proxy.error_burst(f"/{PICKLE}", method="PUT", attempts=(2,), status=503)
    name = f"mpu-retried-{uuid.uuid4().hex[:8]}"
    try:
        with _client(server.uri, tmp_path / "writer") as client:
            train = _trainer(name, client)
            train(16)
    finally:
        store_proxy.clear_faults()
    mv = train.last_version
    assert mv is not None
    assert burst.hits == 1
    part_puts = [s for s in store_proxy.seen if s.method == "PUT" and s.path.endswith(PICKLE)]
    assert len(part_puts) == 4  # three parts, one of them twice
    lines = _log_lines(server.log_path, since)
    assert len(_requests(lines, "POST", f"{MPU_ROUTE}/complete/")) == 1
    # Read back from moto itself: the fault proxy loses a HEAD reply's Content-Length, which
    # the server's presigned downloads read.
    location = mlflow.MlflowClient(server.uri, server.uri).get_model_version_download_uri(
        mv.name, str(mv.version)
    )
    assert location.startswith("mlflow-artifacts:/"), location
    prefix = f"{REFUSING_PREFIX}/{location.split(':', 1)[1].strip('/')}/"
    local = tmp_path / "from-s3"
    s3 = production.moto.s3()
    for key in production.moto.keys(BUCKET, prefix):
        target = local / key.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(BUCKET, key, str(target))
    assert (local / PICKLE).stat().st_size > 2 * PART
    with _client(server.uri, tmp_path / "reader") as client:
        recorded = client.get_version(mv.ref).tags[_digest.DIGEST_TAG]
    assert _digest.tree_digest(_digest.tree_records(local)) == recorded
    model = mlflow.pyfunc.load_model(str(local))
    assert list(model.predict([[0]])) == [_expected(16)]

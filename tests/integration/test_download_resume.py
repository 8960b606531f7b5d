"""Parallel and resumable downloads from a real ``mlflow server``'s artifact proxy.

Two stores: a local directory and the production shape, PostgreSQL + S3. MLflow 3.17's server
answers ``Range`` on the first (it sends the file itself) and ignores it on the second (it
copies the object to a temporary file, then streams all of it); MLflow 2 ignores it on both.
The client resumes where the server honours ``Range`` and starts the file over where it does
not. One model per store holds a 4 MiB file and many small ones, registered with vanilla
MLflow. A proxy in front of the server counts requests and body bytes,
cuts replies after N bytes, and records the most file GETs it answered at once.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pytest
import requests
from _client_version import MLFLOW_3, log_model_name

import registry_sdk as rs
from registry_sdk._cache import sha256_file
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _production import FaultProxy

pytest_plugins = ["_production"]
pytestmark = pytest.mark.timeout(300)

PRESIGNED_API = "/api/2.0/mlflow-artifacts/presigned"
BIG = "big.bin"
BIG_SIZE = 4 << 20
SMALL_FILES = 40


@dataclass
class Model:
    """A registered version on ``uri`` and the files it holds (relative path -> sha256)."""

    uri: str
    store: str
    name: str
    remote: str  # the version's path under the artifact API
    files: dict[str, str]
    big: str  # the big file's path below the version's artifacts

    @property
    def ref(self) -> str:
        return f"{self.name}/1"


def _register(uri: str, store: str, workdir: Path) -> Model:
    rng = np.random.default_rng(15)
    (workdir / "parts").mkdir(parents=True)
    (workdir / BIG).write_bytes(rng.bytes(BIG_SIZE))
    for i in range(SMALL_FILES):
        (workdir / "parts" / f"part-{i:02d}.bin").write_bytes(rng.bytes(1000 + 997 * i))
    name = f"resume-{uuid.uuid4().hex[:8]}"
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setup, not under test

            class _Echo(mlflow.pyfunc.PythonModel):  # defined here: MLflow may warn about it
                def predict(self, context, model_input: list[str], params=None) -> list[str]:  # noqa: ARG002
                    return model_input

            with mlflow.start_run():
                info = mlflow.pyfunc.log_model(
                    **log_model_name("model"),
                    python_model=_Echo(),
                    artifacts={"big": str(workdir / BIG), "parts": str(workdir / "parts")},
                    pip_requirements=[],
                )
            mlflow.register_model(info.model_uri, name)
        vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        location = vanilla.get_model_version_download_uri(name, "1")
        local = Path(mlflow.artifacts.download_artifacts(location, dst_path=str(workdir / "dl")))
    finally:
        mlflow.set_tracking_uri(previous)
    assert location.startswith("mlflow-artifacts:/"), location
    files = {
        p.relative_to(local).as_posix(): sha256_file(p) for p in local.rglob("*") if p.is_file()
    }
    big = next(path for path in files if path.endswith(f"/{BIG}"))
    assert len(files) > SMALL_FILES
    remote = location.removeprefix("mlflow-artifacts:").lstrip("/")
    return Model(uri, store, name, remote, files, big)


@pytest.fixture(
    scope="module",
    params=["local", pytest.param("s3", marks=pytest.mark.postgres)],
)
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Model:
    if request.param == "local":
        uri = request.getfixturevalue("mlflow_server_sqlite").uri
    else:
        uri = request.getfixturevalue("production").uri
    return _register(uri, request.param, tmp_path_factory.mktemp(f"resume-{request.param}"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))]:
        monkeypatch.delenv(key)


@pytest.fixture
def proxy(model: Model) -> Iterator[FaultProxy]:
    from _production import FaultProxy

    with FaultProxy(model.uri) as faulty:
        yield faulty


def via(proxy: FaultProxy, cache: Path, **settings: Any) -> rs.RegistryClient:
    """A client through the proxy; files through the server unless the test says otherwise."""
    settings.setdefault("max_retries", 2)
    settings.setdefault("direct_download_min_bytes", 0)
    return rs.RegistryClient(proxy.uri, cache_dir=cache, offline=False, timeout=30, **settings)


def honours_range(model: Model) -> bool:
    """Whether the server answers ``Range`` on this store (asked directly, without the proxy)."""
    url = f"{model.uri}/api/2.0/mlflow-artifacts/artifacts/{model.remote}/{model.big}"
    with requests.get(url, headers={"Range": "bytes=1-"}, stream=True, timeout=60) as reply:
        return reply.status_code == 206


def cached_files(client: rs.RegistryClient, model: Model) -> dict[str, str]:
    """Relative path -> sha256 of the cache entry's artifacts, as its manifest records them."""
    entry = cache_for(client).get(model.name, 1)
    assert entry is not None
    return {
        rel.removeprefix("artifacts/"): record.sha256
        for rel, record in entry.files.items()
        if rel.startswith("artifacts/")
    }


@pytest.mark.parametrize("keep_length", [True, False], ids=["content-length", "close-delimited"])
def test_a_file_cut_at_half_is_resumed_and_only_about_half_crosses_the_wire_again(
    model, proxy, tmp_path, keep_length
):
    remote = f"{model.remote}/{model.big}"
    proxy.cut(model.big, after_bytes=BIG_SIZE // 2, attempts=(1,), keep_length=keep_length)

    with via(proxy, tmp_path / "cache") as client:
        client.pull(model.ref)
        assert client.verify_cache() == {}
        assert cached_files(client, model) == model.files

    assert proxy.file_downloads()[remote] == 2
    first, second = [s for s in proxy.seen if s.path.endswith(f"/{model.big}")]
    assert first.range is None
    found = re.fullmatch(r"bytes=(\d+)-", second.range or "")
    assert found is not None, second.range
    again = proxy.bytes_sent()[remote] - BIG_SIZE // 2
    honoured = honours_range(model)
    if MLFLOW_3 and model.store == "local":
        assert honoured
    if honoured:  # only the rest is sent again
        assert again == BIG_SIZE - int(found[1])
        assert again <= 0.6 * BIG_SIZE
    else:  # the whole file again, written from the start (the cache entry verified above)
        assert again == BIG_SIZE


def test_parallel_and_one_at_a_time_downloads_give_the_same_verified_entry(model, proxy, tmp_path):
    entries = {}
    for workers in (1, 8):
        proxy.clear()
        proxy.peak_file_gets = 0
        with via(proxy, tmp_path / f"cache-{workers}", download_workers=workers) as client:
            client.pull(model.ref)
            assert client.verify_cache() == {}
            entries[workers] = cached_files(client, model)
        assert sum(proxy.file_downloads().values()) == len(model.files)  # each file once
        peak = proxy.peak_file_gets
        assert peak == 1 if workers == 1 else 1 < peak <= workers

    assert entries[1] == entries[8] == model.files


def store_range_gets(request: pytest.FixtureRequest, since: int) -> list[str]:
    """The S3 server's log lines, after byte ``since``, of ranged GETs (206) of the big file."""
    log = request.getfixturevalue("production").moto.log_path
    with log.open("rb") as fh:
        fh.seek(since)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    return [line for line in lines if '"GET ' in line and f"/{BIG}?" in line and '" 206' in line]


def moto_log_size(request: pytest.FixtureRequest, model: Model) -> int:
    if model.store != "s3":
        return 0
    return request.getfixturevalue("production").moto.log_path.stat().st_size


def test_a_big_file_comes_straight_from_the_store_where_the_server_hands_out_presigned_urls(
    model, proxy, tmp_path, request
):
    """MLflow 3 over S3 presigns: the file skips the server. Elsewhere: one refused request."""
    remote = f"{model.remote}/{model.big}"
    since = moto_log_size(request, model)

    with via(proxy, tmp_path / "cache", direct_download_min_bytes=BIG_SIZE // 2) as client:
        client.pull(model.ref)
        assert client.verify_cache() == {}
        assert cached_files(client, model) == model.files

    presigned = [s for s in proxy.seen if s.path.startswith(PRESIGNED_API + "/")]
    assert len(presigned) == 1  # the one file above the threshold
    downloads = proxy.file_downloads()
    others = {f"{model.remote}/{path}" for path in model.files} - {remote}
    assert all(downloads[path] == 1 for path in others)  # the small files: through the server
    if MLFLOW_3 and model.store == "s3":
        assert downloads[remote] == 0  # not one byte of it through the server
        ranges = store_range_gets(request, since)
        # Ranged GETs straight from the store; split into more only when one is slow
        # (test_direct_download.py shows the split).
        assert len(ranges) >= 1, ranges
    else:  # MLflow 2 (404), or a local directory (501): through the server, as before
        assert downloads[remote] == 1


def test_without_presigned_urls_every_file_above_the_threshold_costs_one_request_in_all(
    model, proxy, tmp_path
):
    """The server's refusal is remembered by the client: one wasted request, not one per file."""
    if MLFLOW_3 and model.store == "s3":
        pytest.skip("this store hands out presigned URLs")
    with via(proxy, tmp_path / "cache", direct_download_min_bytes=1) as client:
        client.pull(model.ref)
        assert client.verify_cache() == {}
    presigned = [s for s in proxy.seen if s.path.startswith(PRESIGNED_API + "/")]
    assert len(presigned) == 1  # every file is above the threshold; one asked
    assert sum(proxy.file_downloads().values()) == len(model.files)

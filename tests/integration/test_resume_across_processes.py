"""A download cut short goes on in the next process, or the next call, from where it stopped.

Against a real ``mlflow server`` whose artifact proxy serves a local directory (MLflow 3
answers ``Range`` there), through a proxy that counts the body bytes it sends back. The
versions carry the digest ``registry_sdk`` records at registration: only a download whose
result that digest verifies is resumed.

* A process pulling a 1 GiB version is killed (SIGKILL) at about half; a fresh process pulls
  again and only the rest crosses the wire.
* A pull that runs out of retries keeps what it got; the next call goes on from there.
* Bytes changed in what was kept do not verify: the version is downloaded again, whole.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from mlflow import MlflowClient

import registry_sdk as rs
from registry_sdk._backends.rest import ARTIFACTS_API
from registry_sdk._digest import digest_tags, sha256_file, tree_records
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _production import FaultProxy
    from _proxy import CountingProxy

pytest_plugins = ["_production"]
pytestmark = pytest.mark.timeout(600)

GIB = 1 << 30
SMALL = 16 << 20
BLOB = "blob.bin"


@dataclass
class Version:
    """A registered version holding one big file."""

    uri: str
    name: str
    size: int
    sha256: str
    remote: str  # the big file's path under the artifact API

    @property
    def ref(self) -> str:
        return f"{self.name}/1"


def _register(uri: str, workdir: Path, size: int) -> Version:
    """Log a folder with ``size`` random bytes in one file and register it with its digest."""
    model = workdir / "model"
    model.mkdir(parents=True)
    (model / "MLmodel").write_text("artifact_path: model\nflavors: {}\n", encoding="utf-8")
    rng = np.random.default_rng(size)
    with (model / BLOB).open("wb") as fh:
        for start in range(0, size, 64 << 20):
            fh.write(rng.bytes(min(64 << 20, size - start)))
    tags = digest_tags(tree_records(model))
    digest = sha256_file(model / BLOB)
    vanilla = MlflowClient(tracking_uri=uri)
    experiment = vanilla.create_experiment(f"resume-{uuid.uuid4().hex[:8]}")
    run = vanilla.create_run(experiment)
    vanilla.log_artifacts(run.info.run_id, str(model), "model")
    vanilla.set_terminated(run.info.run_id)
    (model / BLOB).unlink()  # the server holds it now; spare the disk
    name = f"resume-{uuid.uuid4().hex[:8]}"
    with rs.RegistryClient(uri) as client:
        client.create_model(name)
        client.create_version(
            name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags=tags
        )
        location = client.backend.get_download_uri(name, 1)
    assert location.startswith("mlflow-artifacts:/"), location
    remote = f"{location.removeprefix('mlflow-artifacts:').lstrip('/')}/{BLOB}"
    return Version(uri, name, size, digest, remote)


@pytest.fixture(scope="module")
def big(mlflow_server_sqlite: Any, tmp_path_factory: pytest.TempPathFactory) -> Version:
    return _register(mlflow_server_sqlite.uri, tmp_path_factory.mktemp("big"), GIB)


@pytest.fixture(scope="module")
def small(mlflow_server_sqlite: Any, tmp_path_factory: pytest.TempPathFactory) -> Version:
    return _register(mlflow_server_sqlite.uri, tmp_path_factory.mktemp("small"), SMALL)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))]:
        monkeypatch.delenv(key)


@pytest.fixture
def proxy(mlflow_server_sqlite: Any) -> Iterator[FaultProxy]:
    from _production import FaultProxy

    with FaultProxy(mlflow_server_sqlite.uri) as faulty:
        yield faulty


def cached_blob(client: rs.RegistryClient, version: Version) -> str:
    """The sha256 the cache entry's manifest records for the big file (after verifying it)."""
    assert client.verify_cache() == {}
    entry = cache_for(client).get(version.name, 1)
    assert entry is not None
    return entry.files[f"artifacts/{BLOB}"].sha256


def resumed_from(proxy: CountingProxy, version: Version) -> list[int]:
    """Where each GET of the big file started (0: the whole file)."""
    starts = []
    for seen in proxy.seen:
        if seen.path == f"{ARTIFACTS_API}/{version.remote}":
            found = re.fullmatch(r"bytes=(\d+)-", seen.range or "bytes=0-")
            assert found is not None, seen.range
            starts.append(int(found[1]))
    return starts


@pytest.fixture
def counting(mlflow_server_sqlite: Any) -> Iterator[CountingProxy]:
    """A proxy that passes a file's body on as it comes, counting it (no faults)."""
    from _proxy import CountingProxy

    with CountingProxy(mlflow_server_sqlite.uri) as counter:
        yield counter


def test_a_1_gib_pull_killed_at_half_goes_on_in_the_next_process(big, counting, tmp_path):
    proxy = counting
    cache = tmp_path / "cache"
    pull = [
        sys.executable,
        "-c",
        (
            "import sys, registry_sdk as rs; "
            "rs.RegistryClient(sys.argv[1], cache_dir=sys.argv[2]).pull(sys.argv[3])"
        ),
        proxy.uri,
        str(cache),
        big.ref,
    ]
    process = subprocess.Popen(pull, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while proxy.bytes_sent()[big.remote] < big.size // 2:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the first pull never got half-way"
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait(timeout=60)
        if process.stderr is not None:
            process.stderr.close()
    assert process.returncode == -9
    first = proxy.bytes_sent()[big.remote]
    assert first < big.size

    proxy.clear()
    with rs.RegistryClient(proxy.uri, cache_dir=cache) as client:
        client.pull(big.ref)
        assert cached_blob(client, big) == big.sha256
    again = proxy.bytes_sent()[big.remote] - first
    (start,) = resumed_from(proxy, big)
    assert start >= 0.4 * big.size  # the second process went on from what the first wrote
    assert again == big.size - start
    assert again <= 0.6 * big.size
    leftovers = [p.name for p in cache.rglob(".tmp-*")]
    assert leftovers == []


def flaky(proxy: FaultProxy, cache: Path) -> rs.RegistryClient:
    """A client with no retries (a cut that got further still costs none), no presigned URL."""
    return rs.RegistryClient(proxy.uri, cache_dir=cache, max_retries=0, direct_download_min_bytes=0)


def cut_then_down(proxy: FaultProxy) -> None:
    """The file's first reply is cut at half; every later one is a 503, until cleared."""
    proxy.cut(BLOB, after_bytes=SMALL // 2, attempts=(1,))
    proxy.error_burst(f"/{BLOB}", method="GET", attempts=range(2, 100), status=503)


def test_a_pull_out_of_retries_keeps_its_bytes_for_the_next_call(small, proxy, tmp_path):
    cut_then_down(proxy)
    with flaky(proxy, tmp_path / "cache") as client:
        with pytest.raises(rs.RegistryUnavailableError):
            client.pull(small.ref)
        assert cache_for(client).get(small.name, 1) is None  # nothing half-made is an entry
        proxy.clear_faults()
        client.pull(small.ref)
        assert cached_blob(client, small) == small.sha256

    first, refused, second = resumed_from(proxy, small)
    assert first == 0
    assert refused == second  # the 503 to the try that went on from the cut
    assert SMALL // 4 < second <= SMALL // 2
    assert proxy.bytes_sent()[small.remote] == SMALL // 2 + SMALL - second


def test_kept_bytes_that_were_changed_do_not_verify_and_the_version_comes_again_whole(
    small, proxy, tmp_path
):
    cache = tmp_path / "cache"
    cut_then_down(proxy)
    with flaky(proxy, cache) as client:
        with pytest.raises(rs.RegistryUnavailableError):
            client.pull(small.ref)
        proxy.clear_faults()
        (partial,) = cache.rglob(f"{BLOB}.incomplete")
        with partial.open("r+b") as fh:  # one byte of what was kept, flipped
            fh.seek(1000)
            byte = fh.read(1)
            fh.seek(1000)
            fh.write(bytes([byte[0] ^ 0xFF]))
        client.pull(small.ref)
        assert cached_blob(client, small) == small.sha256

    first, _refused, resumed, again = resumed_from(proxy, small)
    assert first == again == 0
    assert resumed > 0  # went on from the kept bytes; they did not verify: fetched whole again

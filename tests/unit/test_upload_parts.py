"""Uploads to a server's artifact proxy: the range reader, and what only a fake server can answer.

The integration tests (tests/integration/test_multipart_upload.py) send files in parts to a
real server over S3 and whole to one over a local directory. Here a ``responses`` mock stands
for what no real server answers on demand: an older server without the multipart routes, a
reply handing out unusable URLs; and it shows what each request carries (the server's token
goes to the server only, never to the store). No request leaves the process.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from _rest_fakes import mock_http

from registry_sdk import _upload
from registry_sdk._upload import ProxiedUploader, RangeReader
from registry_sdk.errors import ConfigurationError, InvalidResponseError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SERVER = "http://mlflow.invalid"
STORE = "http://store.invalid"
ROOT = "1/models/m-1/artifacts"
LOCATION = f"{SERVER}/api/2.0/mlflow-artifacts/artifacts/{ROOT}"
MPU = f"{SERVER}/api/2.0/mlflow-artifacts/mpu"
TOKEN = "tok-3c1f-for-the-server-only"
PART = 1000
CONTENT = bytes(range(251)) * 12  # 3012 bytes: three whole parts and a short fourth


@pytest.fixture(autouse=True)
def mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's variables as a user would set them; no server remembered from another test."""
    for key in [k for k in os.environ if k.upper().startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(2 * PART))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(PART))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    _upload.forget_servers()
    yield
    _upload.forget_servers()


# ------------------------------------------------------------------------------ range reader


def test_the_range_reader_announces_its_length_and_reads_only_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    with RangeReader(path, 1000, 1000, threading.Event()) as reader:
        assert len(reader) == 1000
        got = []
        while block := reader.read(300):
            assert len(block) <= 300
            got.append(block)
        assert [len(b) for b in got] == [300, 300, 300, 100]
        assert b"".join(got) == CONTENT[1000:2000]
        assert reader.read(300) == b""  # never a byte past the range
        assert len(reader) == 1000


def test_the_range_reader_reads_the_rest_of_its_range_at_most(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    with RangeReader(path, 3000, 12, threading.Event()) as reader:
        assert reader.read() == CONTENT[3000:]
    with RangeReader(path, 10, 5, threading.Event()) as reader:
        assert reader.read(-1) == CONTENT[10:15]


def test_the_range_reader_refuses_a_file_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT[:1500])
    with RangeReader(path, 1000, 1000, threading.Event()) as reader:
        assert reader.read(256) == CONTENT[1000:1256]
        assert reader.read(1000) == CONTENT[1256:1500]
        with pytest.raises(_upload._LocalReadError, match="ended 500 bytes early"):
            reader.read(256)


def test_the_range_reader_stops_once_told(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(CONTENT)
    stop = threading.Event()
    with RangeReader(path, 0, 1000, stop) as reader:
        assert reader.read(10) == CONTENT[:10]
        stop.set()
        with pytest.raises(_upload._Cancelled):
            reader.read(10)


# ------------------------------------------------------------------------------ a fake server


class Fake:
    """The server's artifact API and multipart routes, and a store taking presigned parts.

    ``create`` is the status of ``mpu/create`` (200: one URL per part; 404: an older server;
    501: a store without multipart); ``credentials`` replaces the URLs it hands out.
    """

    def __init__(self, *, create: int = 200, credentials: list[Any] | None = None) -> None:
        self.create = create
        self.credentials = credentials
        self.server: list[Any] = []
        self.store: list[Any] = []
        self.parts: dict[int, bytes] = {}
        self.whole: dict[str, bytes] = {}
        self.completed: list[dict[str, Any]] = []
        self.aborted: list[dict[str, Any]] = []

    def install(self, mock: Any) -> None:
        import re

        mock.add_callback(
            "PUT", re.compile(f"{SERVER}/api/2.0/mlflow-artifacts/artifacts/.*"), self.put
        )
        mock.add_callback("POST", re.compile(f"{MPU}/create/.*"), self.mpu_create)
        mock.add_callback("POST", re.compile(f"{MPU}/complete/.*"), self.mpu_complete)
        mock.add_callback("POST", re.compile(f"{MPU}/abort/.*"), self.mpu_abort)
        mock.add_callback("PUT", re.compile(f"{STORE}/.*"), self.part)

    def put(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.server.append(request)
        self.whole[urlsplit(request.url).path] = _body(request)
        return 200, {}, ""

    def mpu_create(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.server.append(request)
        if self.create == 404:
            return 404, {"Content-Type": "text/html"}, "<html>Not Found</html>"
        if self.create == 501:
            body = {"error_code": "NOT_IMPLEMENTED", "message": _upload.UNSUPPORTED_MESSAGE}
            return 501, {}, json.dumps(body)
        asked = json.loads(request.body)
        credentials = self.credentials or [
            {
                "part_number": str(n),
                "url": f"{STORE}/b/{asked['path']}?part={n}&sig=s",
                "headers": {},
            }
            for n in range(1, asked["num_parts"] + 1)
        ]
        return 200, {}, json.dumps({"upload_id": "up-1", "credentials": credentials})

    def mpu_complete(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.server.append(request)
        self.completed.append(json.loads(request.body))
        return 200, {}, "{}"

    def mpu_abort(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.server.append(request)
        self.aborted.append(json.loads(request.body))
        return 200, {}, "{}"

    def part(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.store.append(request)
        number = int(urlsplit(request.url).query.split("part=")[1].split("&")[0])
        body = _body(request)
        assert int(request.headers["Content-Length"]) == len(body)
        self.parts[number] = body
        return 200, {"ETag": f'"etag-{number}"'}, ""


def _body(request: Any) -> bytes:
    """A request's body: bytes (responses reads a file body itself), or a part's blocks."""
    body = request.body
    return body if isinstance(body, bytes) else b"".join(body)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_bytes(b"flavors: {}\n")
    (folder / "data" / "big.bin").write_bytes(CONTENT)
    (folder / "data" / "other.bin").write_bytes(CONTENT[::-1])
    return folder


def _upload_dir(fake: Fake, folder: Path, artifact_path: str | None = None) -> None:
    with mock_http() as mock:
        fake.install(mock)
        with ProxiedUploader(LOCATION) as uploader:
            uploader.log_artifacts(folder, artifact_path)


def test_big_files_go_in_parts_to_the_store_without_the_servers_credentials(
    model_dir: Path,
) -> None:
    fake = Fake()
    _upload_dir(fake, model_dir)

    # The small file whole, through the server; the big ones in four parts each.
    assert fake.whole == {f"/api/2.0/mlflow-artifacts/artifacts/{ROOT}/MLmodel": b"flavors: {}\n"}
    assert len(fake.store) == 8
    assert [c["path"] for c in fake.completed] == ["big.bin", "other.bin"]
    parts = fake.completed[1]["parts"]
    assert [(p["part_number"], p["etag"]) for p in parts] == [
        (n, f'"etag-{n}"') for n in range(1, 5)
    ]
    assert fake.completed[1]["upload_id"] == "up-1"
    assert b"".join(fake.parts[n] for n in range(1, 5)) == CONTENT[::-1]
    created = [json.loads(r.body) for r in fake.server if "/mpu/create/" in r.url]
    assert created == [{"path": "big.bin", "num_parts": 4}, {"path": "other.bin", "num_parts": 4}]
    assert all(
        r.url.endswith(f"/mpu/create/{ROOT}/data") for r in fake.server if "/create/" in r.url
    )
    assert not fake.aborted
    # The server gets MLflow's credentials; the store none, and no cookie.
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in fake.server)
    for request in fake.store:
        assert "Authorization" not in request.headers
        assert "Cookie" not in request.headers
        assert TOKEN not in str(request.headers)


def test_an_older_server_without_the_routes_gets_files_whole_and_is_asked_once(
    model_dir: Path,
) -> None:
    fake = Fake(create=404)
    _upload_dir(fake, model_dir, "model")

    creates = [r for r in fake.server if "/mpu/create/" in r.url]
    assert len(creates) == 1
    assert not fake.store
    prefix = f"/api/2.0/mlflow-artifacts/artifacts/{ROOT}/model"
    assert fake.whole == {
        f"{prefix}/MLmodel": b"flavors: {}\n",
        f"{prefix}/data/big.bin": CONTENT,
        f"{prefix}/data/other.bin": CONTENT[::-1],
    }

    again = Fake(create=404)
    _upload_dir(again, model_dir, "model")
    assert not [r for r in again.server if "/mpu/" in r.url]  # remembered for the server


def test_a_store_without_multipart_is_remembered_too(model_dir: Path) -> None:
    fake = Fake(create=501)
    _upload_dir(fake, model_dir)
    assert len([r for r in fake.server if "/mpu/create/" in r.url]) == 1
    assert len(fake.whole) == 3


def test_multipart_set_false_by_the_user_is_never_tried(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
    fake = Fake()
    _upload_dir(fake, model_dir)
    assert not [r for r in fake.server if "/mpu/" in r.url]
    assert len(fake.whole) == 3


def test_a_file_of_more_parts_than_a_store_takes_gets_bigger_parts(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_upload, "MAX_PARTS", 2)
    fake = Fake()
    _upload_dir(fake, model_dir)
    created = [json.loads(r.body) for r in fake.server if "/mpu/create/" in r.url]
    assert [c["num_parts"] for c in created] == [2, 2]
    assert b"".join(fake.parts[n] for n in (1, 2)) == CONTENT[::-1]


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        ([{"part_number": 1, "url": "file:///etc/passwd"}], "only http"),
        ([{"part_number": 1, "url": "http://user:pw@store.invalid/x"}], "only http"),
        (
            [{"part_number": 1, "url": f"{STORE}/x", "headers": {"Authorization": "x"}}],
            "the client sets it",
        ),
        ([{"part_number": 9, "url": f"{STORE}/x"}], "parts 1 to 4"),
        ([{"part_number": 1, "url": f"{STORE}/x"}], "1 presigned URLs for the 4 parts"),
    ],
)
def test_a_reply_handing_out_unusable_urls_is_refused_and_the_upload_aborted(
    tmp_path: Path, credentials: list[Any], problem: str
) -> None:
    (tmp_path / "big.bin").write_bytes(CONTENT)
    fake = Fake(credentials=credentials)
    with pytest.raises(InvalidResponseError, match=problem):
        _upload_dir(fake, tmp_path)
    assert not fake.store
    assert fake.aborted == [{"path": "big.bin", "upload_id": "up-1"}]


def test_unreadable_multipart_settings_are_a_configuration_error(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", "0")
    with pytest.raises(ConfigurationError, match="MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE"):
        _upload_dir(Fake(), model_dir)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", "ten")
    with pytest.raises(ConfigurationError, match="ten"):
        _upload_dir(Fake(), model_dir)


@pytest.mark.parametrize(
    ("uri", "proxied"),
    [
        ("mlflow-artifacts:/1/abc/artifacts", True),
        ("mlflow-artifacts://host:5000/1/abc/artifacts", True),
        ("https://mlflow.example/api/2.0/mlflow-artifacts/artifacts/1/abc", True),
        ("https://files.example/1/abc", False),
        ("s3://bucket/1/abc/artifacts", False),
        ("/srv/mlruns/1/abc/artifacts", False),
        ("file:///srv/mlruns/1/abc/artifacts", False),
    ],
)
def test_which_locations_are_the_servers_proxy(uri: str, proxied: bool) -> None:
    assert _upload.is_proxied(uri) is proxied


def test_a_proxied_location_is_resolved_against_the_clients_tracking_uri() -> None:
    assert (
        _upload.resolve("mlflow-artifacts:/1/abc/artifacts", "http://mlflow.test:5000")
        == "http://mlflow.test:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
    )

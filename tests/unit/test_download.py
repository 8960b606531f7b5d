"""Fetching a version's artifacts from a server that may not be trustworthy.

A server chooses three things the client acts on: the artifact location
(``get-download-uri``), the artifact listing (names, sizes, folders) and the file bodies.
Whatever it chooses, the client either fills the destination with regular files below it or
raises a typed :class:`~registry_sdk.RegistryError` that says what the server sent, leaving
nothing behind. A server that is not on loopback may not make the client copy files of this
machine unless the user allows it (``allow_local_artifacts``).

The servers here are ``responses`` mocks at hostnames that cannot resolve
(``registry.invalid``) or at loopback addresses: no request leaves the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from _rest_fakes import FakeSleep, make_client, make_settings, mock_http, version_json

from registry_sdk import ModelVersion, _cache, _download
from registry_sdk._backends import rest
from registry_sdk._backends.rest import RestBackend
from registry_sdk.errors import (
    InvalidResponseError,
    RegistryError,
    RegistryUnavailableError,
    UnsafeArtifactError,
)

if TYPE_CHECKING:
    import responses

REMOTE = "http://registry.invalid"
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
#: Where the version's artifacts live on the artifact proxy.
ROOT = "0/abc/artifacts"
PROXIED = f"mlflow-artifacts:/{ROOT}"
MLMODEL = b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: x\n"
SECRET = b"TOPSECRET-5f3c9e-never-copy-me"


def entry(name: str, size: Any = None, *, is_dir: Any = False) -> dict[str, Any]:
    """One item of an artifact listing as MLflow sends it."""
    item: dict[str, Any] = {"path": name, "is_dir": is_dir}
    if size is not None:
        item["file_size"] = size
    return item


class ArtifactServer:
    """An MLflow server at ``base`` holding one version, ``m/1``.

    ``artifact_uri`` is what ``get-download-uri`` answers. ``listing`` maps a folder below
    :data:`ROOT` ("" for the root) to its items, or is a callable of the folder; ``files``
    maps a file below :data:`ROOT` to its body. Every request is recorded.
    """

    def __init__(
        self,
        base: str,
        artifact_uri: str,
        *,
        listing: Any = None,
        files: dict[str, bytes] | None = None,
        runs: dict[str, str] | None = None,
    ) -> None:
        self.base = base
        self.artifact_uri = artifact_uri
        self.runs = runs or {}
        self.listing = listing or {"": [entry("MLmodel", len(MLMODEL))]}
        self.files = files if files is not None else {"MLmodel": MLMODEL}
        self.requests: list[Any] = []

    def _relative(self, path: str) -> str:
        path = path.strip("/")
        return path[len(ROOT) :].lstrip("/") if path.startswith(ROOT) else path

    def _list(self, folder: str) -> Any:
        if callable(self.listing):
            return self.listing(folder)
        return self.listing.get(folder, [])

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.requests.append(request)
        parts = urlsplit(str(request.url))
        path = parts.path
        as_json = {"Content-Type": "application/json"}
        if path == ARTIFACTS:
            folder = self._relative(parse_qs(parts.query).get("path", [""])[0])
            return 200, as_json, json.dumps({"files": self._list(folder)}).encode()
        if path.startswith(ARTIFACTS + "/"):
            name = self._relative(unquote(path[len(ARTIFACTS) + 1 :]))
            if name not in self.files:
                return 404, as_json, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}'
            return 200, {"Content-Type": "application/octet-stream"}, self.files[name]
        if path == f"{API}/model-versions/get":
            body = {"model_version": version_json("m", 1, source=self.artifact_uri)}
            return 200, as_json, json.dumps(body).encode()
        if path == f"{API}/runs/get":
            run_id = parse_qs(parts.query)["run_id"][0]
            if run_id not in self.runs:
                return 404, as_json, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}'
            info = {"run_id": run_id, "experiment_id": "0", "artifact_uri": self.runs[run_id]}
            return 200, as_json, json.dumps({"run": {"info": info, "data": {}}}).encode()
        if path == f"{API}/model-versions/get-download-uri":
            return 200, as_json, json.dumps({"artifact_uri": self.artifact_uri}).encode()
        return 404, as_json, b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}'

    def file_requests(self, name: str) -> int:
        """How many times the body of ``name`` (below :data:`ROOT`) was asked for."""
        wanted = f"{ARTIFACTS}/{ROOT}/{name}"
        return sum(unquote(urlsplit(str(r.url)).path) == wanted for r in self.requests)

    def listing_requests(self) -> int:
        """How many listings were asked for."""
        return sum(urlsplit(str(r.url)).path == ARTIFACTS for r in self.requests)


def _serve(http: responses.RequestsMock, server: ArtifactServer) -> None:
    anything = re.compile(re.escape(server.base) + r"/.*", re.IGNORECASE)  # hosts: any case
    for method in ("GET", "POST", "PATCH", "DELETE"):
        http.add_callback(method, anything, callback=server)


def pull(server: ArtifactServer, cache: Path, **settings: Any) -> Path:
    """``RegistryClient.pull("m/1")`` against ``server``, with a fresh client."""
    with mock_http() as http:
        _serve(http, server)
        client = make_client(
            make_settings(server.base, cache_dir=cache, max_retries=1, **settings), FakeSleep()
        )
        return client.pull("m/1")


def download(server: ArtifactServer, dest: Path, **settings: Any) -> None:
    """The download step alone, from the location ``server`` names, into ``dest``."""
    with mock_http() as http:
        _serve(http, server)
        backend = RestBackend(
            make_settings(server.base, **{"max_retries": 1, **settings}), sleep=FakeSleep()
        )
        uri = backend.get_download_uri("m", 1)
        _download.download(uri, dest, backend=backend, settings=backend.settings, label="m/1")


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file below ``root`` (links not followed) whose content contains ``needle``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(str(path))
    return found


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A folder of this machine that looks like a model and holds a secret."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "MLmodel").write_bytes(MLMODEL)
    (folder / "id_rsa").write_bytes(SECRET)
    return folder


def local_forms(secret: Path) -> dict[str, str]:
    """The ways a server can name ``secret`` (a folder) or a file in it."""
    return {
        "file-uri": secret.as_uri(),
        "file-uri-with-host": f"file://localhost{secret.as_posix()}",
        "file-uri-no-slashes": f"file:{secret.as_posix()}",
        "absolute-path": str(secret),
        "file-uri-of-a-file": (secret / "id_rsa").as_uri(),
        "absolute-path-of-a-file": str(secret / "id_rsa"),
    }


FORMS = sorted(local_forms(Path("/x")))
#: Hosts that are not loopback, some made to look like it.
REMOTES = [
    REMOTE,
    "https://registry.invalid:8443",
    "http://localhost.registry.invalid",
    "http://127.0.0.1.registry.invalid",
    "http://10.0.0.7:5000",
]
LOOPBACKS = [
    "http://127.0.0.1:5000",
    "http://localhost:5000",
    "http://LOCALHOST.",
    "http://[::1]:5000",
    "http://127.8.9.10",
]


# ============================================================================ local paths


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("base", REMOTES)
def test_a_remote_server_naming_a_local_path_is_refused_and_nothing_is_copied(
    tmp_path, secret, form, base
):
    uri = local_forms(secret)[form]
    cache = tmp_path / "cache"

    with pytest.raises(UnsafeArtifactError) as caught:
        pull(ArtifactServer(base, uri), cache)

    message = str(caught.value)
    assert uri in message  # what the server sent
    assert "loopback" in message  # why it is refused
    assert "REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS" in message  # how to allow it
    assert "allow_local_artifacts=True" in message
    assert files_holding(tmp_path, SECRET) == [str(secret / "id_rsa")]  # nowhere but at home


@pytest.mark.parametrize("loopback", LOOPBACKS)
def test_the_same_local_path_is_refused_from_a_remote_server_and_copied_from_a_loopback_one(
    tmp_path, secret, loopback
):
    # A server on loopback shares this machine's disk (`mlflow server --no-serve-artifacts`).
    with pytest.raises(UnsafeArtifactError):
        pull(ArtifactServer(REMOTE, secret.as_uri()), tmp_path / "remote-cache")

    model = pull(ArtifactServer(loopback, secret.as_uri()), tmp_path / "loopback-cache")

    assert (model / "id_rsa").read_bytes() == SECRET
    assert (model / "MLmodel").read_bytes() == MLMODEL


@pytest.mark.parametrize(
    "allow",
    [{"allow_local_artifacts": True}, {"env": {"REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS": "1"}}],
    ids=["argument", "environment"],
)
def test_allow_local_artifacts_lets_a_remote_server_name_local_paths(tmp_path, secret, allow):
    with pytest.raises(UnsafeArtifactError):
        pull(ArtifactServer(REMOTE, str(secret)), tmp_path / "refused")

    model = pull(ArtifactServer(REMOTE, str(secret)), tmp_path / "allowed", **allow)

    assert (model / "id_rsa").read_bytes() == SECRET


@pytest.mark.usefixtures("secret")
def test_a_relative_file_uri_from_a_server_is_refused_even_when_local_paths_are_allowed(
    tmp_path, monkeypatch
):
    # "file:secret" would name a folder of whatever directory the client runs in.
    monkeypatch.chdir(tmp_path)

    with pytest.raises(InvalidResponseError, match=r"'file:secret'.*not an absolute path"):
        download(
            ArtifactServer(REMOTE, "file:secret"), tmp_path / "dest", allow_local_artifacts=True
        )

    assert not (tmp_path / "dest").exists()


# ============================================================================ other schemes


@pytest.mark.parametrize(
    "uri",
    [
        f"{REMOTE}/x",
        REMOTE,
        "https://elsewhere.invalid/a/b",
        f"{REMOTE}/api/2.0/mlflow-artifacts",
    ],
)
def test_an_http_location_that_is_no_artifact_proxy_is_a_typed_error_naming_it(tmp_path, uri):
    with pytest.raises(InvalidResponseError) as caught:
        download(ArtifactServer(REMOTE, uri), tmp_path / "dest")

    assert repr(uri) in str(caught.value)
    assert "mlflow-artifacts" in str(caught.value)  # what would be right
    assert not (tmp_path / "dest").exists()


def test_an_http_location_on_the_servers_own_proxy_is_fetched_with_the_clients_credentials(
    tmp_path,
):
    server = ArtifactServer(REMOTE, f"{REMOTE}{ARTIFACTS}/{ROOT}")

    model = pull(server, tmp_path / "cache", env={"MLFLOW_TRACKING_TOKEN": "tkn-123"})

    assert (model / "MLmodel").read_bytes() == MLMODEL
    fetched = [r for r in server.requests if urlsplit(str(r.url)).path.startswith(ARTIFACTS)]
    assert fetched
    assert {r.headers.get("Authorization") for r in fetched} == {"Bearer tkn-123"}


def test_a_registry_reference_as_download_location_is_refused_without_touching_the_disk(
    tmp_path, monkeypatch
):
    # MLflow would resolve models:/ against its default registry: sqlite:///mlflow.db, here.
    monkeypatch.chdir(tmp_path)

    with pytest.raises(InvalidResponseError, match=r"'models:/other/3'"):
        download(ArtifactServer(REMOTE, "models:/other/3"), tmp_path / "dest")

    assert list(tmp_path.iterdir()) == []


def test_a_runs_location_is_resolved_against_this_registry_and_fetched(tmp_path, monkeypatch):
    # MLflow 2 would resolve runs:/ against the process-global tracking URI (./mlruns here).
    monkeypatch.chdir(tmp_path)
    server = ArtifactServer(REMOTE, "runs:/abc/artifacts", runs={"abc": "mlflow-artifacts:/0/abc"})

    download(server, tmp_path / "dest")

    assert (tmp_path / "dest" / "MLmodel").read_bytes() == MLMODEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_a_run_whose_root_is_a_local_path_is_refused_from_a_remote_server(tmp_path, secret):
    server = ArtifactServer(REMOTE, "runs:/abc/model", runs={"abc": str(secret.parent)})

    with pytest.raises(UnsafeArtifactError):
        download(server, tmp_path / "dest")

    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("root", ["runs:/other/model", "runs:/abc"])
def test_a_run_whose_root_is_another_run_reference_is_refused(tmp_path, root):
    server = ArtifactServer(REMOTE, "runs:/abc/model", runs={"abc": root})

    with pytest.raises(InvalidResponseError, match="another run reference"):
        download(server, tmp_path / "dest")

    assert not (tmp_path / "dest").exists()


def test_a_runs_location_naming_no_run_is_refused(tmp_path):
    with pytest.raises(InvalidResponseError, match="names no run"):
        download(ArtifactServer(REMOTE, "runs:/"), tmp_path / "dest")


# ============================================================================ listings


@pytest.mark.parametrize("name", ["a" * 300, "é" * 128], ids=["300-ascii", "256-bytes-utf8"])
def test_an_over_long_artifact_name_is_a_typed_error_naming_it(tmp_path, name):
    server = ArtifactServer(REMOTE, PROXIED, listing={"": [entry(name, 3)]}, files={name: b"abc"})

    with pytest.raises(InvalidResponseError, match=r"255 bytes") as caught:
        download(server, tmp_path / "dest")

    assert name[:40] in str(caught.value)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "item",
    [entry("\ud800", 3), entry("x\udfff.bin", 3), entry("\ud800", is_dir=True)],
    ids=["lone-surrogate", "trailing-surrogate", "folder-with-a-surrogate"],
)
def test_an_artifact_name_that_is_not_text_is_refused(tmp_path, item):
    server = ArtifactServer(REMOTE, PROXIED, listing={"": [item]}, files={item["path"]: b"abc"})

    with pytest.raises(InvalidResponseError, match=r"artifact name"):
        download(server, tmp_path / "dest")

    assert not (tmp_path / "dest").exists()


def test_a_listing_that_nests_forever_is_cut_off(tmp_path):
    def forever(folder: str) -> Any:
        # Stops a client that never gives up, so that the test ends either way.
        if folder.count("/") > 500:
            return {"not": "a list"}
        return [entry("d", is_dir=True)]

    server = ArtifactServer(REMOTE, PROXIED, listing=forever)

    with pytest.raises(InvalidResponseError, match=r"deeper than \d+ folders"):
        download(server, tmp_path / "dest")

    assert server.listing_requests() <= rest.MAX_ARTIFACT_DEPTH + 1
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "root",
    [
        [entry("d", is_dir=True), entry("d", is_dir=True)],
        [entry("d", is_dir=True), entry("d", 1)],
        [entry("f", 1), entry("f", 1)],
    ],
    ids=["a-folder-twice", "a-folder-and-a-file", "a-file-twice"],
)
def test_a_listing_that_names_an_entry_twice_is_refused(tmp_path, root):
    server = ArtifactServer(
        REMOTE,
        PROXIED,
        listing={"": root, "d": [entry("f", 1)]},
        files={"d": b"x", "d/f": b"x", "f": b"x"},
    )

    with pytest.raises(InvalidResponseError, match=r"names '(d|f)' twice"):
        download(server, tmp_path / "dest")

    assert not (tmp_path / "dest").exists()


def test_a_listing_with_too_many_entries_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(rest, "MAX_ARTIFACT_ENTRIES", 20)
    server = ArtifactServer(
        REMOTE,
        PROXIED,
        listing={"": [entry(f"d{i}", is_dir=True) for i in range(10)]}
        | {f"d{i}": [entry("f", 1), entry("g", 1)] for i in range(10)},
    )

    with pytest.raises(InvalidResponseError, match=r"more than 20 entries"):
        download(server, tmp_path / "dest")


class DeepJsonServer(ArtifactServer):
    """Answers one endpoint with JSON nested deeper than any parser's stack."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(REMOTE, PROXIED)
        self.endpoint = endpoint

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        if urlsplit(str(request.url)).path == self.endpoint:
            deep = b"[" * 100_000 + b"]" * 100_000
            return 200, {"Content-Type": "application/json"}, deep
        return super().__call__(request)


@pytest.mark.parametrize("endpoint", [f"{API}/model-versions/get-download-uri", ARTIFACTS])
def test_a_reply_nested_too_deep_to_parse_is_a_typed_error(tmp_path, endpoint):
    with pytest.raises(
        InvalidResponseError, match=r"not an artifact listing|nested too deep|not JSON"
    ):
        download(DeepJsonServer(endpoint), tmp_path / "dest")

    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("size", [-1, True, 1.5, "x", [3], {"n": 3}])
def test_a_file_size_that_is_no_byte_count_is_refused(tmp_path, size):
    server = ArtifactServer(REMOTE, PROXIED, listing={"": [entry("f", size)]}, files={"f": b"x"})

    with pytest.raises(InvalidResponseError, match=r"file_size") as caught:
        download(server, tmp_path / "dest")

    assert repr(size) in str(caught.value)


@pytest.mark.parametrize("size", [3, "3"], ids=["number", "digits"])
def test_a_body_longer_than_its_listed_size_is_refused_at_once(tmp_path, size):
    body = b"0123456789" * 100
    server = ArtifactServer(REMOTE, PROXIED, listing={"": [entry("f", size)]}, files={"f": body})

    with pytest.raises(InvalidResponseError, match=r"more than the 3 bytes"):
        download(server, tmp_path / "dest")

    assert server.file_requests("f") == 1  # not fetched again: the listing and file disagree
    assert not (tmp_path / "dest").exists()


# ============================================================================ the local disk


def test_a_failed_download_leaves_nothing_half_written(tmp_path):
    server = ArtifactServer(
        REMOTE,
        PROXIED,
        listing={"": [entry("a", 3), entry("b", 3)]},
        files={"a": b"abc"},  # "b" is listed, then not found
    )
    dest = tmp_path / "export" / "artifacts"

    with pytest.raises(RegistryError):
        download(server, dest)

    assert server.file_requests("a") == 1
    assert not dest.exists()


def test_a_destination_that_cannot_be_written_is_a_registry_error(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where a folder should be")

    with pytest.raises(RegistryError) as caught:
        download(ArtifactServer(REMOTE, PROXIED), blocker / "dest")

    assert not isinstance(caught.value, OSError)
    assert str(blocker) in str(caught.value)
    assert "cannot write" in str(caught.value)


# ============================================================================ parallel, resumable


class RangeServer(ArtifactServer):
    """An artifact proxy whose first ``cuts`` replies of each file stop at half their body.

    ``ranges``: ``"honour"`` answers a ``Range`` with a 206 of the rest (as MLflow 3 does);
    ``"ignore"`` answers 200 with the whole file (as MLflow 2 does); ``"wrong"`` answers 206
    with the whole file and a ``Content-Range`` from 0. ``keep_length``: a cut reply announces
    the full ``Content-Length`` (a dropped connection); else it just ends early.
    """

    def __init__(
        self,
        files: dict[str, bytes],
        *,
        ranges: str = "honour",
        cuts: int = 1,
        keep_length: bool = True,
    ) -> None:
        listing = {"": [entry(name, len(body)) for name, body in files.items()]}
        super().__init__(REMOTE, PROXIED, listing=listing, files=files)
        self.ranges = ranges
        self.cuts_left = dict.fromkeys(files, cuts)
        self.keep_length = keep_length
        #: (file, Range header or None, status, body bytes sent) of every file request.
        self.replies: list[tuple[str, str | None, int, int]] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(str(request.url)).path
        if not path.startswith(ARTIFACTS + "/"):
            return super().__call__(request)
        self.requests.append(request)
        name = self._relative(unquote(path[len(ARTIFACTS) + 1 :]))
        body = self.files[name]
        asked = request.headers.get("Range")
        status, headers, payload = 200, {}, body
        if asked is not None and self.ranges != "ignore":
            start = int(asked.removeprefix("bytes=").removesuffix("-"))
            status = 206
            if self.ranges == "honour":
                payload = body[start:]
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
            else:
                headers["Content-Range"] = f"bytes 0-{len(body) - 1}/{len(body)}"
        if self.cuts_left[name] > 0:
            self.cuts_left[name] -= 1
            if self.keep_length:
                headers["Content-Length"] = str(len(payload))
            payload = payload[: len(payload) // 2]
        self.replies.append((name, asked, status, len(payload)))
        return status, headers, payload


def fetch(server: ArtifactServer, dest: Path, **settings: Any) -> RestBackend:
    """``download_artifacts`` of the version's location into ``dest`` (no clean-up on failure)."""
    settings.setdefault("max_retries", 2)
    with mock_http() as http:
        _serve(http, server)
        backend = RestBackend(make_settings(server.base, **settings), sleep=FakeSleep())
        backend.download_artifacts(ROOT, dest, label="m/1")
    return backend


BIG = bytes(range(256)) * 4000  # 1 MB: several reads


def resumed_from(asked: str | None) -> int:
    """The first byte a ``Range: bytes=<n>-`` header asks for."""
    assert asked is not None
    found = re.fullmatch(r"bytes=(\d+)-", asked)
    assert found is not None, asked
    return int(found[1])


@pytest.mark.parametrize("keep_length", [True, False], ids=["connection-dropped", "body-short"])
def test_a_file_cut_at_half_resumes_with_a_range_and_appends_the_rest(tmp_path, keep_length):
    server = RangeServer({"big": BIG}, keep_length=keep_length)

    fetch(server, tmp_path / "dest")

    assert (tmp_path / "dest" / "big").read_bytes() == BIG
    (_, first, _, _), (_, second, status, sent) = server.replies
    assert first is None
    kept = resumed_from(second)
    # What arrived before the cut, less the read it cut short at most, is kept.
    assert len(BIG) // 2 - rest._CHUNK <= kept <= len(BIG) // 2
    assert (status, sent) == (206, len(BIG) - kept)  # only the rest crossed the wire again
    # The .incomplete file was renamed.
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["big"]


def test_a_server_ignoring_range_sends_the_whole_file_again_and_it_is_written_from_the_start(
    tmp_path,
):
    server = RangeServer({"big": BIG}, ranges="ignore")

    fetch(server, tmp_path / "dest")

    assert (tmp_path / "dest" / "big").read_bytes() == BIG  # not half + whole
    (_, first, _, _), (_, second, status, sent) = server.replies
    assert first is None
    assert resumed_from(second) > 0
    assert (status, sent) == (200, len(BIG))


def test_a_206_with_the_wrong_content_range_is_refused_and_the_next_try_starts_over(tmp_path):
    server = RangeServer({"big": BIG}, ranges="wrong")

    fetch(server, tmp_path / "dest", max_retries=2)

    assert (tmp_path / "dest" / "big").read_bytes() == BIG
    asked = [(asked, status) for _, asked, status, _ in server.replies]
    assert [a is None for a, _ in asked] == [True, False, True]
    # bytes 0-... when the rest was asked for: not appended, the third try starts over
    assert [status for _, status in asked] == [200, 206, 200]


def test_a_wrong_content_range_on_the_last_try_is_a_typed_error_and_leaves_nothing(tmp_path):
    server = RangeServer({"big": BIG}, ranges="wrong")

    with pytest.raises(InvalidResponseError, match=r"Content-Range 'bytes 0-") as caught:
        # The cut got further (it costs no retry), then the wrong range, with none left.
        download(server, tmp_path / "dest", max_retries=0)

    assert re.search(r"asked for the bytes from [1-9]\d* on", str(caught.value))
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    "content_range",
    ["{first}-999999/1000000", "{start}-999998/999999", "{start}-999999/*x", "", "{start}-0/*"],
)
def test_only_the_exact_rest_of_the_file_is_appended(tmp_path, content_range):
    class Skewed(RangeServer):
        def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
            status, headers, payload = super().__call__(request)
            if status == 206:
                start = resumed_from(request.headers["Range"])
                skewed = content_range.format(start=start, first=start - 1)
                headers["Content-Range"] = f"bytes {skewed}" if skewed else ""
            return status, headers, payload

    server = Skewed({"big": BIG[:1_000_000]})

    fetch(server, tmp_path / "dest", max_retries=2)

    assert (tmp_path / "dest" / "big").read_bytes() == BIG[:1_000_000]
    assert [asked is None for _, asked, _, _ in server.replies] == [True, False, True]


@pytest.mark.parametrize("ranges", ["ignore", "honour"])
def test_a_file_cut_every_time_without_progress_costs_max_retries_plus_one_gets(tmp_path, ranges):
    server = RangeServer({"big": BIG}, cuts=99, ranges=ranges)
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(RegistryUnavailableError, match=r"cut short"):
        fetch(server, dest, max_retries=2)

    # Tries that got further cost no retry; then max_retries + 1 that got nowhere. Ignoring
    # Range, each try is cut at the same byte: only the first got anywhere. Honouring it, the
    # first two kept one 256 KiB read each; the third's cut fell within one read.
    free = 1 if ranges == "ignore" else 2
    assert server.file_requests("big") == free + 3
    assert list(dest.iterdir()) == []  # neither the file nor its .incomplete


def test_a_file_that_gets_further_on_each_try_costs_no_retry(tmp_path):
    server = RangeServer({"big": BIG}, cuts=2)

    fetch(server, tmp_path / "dest", max_retries=0)

    assert (tmp_path / "dest" / "big").read_bytes() == BIG
    statuses = [(asked is None, status) for _, asked, status, _ in server.replies]
    assert statuses == [(True, 200), (False, 206), (False, 206)]  # cut, cut further, whole


@pytest.mark.parametrize("workers", [1, 8])
def test_many_files_in_parallel_or_in_turn_give_the_same_tree(tmp_path, workers):
    files = {f"part-{i:02d}.bin": bytes([i]) * (1000 + i) for i in range(30)}
    files["w"] = b"the file"
    files["w.incomplete"] = b"a listed file whose name is another's partial name"
    server = RangeServer(files, cuts=1)

    fetch(server, tmp_path / "dest", download_workers=workers)

    got = {p.name: p.read_bytes() for p in (tmp_path / "dest").iterdir()}
    assert got == files
    assert all(server.file_requests(name) == 2 for name in files)  # each cut once, resumed


def test_the_progress_bar_counts_every_byte_once_across_workers_and_resumes(tmp_path, monkeypatch):
    bars: list[Any] = []

    class Recording(rest.Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(rest, "Progress", Recording)
    files = {f"f{i}": bytes([i]) * 50_000 for i in range(12)}
    files["ignored"] = BIG
    server = RangeServer(files, cuts=1)

    fetch(server, tmp_path / "dest", download_workers=4)

    assert [bar.done for bar in bars] == [sum(len(b) for b in files.values())]


def test_the_first_failure_stops_the_other_files_and_is_raised(tmp_path):
    files = {f"f{i:02d}": b"x" * 100 for i in range(20)}
    listing = {"": [entry("bad", 3), *(entry(name, 100) for name in files)]}

    class Slow(ArtifactServer):
        def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
            path = urlsplit(str(request.url)).path
            if path.startswith(ARTIFACTS + "/") and not path.endswith("/bad"):
                time.sleep(0.05)  # the good files take a while; the bad one fails at once
            return super().__call__(request)

    server = Slow(REMOTE, PROXIED, listing=listing, files=files)  # "bad" is listed, not found
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(RegistryError, match=r"bad") as caught:
        fetch(server, dest, download_workers=2)

    assert not isinstance(caught.value, RegistryUnavailableError)  # the real error, typed
    fetched = sum(server.file_requests(name) for name in files)
    assert fetched < len(files)  # the rest were cancelled
    assert not [p for p in dest.iterdir() if p.name.endswith(rest.INCOMPLETE)]


def test_the_connection_pool_holds_a_connection_per_download_worker():
    backend = RestBackend(make_settings(REMOTE, download_workers=32), sleep=FakeSleep())
    adapter = backend._session.get_adapter(REMOTE)

    assert adapter.poolmanager.connection_pool_kw["maxsize"] >= 32


def test_files_are_hashed_as_they_are_written_and_not_read_again_by_the_cache(
    tmp_path, monkeypatch
):
    files = {"big": BIG, "small": b"x" * 1000}
    server = RangeServer(files, cuts=1)  # "big": cut, then resumed within the same download
    with mock_http() as http:
        _serve(http, server)
        backend = RestBackend(make_settings(server.base, max_retries=2), sleep=FakeSleep())
        digests = backend.download_artifacts(ROOT, tmp_path / "dest", label="m/1")
    assert digests == {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}

    read_back: list[str] = []
    real = _cache.sha256_file

    def counting(path: Path) -> str:
        read_back.append(path.name)
        return real(path)

    monkeypatch.setattr(_cache, "sha256_file", counting)
    cache = _cache.ModelCache(tmp_path / "cache", server.base)
    mv = ModelVersion.from_json({"name": "m", "version": "1"})

    def fill(dest: Path) -> dict[str, str]:
        shutil.copytree(tmp_path / "dest", dest)
        return digests

    entry = cache.fill(mv, fill)
    assert "big" not in read_back  # its digest came with the download
    assert entry.check(full=True) == []  # and it is the file's true digest


def test_a_file_resumed_from_an_earlier_downloads_bytes_is_not_in_the_digests(tmp_path):
    server = RangeServer({"big": BIG}, cuts=0)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "big.incomplete").write_bytes(BIG[:1000])
    with mock_http() as http:
        _serve(http, server)
        backend = RestBackend(make_settings(server.base, max_retries=0), sleep=FakeSleep())
        digests = backend.download_artifacts(ROOT, dest, label="m/1", resume=True)
    assert (dest / "big").read_bytes() == BIG
    assert digests == {}
    assert resumed_from(server.replies[0][1]) == 1000


def test_a_big_file_is_hashed_on_a_thread_that_never_outlives_the_download(tmp_path, monkeypatch):
    monkeypatch.setattr(rest, "HASH_THREAD_MIN_BYTES", 1)  # every file on its own thread
    server = RangeServer({"big": BIG, "small": b"x" * 10}, cuts=1)
    with mock_http() as http:
        _serve(http, server)
        backend = RestBackend(make_settings(server.base, max_retries=2), sleep=FakeSleep())
        digests = backend.download_artifacts(ROOT, tmp_path / "ok", label="m/1")
    assert digests["big"] == hashlib.sha256(BIG).hexdigest()
    assert digests["small"] == hashlib.sha256(b"x" * 10).hexdigest()

    failing = RangeServer({"big": BIG}, cuts=99, ranges="ignore")
    with pytest.raises(RegistryUnavailableError):
        fetch(failing, tmp_path / "failed", max_retries=1)
    hashing = [t for t in threading.enumerate() if t.name.startswith("registry-sdk-hash")]
    assert hashing == []

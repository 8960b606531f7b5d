"""Big files straight from the artifact store, through the presigned URLs an MLflow 3 server gives.

The server (``registry.invalid``) lists a version's files, serves them through its artifact
proxy and, when asked, answers ``GET /api/2.0/mlflow-artifacts/presigned/<path>`` with a URL
on the store (``store.invalid``) -- or 404 (MLflow 2) or 501 (a store without presigned URLs).
The store answers byte ranges of a URL whose signature it accepts. Both are ``responses``
mocks: no request leaves the process. What the server sends is untrusted; nothing of this
client's credentials may reach the store.
"""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from _rest_fakes import FakeSleep, loopback_server, make_settings, mock_http

from registry_sdk._backends import rest
from registry_sdk._backends.rest import RestBackend
from registry_sdk._config import DEFAULT_DIRECT_DOWNLOAD_MIN_BYTES, Settings
from registry_sdk.errors import InvalidResponseError, RegistryUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REMOTE = "http://registry.invalid"
STORE = "http://store.invalid"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PRESIGNED = "/api/2.0/mlflow-artifacts/presigned"
ROOT = "0/abc/artifacts"
BIG = bytes(range(251)) * 4000  # ~1 MB, not a multiple of any range size
SMALL = b"artifact_path: model\n"
TOKEN = "tok-7d1e-never-to-the-store"


class Store:
    """An S3-like store: ``GET /bucket/<name>?sig=<s>`` answers 206 for a ``Range`` it can serve.

    ``valid``: the signatures it accepts (others: 403, as for an expired URL). ``cuts``: the
    first N replies stop at half their body (with the full ``Content-Length``). ``mode``:
    ``"refuse"`` raises a refused connection; ``"redirect"`` answers 302 to another host.
    """

    def __init__(self, files: dict[str, bytes], *, valid: set[str] | None = None) -> None:
        self.files = files
        self.valid = {"sig1"} if valid is None else valid
        self.cuts = 0
        self.mode = "serve"
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.requests.append(request)
        if self.mode == "refuse":
            raise requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
        if self.mode == "redirect":
            return 302, {"Location": "http://elsewhere.invalid/x"}, b""
        parts = urlsplit(str(request.url))
        if parse_qs(parts.query).get("sig", [""])[0] not in self.valid:
            return 403, {}, b"<Error><Code>AccessDenied</Code></Error>"
        body = self.files[unquote(parts.path).removeprefix("/bucket/")]
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("Range", ""))
        if found is None:
            return 200, {}, body
        first, last = int(found[1]), min(int(found[2]), len(body) - 1)
        payload = body[first : last + 1]
        headers = {"Content-Range": f"bytes {first}-{last}/{len(body)}"}
        if self.cuts > 0:
            self.cuts -= 1
            headers["Content-Length"] = str(len(payload))
            payload = payload[: len(payload) // 2]
        return 206, headers, payload

    def ranges(self) -> list[tuple[int, int]]:
        """(first, last) of every range asked for, in order."""
        out = []
        for request in self.requests:
            found = re.fullmatch(r"bytes=(\d+)-(\d+)", request.headers.get("Range", ""))
            assert found is not None, request.headers
            out.append((int(found[1]), int(found[2])))
        return out


class Server:
    """An MLflow server holding ``files`` below :data:`ROOT`.

    ``presign``: ``"store"`` answers with a URL on the store (signatures ``sig1``, ``sig2``,
    ... in turn); an int answers that status; a callable of the file name gives the JSON reply.
    """

    def __init__(self, files: dict[str, bytes], presign: Any = "store") -> None:
        self.files = files
        self.presign = presign
        self.signed = 0
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.requests.append(request)
        path = unquote(urlsplit(str(request.url)).path)
        as_json = {"Content-Type": "application/json", "Set-Cookie": "session=server-only"}
        if path == ARTIFACTS:
            listing = [
                {"path": n, "is_dir": False, "file_size": len(b)} for n, b in self.files.items()
            ]
            return 200, as_json, json.dumps({"files": listing}).encode()
        if path.startswith(f"{ARTIFACTS}/{ROOT}/"):
            return 200, {}, self.files[path.removeprefix(f"{ARTIFACTS}/{ROOT}/")]
        if path.startswith(f"{PRESIGNED}/{ROOT}/"):
            name = path.removeprefix(f"{PRESIGNED}/{ROOT}/")
            if isinstance(self.presign, int):
                time.sleep(0.05)  # slow enough for the other files to ask, if they would
                error = {"error_code": "NOT_IMPLEMENTED", "message": "no multipart download"}
                return self.presign, as_json, json.dumps(error).encode()
            if callable(self.presign):
                return 200, as_json, json.dumps(self.presign(name)).encode()
            self.signed += 1
            reply = {
                "url": f"{STORE}/bucket/{name}?sig=sig{self.signed}",
                "headers": {"x-amz-server-side-encryption-customer-algorithm": "AES256"},
                "file_size": len(self.files[name]),
            }
            return 200, as_json, json.dumps(reply).encode()
        return 404, as_json, b'{"error_code": "ENDPOINT_NOT_FOUND", "message": "no"}'

    def presign_requests(self) -> int:
        return sum(urlsplit(str(r.url)).path.startswith(PRESIGNED) for r in self.requests)

    def file_requests(self, name: str) -> int:
        wanted = f"{ARTIFACTS}/{ROOT}/{name}"
        return sum(unquote(urlsplit(str(r.url)).path) == wanted for r in self.requests)


@pytest.fixture(autouse=True)
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ranges of 64 KiB and up, so a 1 MB file may be split in several."""
    monkeypatch.setattr(rest, "MIN_RANGE_BYTES", 1 << 16)


def fetch(
    server: Server,
    store: Store,
    dest: Path,
    *,
    env: dict[str, str] | None = None,
    **settings: Any,
) -> RestBackend:
    """``download_artifacts`` of :data:`ROOT` into ``dest`` with a fresh backend."""
    settings.setdefault("max_retries", 2)
    settings.setdefault("direct_download_min_bytes", 1 << 19)
    settings.setdefault("download_workers", 4)
    with mock_http() as http:
        for method in ("GET", "POST"):
            http.add_callback(method, re.compile(re.escape(REMOTE) + r"/.*"), callback=server)
            http.add_callback(method, re.compile(re.escape(STORE) + r"/.*"), callback=store)
        backend = RestBackend(make_settings(REMOTE, env=env, **settings), sleep=FakeSleep())
        backend.download_artifacts(ROOT, dest, label="m/1")
    return backend


def tree(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir()}


# ============================================================================ the direct path


def test_a_big_file_comes_from_the_store_and_small_ones_through_the_server(tmp_path):
    files = {"big.bin": BIG, "MLmodel": SMALL}
    server, store = Server(files), Store(files)

    fetch(server, store, tmp_path / "dest")

    assert tree(tmp_path / "dest") == files  # no .incomplete left
    assert server.file_requests("big.bin") == 0
    assert server.file_requests("MLmodel") == 1
    assert server.presign_requests() == 1
    # A store that sends the file at once: one GET of all of it, nothing split off.
    assert store.ranges() == [(0, len(BIG) - 1)]
    # The headers the server listed go with every range.
    assert all(
        r.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
        for r in store.requests
    )


class SlowStore(BaseHTTPRequestHandler):
    """A real store on loopback that sends each reply 64 KiB at a time, with a pause between."""

    protocol_version = "HTTP/1.1"
    body: ClassVar[bytes] = b""
    asked: ClassVar[list[tuple[int, int]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        assert found is not None
        first, last = int(found[1]), int(found[2])
        self.asked.append((first, last))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(self.body)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.end_headers()
        try:
            for start in range(first, last + 1, 1 << 16):
                self.wfile.write(self.body[start : min(start + (1 << 16), last + 1)])
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass  # the client stopped this reply where another range starts


@pytest.fixture
def slow_store() -> Iterator[str]:
    SlowStore.body = BIG
    SlowStore.asked = []
    with loopback_server(SlowStore) as uri:
        yield uri


def test_a_file_the_store_sends_slowly_is_split_into_ranges_fetched_at_once(
    tmp_path, slow_store, monkeypatch
):
    # Split as soon as anything arrived, whatever the rate (the test asserts no durations).
    monkeypatch.setattr(rest, "SPLIT_AFTER_S", 0.0)
    monkeypatch.setattr(rest, "SPLIT_WORTH_S", 0.0)
    monkeypatch.setattr(rest, "SPLIT_CHECK_S", 0.01)
    files = {"big.bin": BIG}
    reply = {"url": f"{slow_store}/bucket/big.bin?sig=s", "headers": {}, "file_size": len(BIG)}
    server = Server(files, presign=lambda _name: reply)
    with mock_http() as http:
        http.add_passthru(slow_store)
        for method in ("GET", "POST"):
            http.add_callback(method, re.compile(re.escape(REMOTE) + r"/.*"), callback=server)
        settings = make_settings(
            REMOTE, direct_download_min_bytes=1 << 19, download_workers=4, max_retries=0
        )
        RestBackend(settings, sleep=FakeSleep()).download_artifacts(ROOT, tmp_path, label="m/1")

    assert (tmp_path / "big.bin").read_bytes() == BIG
    assert server.file_requests("big.bin") == 0
    asked = sorted(SlowStore.asked)
    assert asked[0] == (0, len(BIG) - 1)  # one GET of all of it first
    assert 2 <= len(asked) <= 1 + 3 * 4  # then ranges split off for the idle workers
    starts = [first for first, _ in asked]
    assert len(set(starts)) == len(starts)
    assert all(last == len(BIG) - 1 or (last + 1) in starts for _, last in asked[1:])


def test_a_range_cut_short_goes_on_from_where_it_stopped(tmp_path):
    files = {"big.bin": BIG}
    server, store = Server(files), Store(files)
    store.cuts = 1

    fetch(server, store, tmp_path / "dest", download_workers=1)

    assert tree(tmp_path / "dest") == files
    (first, last), (again, last_again), *_ = store.ranges()
    assert first == 0
    assert last_again == last
    assert 0 < again <= (last + 1) // 2  # only the rest of the range is asked again
    assert server.file_requests("big.bin") == 0


def test_a_range_cut_every_time_spends_the_files_budget_then_fails_typed(tmp_path):
    files = {"big.bin": BIG}
    server, store = Server(files), Store(files)
    store.cuts = 99
    dest = tmp_path / "dest"

    with pytest.raises(RegistryUnavailableError, match="cut short"):
        fetch(server, store, dest, download_workers=1, max_retries=2)

    assert len(store.requests) == 3  # max_retries + 1, over every range of the file
    assert list(dest.iterdir()) == []


def test_files_below_the_threshold_or_with_the_direct_path_off_never_ask_for_a_url(tmp_path):
    files = {"big.bin": BIG}
    for n, least in enumerate([len(BIG) + 1, 0]):
        server, store = Server(files), Store(files)

        fetch(server, store, tmp_path / f"dest{n}", direct_download_min_bytes=least)

        assert tree(tmp_path / f"dest{n}") == files
        assert (server.presign_requests(), len(store.requests)) == (0, 0)


# ============================================================================ no presigned URLs


@pytest.mark.parametrize("status", [404, 501, 400])
def test_a_server_without_presigned_urls_costs_one_request_then_every_file_goes_through_it(
    tmp_path, status
):
    files = {f"big{i}.bin": BIG[i:] for i in range(5)}
    server, store = Server(files, presign=status), Store(files)

    backend = fetch(server, store, tmp_path / "dest")
    assert tree(tmp_path / "dest") == files
    assert server.presign_requests() == 1  # even with 4 files asking at once
    assert all(server.file_requests(name) == 1 for name in files)
    assert store.requests == []

    # The same backend remembers: a later download asks no more.
    with mock_http() as http:
        http.add_callback("GET", re.compile(re.escape(REMOTE) + r"/.*"), callback=server)
        backend.download_artifacts(ROOT, tmp_path / "again", label="m/1")
    assert server.presign_requests() == 1


# ============================================================================ untrusted replies


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://store.invalid/bucket/big.bin",
        "http://user:pw@store.invalid/bucket/big.bin",
        "http:///bucket/big.bin",
        "http://store.invalid/bucket/big.bin\r\nX-Injected: 1",
        "http://[::1/bucket",
        "",
        None,
        42,
    ],
)
def test_a_presigned_url_that_is_not_plain_http_is_refused_typed(tmp_path, url):
    files = {"big.bin": BIG}
    server = Server(files, presign=lambda _: {"url": url, "headers": {}})
    store = Store(files)

    with pytest.raises(InvalidResponseError, match=r"presigned URL|no usable URL"):
        fetch(server, store, tmp_path / "dest")

    assert store.requests == []
    assert not list((tmp_path / "dest").iterdir())


@pytest.mark.parametrize(
    "reply",
    [
        {"headers": {"Authorization": "AWS4 stolen"}},
        {"headers": {"Cookie": "a=b"}},
        {"headers": {"Host": "elsewhere.invalid"}},
        {"headers": {"Range": "bytes=0-"}},
        {"headers": {"bad name": "x"}},
        {"headers": {"x-ok": "line\r\nbreak"}},
        {"headers": {"x-ok": 3}},
        {"headers": ["x"]},
        {"file_size": len(BIG) + 1},
        {"file_size": "12x"},
        {"file_size": True},
    ],
)
def test_a_presigned_reply_with_odd_headers_or_another_size_is_refused_typed(tmp_path, reply):
    files = {"big.bin": BIG}
    server = Server(files, presign=lambda name: {"url": f"{STORE}/bucket/{name}?sig=sig1", **reply})
    store = Store(files)

    with pytest.raises(InvalidResponseError):
        fetch(server, store, tmp_path / "dest")

    assert store.requests == []


def test_a_presigned_reply_that_is_not_json_is_refused_typed(tmp_path):
    files = {"big.bin": BIG}
    server = Server(files, presign=lambda _: ["not", "an", "object"])

    with pytest.raises(InvalidResponseError, match="not a presigned URL"):
        fetch(server, Store(files), tmp_path / "dest")


@pytest.mark.parametrize(
    "env",
    [
        {"MLFLOW_TRACKING_TOKEN": TOKEN},
        {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": TOKEN},
    ],
    ids=["token", "basic"],
)
def test_the_clients_credentials_and_cookies_never_reach_the_store(tmp_path, env):
    files = {"big.bin": BIG, "MLmodel": SMALL}
    server, store = Server(files), Store(files)

    fetch(server, store, tmp_path / "dest", env=env)

    assert tree(tmp_path / "dest") == files
    assert store.requests
    assert all("Authorization" in r.headers for r in server.requests)  # the server gets them
    for request in store.requests:
        sent = {k.lower(): v for k, v in request.headers.items()}
        assert "authorization" not in sent
        assert "cookie" not in sent
        assert TOKEN not in json.dumps(sent)


# ============================================================================ store refusals


def test_an_expired_url_gets_one_fresh_url_and_the_file_completes(tmp_path):
    files = {"big.bin": BIG}
    server, store = Server(files), Store(files, valid={"sig2"})  # sig1 has expired

    fetch(server, store, tmp_path / "dest")

    assert tree(tmp_path / "dest") == files
    assert server.presign_requests() == 2
    assert server.file_requests("big.bin") == 0


def test_a_store_refusing_the_fresh_url_too_sends_the_file_through_the_server(tmp_path, caplog):
    files = {"big.bin": BIG}
    server, store = Server(files), Store(files, valid=set())

    with caplog.at_level("DEBUG", logger="registry_sdk.rest"):
        fetch(server, store, tmp_path / "dest")

    assert tree(tmp_path / "dest") == files
    assert server.presign_requests() == 2  # one fresh URL, no more
    assert server.file_requests("big.bin") == 1
    assert "through the server instead" in caplog.text
    assert "sig=" not in caplog.text  # a presigned URL's key is never logged


@pytest.mark.parametrize("mode", ["refuse", "redirect"])
def test_an_unreachable_or_redirecting_store_sends_the_file_through_the_server(tmp_path, mode):
    files = {"big.bin": BIG, "big2.bin": BIG[1:]}
    server, store = Server(files), Store(files)
    store.mode = mode

    fetch(server, store, tmp_path / "dest", download_workers=1)

    assert tree(tmp_path / "dest") == files
    assert all(server.file_requests(name) == 1 for name in files)
    assert not [r for r in store.requests if "elsewhere" in str(r.url)]  # never followed
    if mode == "refuse":  # a store this client cannot reach is not tried again
        assert len(store.requests) == 1
        assert server.presign_requests() == 1


def test_the_progress_bar_counts_every_byte_once_after_a_fallback(tmp_path, monkeypatch):
    bars: list[Any] = []

    class Recording(rest.Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(rest, "Progress", Recording)
    files = {"big.bin": BIG, "MLmodel": SMALL}
    server, store = Server(files), Store(files, valid=set())
    store.cuts = 1

    fetch(server, store, tmp_path / "dest")

    assert [bar.done for bar in bars] == [len(BIG) + len(SMALL)]


# ============================================================================ the setting


def test_every_file_goes_direct_by_default_and_0_turns_the_direct_path_off():
    assert (
        Settings.resolve("http://h", env={}).direct_download_min_bytes
        == (DEFAULT_DIRECT_DOWNLOAD_MIN_BYTES)
        == 1
    )
    env = {"REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES": "0"}
    assert Settings.resolve("http://h", env=env).direct_download_min_bytes == 0
    assert (
        Settings.resolve("http://h", env=env, direct_download_min_bytes=5).direct_download_min_bytes
        == 5
    )
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(ValueError, match="REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES"):
            Settings.resolve("http://h", env={"REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES": bad})

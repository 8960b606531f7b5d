"""The shared HTTP session: the environment is read once per host, with requests' own answers."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler

import pytest
import requests
import requests.sessions

from registry_sdk import _http
from registry_sdk._http import Session, store_session
from tests.unit._rest_fakes import loopback_server


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with the request line and a cookie; remembers each Authorization."""

    seen: list[tuple[str, str | None]] = []  # noqa: RUF012 - one list per test, reset below
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append((self.requestline, self.headers.get("Authorization")))
        body = self.requestline.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "session=from-the-server; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    with loopback_server(_Recorder) as url:
        yield url


@pytest.fixture
def clean_proxy_env(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.usefixtures("clean_proxy_env")
def test_a_proxy_from_the_environment_is_used(monkeypatch, recorder):
    monkeypatch.setenv("HTTP_PROXY", recorder)
    reply = Session().get("http://registry.invalid/api/x", timeout=5)
    # Only a proxy is sent the absolute URL in the request line.
    assert reply.text == "GET http://registry.invalid/api/x HTTP/1.1"


@pytest.mark.usefixtures("clean_proxy_env")
def test_no_proxy_bypasses_the_proxy(monkeypatch, recorder):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert Session().get(f"{recorder}/direct", timeout=5).text == "GET /direct HTTP/1.1"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTPS_PROXY": "http://proxy.invalid:3128"},
        {"HTTPS_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "store.invalid"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"},
        {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem", "HTTP_PROXY": "http://p.invalid:1"},
    ],
)
@pytest.mark.parametrize("verify", [True, False, "/etc/own.pem", None])
@pytest.mark.usefixtures("clean_proxy_env")
def test_the_settings_are_those_requests_gives(monkeypatch, env, verify):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for url in ("https://store.invalid/b/k?X-Amz-Signature=1", "http://other.invalid/"):
        ours = Session().merge_environment_settings(url, {}, stream=True, verify=verify, cert=None)
        theirs = requests.Session().merge_environment_settings(
            url, {}, stream=True, verify=verify, cert=None
        )
        assert ours == theirs
        # A second call (from the cache) gives the same, and a copy the caller may change.
        session = Session()
        first = session.merge_environment_settings(url, {}, stream=True, verify=verify, cert=None)
        first["proxies"]["https"] = "changed"
        assert (
            session.merge_environment_settings(url, {}, stream=True, verify=verify, cert=None)
            == theirs
        )


@pytest.mark.usefixtures("clean_proxy_env")
def test_the_environment_is_read_once_per_host(monkeypatch, recorder):
    calls: list[str] = []
    read = requests.sessions.get_environ_proxies

    def counting(url, no_proxy=None):
        calls.append(url)
        return read(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    session = Session()
    for index in range(5):
        session.get(f"{recorder}/file-{index}?sig={index}", timeout=5)
    assert len(calls) == 1
    other = recorder.replace("127.0.0.1", "localhost")
    session.get(f"{other}/x", timeout=5)
    assert len(calls) == 2
    # A plain requests session reads it for every request: what this saves.
    plain = requests.Session()
    for index in range(3):
        plain.get(f"{recorder}/file-{index}", timeout=5)
    assert len(calls) == 5


@pytest.mark.usefixtures("clean_proxy_env")
def test_netrc_credentials_are_sent_to_their_host_and_read_once(monkeypatch, tmp_path, recorder):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    reads: list[str] = []
    real = _http.get_netrc_auth

    def counting(url, raise_errors=False):
        reads.append(url)
        return real(url, raise_errors)

    monkeypatch.setattr(_http, "get_netrc_auth", counting)
    session = Session()
    for index in range(3):
        session.get(f"{recorder}/n{index}", timeout=5)
    assert [auth for _, auth in _Recorder.seen] == [_basic("alice", "s3cret")] * 3
    assert len(reads) == 1
    # The store's session never sends them, and a session's own credentials win.
    store_session(4).get(f"{recorder}/store", timeout=5)
    own = Session()
    own.auth = ("bob", "pw")
    own.get(f"{recorder}/own", timeout=5)
    assert [auth for _, auth in _Recorder.seen[3:]] == [None, _basic("bob", "pw")]


@pytest.mark.usefixtures("clean_proxy_env")
def test_credentials_in_the_url_still_count_without_a_netrc(recorder):
    url = recorder.replace("http://", "http://carol:pw@")
    Session().get(f"{url}/u", timeout=5)
    assert _Recorder.seen[-1][1] == _basic("carol", "pw")
    Session().get(f"{recorder}/none", timeout=5)
    assert _Recorder.seen[-1][1] is None


def test_the_store_session_keeps_no_cookie_and_asks_for_identity(recorder):
    store = store_session(4, identity=True, verify=False)
    plain = Session()
    for session in (store, plain):
        session.get(f"{recorder}/first", timeout=5)
        reply = session.get(f"{recorder}/second", timeout=5)
    assert len(store.cookies) == 0
    assert "Cookie" not in store.prepare_request(requests.Request("GET", recorder)).headers
    assert len(plain.cookies) == 1  # what the store's session refuses to keep
    assert reply.request.headers["Cookie"] == "session=from-the-server"
    prepared = store.prepare_request(requests.Request("GET", f"{recorder}/k"))
    assert prepared.headers["Accept-Encoding"] == "identity"
    assert store.verify is False

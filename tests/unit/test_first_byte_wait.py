"""A file's GET through the server may take long to start, never long between bytes.

A server over a remote store copies the whole object before its reply starts (MLflow's S3
proxy), so the wait for the first byte grows with the file; once bytes flow, the idle timeout
holds again. Against a real HTTP server on loopback that waits before its reply, or in the
middle of it. Short timeouts keep the test quick; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

import pytest
from _rest_fakes import FakeSleep, loopback_server, make_settings

from registry_sdk import RegistryUnavailableError
from registry_sdk._backends import rest
from registry_sdk._backends.rest import ARTIFACTS_API, RestBackend, first_byte_timeout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BODY = bytes(range(256)) * 64
IDLE = 0.3  # the client's timeout, seconds
SLOW = 1.0  # how long the server waits, seconds: longer than IDLE


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Where the server waits: "before" its reply, or "during" it (after half the body).
    wait: ClassVar[str] = "before"
    release: ClassVar[threading.Event]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == ARTIFACTS_API:
            listing = {"files": [{"path": "blob", "is_dir": False, "file_size": len(BODY)}]}
            self._send(json.dumps(listing).encode())
            return
        if self.wait == "before":
            self.release.wait(SLOW)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY[: len(BODY) // 2])
        self.wfile.flush()
        if self.wait == "during":
            self.release.wait(SLOW)
        self.wfile.write(BODY[len(BODY) // 2 :])

    def _send(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[str]:
    Handler.release = threading.Event()
    with loopback_server(Handler) as uri:
        try:
            yield uri
        finally:
            Handler.release.set()  # a reply still waiting stops waiting


def download(uri: str, dest: Path) -> None:
    settings = make_settings(uri, timeout=IDLE, max_retries=1, direct_download_min_bytes=0)
    backend = RestBackend(settings, sleep=FakeSleep())
    try:
        backend.download_artifacts("1/run/artifacts/model", dest, label="m/1")
    finally:
        backend.close()


def test_the_wait_for_the_first_byte_grows_with_the_file():
    assert first_byte_timeout(30, -1) == 30  # unknown size: the idle timeout
    assert first_byte_timeout(30, 0) == 30
    assert first_byte_timeout(30, 1 << 30) == 30 + (1 << 30) / rest.SLOWEST_COPY_BYTES_PER_S
    assert first_byte_timeout(30, 1 << 30) > 8 * 60  # 1 GiB: minutes, as S3-backed servers take


def test_a_reply_that_takes_longer_than_the_idle_timeout_to_start_is_waited_for(
    server, tmp_path, monkeypatch
):
    monkeypatch.setattr(rest, "SLOWEST_COPY_BYTES_PER_S", 1024)  # this file: 16 s to start
    Handler.wait = "before"

    download(server, tmp_path / "dest")

    assert (tmp_path / "dest" / "blob").read_bytes() == BODY


def test_once_the_reply_started_the_idle_timeout_holds_between_bytes(server, tmp_path, monkeypatch):
    monkeypatch.setattr(rest, "SLOWEST_COPY_BYTES_PER_S", 1024)
    Handler.wait = "during"

    with pytest.raises(RegistryUnavailableError, match=r"(?i)timed out"):
        download(server, tmp_path / "dest")

"""A small HTTP proxy on loopback in front of a real server: counts requests, injects faults.

Point a client's tracking URI at :attr:`CountingProxy.uri`; every request it sends is recorded
(method, path, query) before being forwarded to the upstream server, whose reply is passed back.
Faults apply to replies whose path matches, on chosen attempts:

* :meth:`CountingProxy.cut` sends the headers, part of the body, then closes the connection
  (with the full ``Content-Length``, so the client can tell; or close-delimited, so it cannot);
* :meth:`CountingProxy.stall` sends part of the body, then waits until released (or stopped).

Both apply to whole (200) and partial (206, an answer to ``Range``) replies. The body bytes sent
for each artifact file are counted (:meth:`CountingProxy.bytes_sent`).

Upstream replies are read whole before being sent on: model files in the tests are small.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

    from typing_extensions import Self

HOST = "127.0.0.1"
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
#: Headers that belong to one connection, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
#: Longest a stalled reply waits to be released (a bound, never reached by a passing test).
STALL_LIMIT_S = 120.0


@dataclass(frozen=True)
class Seen:
    """One request that reached the proxy."""

    method: str
    path: str
    query: str
    #: The request's ``Range`` header, if any.
    range: str | None = None

    @property
    def is_artifact_file(self) -> bool:
        """A file download from the artifact proxy (not a listing)."""
        return self.path.startswith(ARTIFACTS_API + "/")

    @property
    def is_artifact_listing(self) -> bool:
        """A listing of the artifact proxy (``GET .../artifacts?path=...``)."""
        return self.path == ARTIFACTS_API

    @property
    def endpoint(self) -> str:
        """A short name: the REST endpoint, or ``artifact-list`` / ``artifact-file``."""
        if self.is_artifact_file:
            return "artifact-file"
        if self.is_artifact_listing:
            return "artifact-list"
        return self.path.removeprefix("/api/2.0/mlflow/")


@dataclass
class Stall:
    """A stalled reply: ``reached`` is set once part of the body is sent; set ``release``."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Fault:
    matches: Callable[[Seen], bool]
    after_bytes: int
    attempts: set[int]
    keep_length: bool = True
    stall: Stall | None = None
    seen: int = 0


class CountingProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            msg = f"upstream must be http://host:port, got {upstream!r}"
            raise ValueError(msg)
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._sent: Counter[str] = Counter()
        self._in_flight = 0
        #: The most GETs of artifact files answered at the same time.
        self.peak_file_gets = 0
        self._faults: list[_Fault] = []
        self._stalls: list[Stall] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def uri(self) -> str:
        """The URI clients use instead of the upstream's."""
        assert self._server is not None, "the proxy is not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        """Listen on a free loopback port and serve in a daemon thread."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer((HOST, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release every stalled reply; idempotent."""
        for stall in self._stalls:
            stall.release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what was seen

    @property
    def seen(self) -> list[Seen]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._seen)

    def clear(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._seen.clear()

    def endpoints(self) -> Counter[str]:
        """How many requests each endpoint got (see :attr:`Seen.endpoint`)."""
        return Counter(s.endpoint for s in self.seen)

    def bytes_sent(self) -> Counter[str]:
        """Body bytes sent back for each artifact file, by path under the artifact API."""
        with self._lock:
            return Counter(self._sent)

    def _file_get(self, entering: bool) -> None:
        with self._lock:
            self._in_flight += 1 if entering else -1
            self.peak_file_gets = max(self.peak_file_gets, self._in_flight)

    def _count(self, seen: Seen, nbytes: int) -> None:
        if seen.is_artifact_file and seen.method == "GET":
            with self._lock:
                self._sent[seen.path[len(ARTIFACTS_API) + 1 :]] += nbytes

    def file_downloads(self) -> Counter[str]:
        """How many times each artifact file was requested, by path under the artifact API."""
        return Counter(s.path[len(ARTIFACTS_API) + 1 :] for s in self.seen if s.is_artifact_file)

    # ------------------------------------------------------------------ faults

    def cut(
        self,
        path_suffix: str,
        *,
        after_bytes: int,
        attempts: tuple[int, ...] = (1,),
        keep_length: bool = True,
    ) -> None:
        """Cut replies to GETs of paths ending in ``path_suffix`` after ``after_bytes`` of body.

        ``attempts`` are 1-based among matching requests. With ``keep_length`` the headers
        announce the full ``Content-Length``; without it the reply is delimited by the close,
        so HTTP alone cannot tell it was cut.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    lambda s: s.method == "GET" and s.path.endswith(path_suffix),
                    after_bytes,
                    set(attempts),
                    keep_length,
                )
            )

    def stall(
        self, path_suffix: str, *, after_bytes: int, attempts: tuple[int, ...] = (1,)
    ) -> Stall:
        """Stall replies to GETs of paths ending in ``path_suffix`` after ``after_bytes``."""
        stall = Stall()
        with self._lock:
            self._stalls.append(stall)
            self._faults.append(
                _Fault(
                    lambda s: s.method == "GET" and s.path.endswith(path_suffix),
                    after_bytes,
                    set(attempts),
                    stall=stall,
                )
            )
        return stall

    def clear_faults(self) -> None:
        """Remove every fault (stalled replies are released)."""
        with self._lock:
            for stall in self._stalls:
                stall.release.set()
            self._faults.clear()

    def _arrive(self, seen: Seen) -> _Fault | None:
        with self._lock:
            self._seen.append(seen)
            chosen = None
            for fault in self._faults:
                if fault.matches(seen):
                    fault.seen += 1
                    if chosen is None and fault.seen in fault.attempts:
                        chosen = fault
            return chosen


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: CountingProxy

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads :attr:`CountingProxy.seen` instead."""

    def do_GET(self) -> None:
        file_get = urlsplit(self.path).path.startswith(ARTIFACTS_API + "/")
        if file_get:
            self.owner._file_get(entering=True)
        try:
            self._forward()
        finally:
            if file_get:
                self.owner._file_get(entering=False)

    def do_POST(self) -> None:
        self._forward()

    def do_PATCH(self) -> None:
        self._forward()

    def do_PUT(self) -> None:
        self._forward()

    def do_DELETE(self) -> None:
        self._forward()

    def do_HEAD(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self._replying = False
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, parts.query, self.headers.get("Range"))
        fault = self.owner._arrive(seen)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection(
            self.owner.upstream_host, self.owner.upstream_port, timeout=60
        )
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            reply = upstream.getresponse()
            status = reply.status
            reply_headers = [(k, v) for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP]
            if fault is None and self._streams(seen, reply):
                self._stream(seen, reply, status, reply_headers)
                return
            data = reply.read()
        except OSError:  # the upstream is down: what a real reverse proxy would say
            if self._replying:
                self.close_connection = True  # cut mid-body: the client sees it short
                return
            self.send_response_only(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        finally:
            upstream.close()
        if fault is not None and status in {200, 206} and self.command == "GET":
            self._faulty(seen, fault, status, reply_headers, data)
            return
        self.send_response_only(status)
        for key, value in reply_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
            self.owner._count(seen, len(data))

    #: Whether the reply's head went out already (then a failure can only cut the body).
    _replying = False

    def _streams(self, seen: Seen, reply: http.client.HTTPResponse) -> bool:
        """Whether to pass this reply on as it comes: a file's body whose length is known.

        Its bytes are counted as they go, so a test sees a big download's progress.
        """
        return (
            self.command == "GET"
            and seen.is_artifact_file
            and reply.status in {200, 206}
            and reply.getheader("Content-Length") is not None
        )

    def _stream(
        self,
        seen: Seen,
        reply: http.client.HTTPResponse,
        status: int,
        headers: list[tuple[str, str]],
    ) -> None:
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", reply.getheader("Content-Length", "0"))
        self.end_headers()
        self._replying = True
        while chunk := reply.read(1 << 20):
            self.wfile.write(chunk)
            self.owner._count(seen, len(chunk))

    def _faulty(
        self,
        seen: Seen,
        fault: _Fault,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
    ) -> None:
        self.send_response_only(status)
        for key, value in headers:
            self.send_header(key, value)
        if fault.keep_length:
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data[: fault.after_bytes])
        self.wfile.flush()
        self.owner._count(seen, len(data[: fault.after_bytes]))
        if fault.stall is not None:
            fault.stall.reached.set()
            fault.stall.release.wait(STALL_LIMIT_S)
        self.close_connection = True

"""REST backend: an MLflow tracking server over HTTP(S), with requests; never imports mlflow.

One ``requests.Session`` per backend, a timeout on every call, and retries on connection errors,
408/429/5xx and ``Retry-After`` within the operation's one budget (:mod:`registry_sdk._retry`).
Calls that create something are sent once: the client decides how to retry them safely.

Every call has a short connect timeout and the configured timeout as its read timeout, which
requests applies between bytes: an idle timeout, so a big download that keeps moving is never
cut. A version's files are downloaded by a bounded pool of threads sharing the session; each file
goes to ``<name>.incomplete`` and a try cut short resumes from its size with an HTTP ``Range``.

A big file comes straight from the artifact store when the server hands out presigned URLs
(MLflow 3 over S3): in parallel byte ranges, through a second session that carries none of this
client's credentials. Where the server has no such URLs, or the store refuses or cannot be
reached, the file goes through the server's artifact proxy as any other.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import errno
import hashlib
import logging
import os
import queue
import re
import stat
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, as_completed, wait
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import requests

from registry_sdk._backends.base import Page, ServerInfo, model_missing_or
from registry_sdk._capabilities import (
    FEATURES,
    Capabilities,
    feature_of_endpoint,
    parse_server_version,
)
from registry_sdk._config import Settings
from registry_sdk._http import USER_AGENT, Session, scrub, store_session
from registry_sdk._progress import Progress
from registry_sdk._retry import Budget, Failure, current, is_refused, operation, retry_call
from registry_sdk.entities import ModelVersion, RegisteredModel, RunData
from registry_sdk.errors import (
    InvalidResponseError,
    NotFoundError,
    RegistryError,
    RegistryUnavailableError,
    Subject,
    from_response,
    in_registry,
    is_missing_endpoint,
    redact,
)
from registry_sdk.webhooks import Webhook, WebhookTestResult, events_to_json

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

logger = logging.getLogger("registry_sdk.rest")

#: Statuses worth another try: the server or something in front of it is busy or restarting.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_API = "/api/2.0/mlflow"
#: The artifact proxy's endpoint (``mlflow server --serve-artifacts``), below the server's URI.
ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
#: One path component: no separators, no "." or "..", no control characters.
_SAFE_ARTIFACT_NAME = re.compile(r"^(?!\.\.?$)[^/\\\x00-\x1f]+$")
#: Names Windows cannot hold as files, or reads as something else (a stream, a device).
_WINDOWS_UNSAFE_NAME = re.compile(
    r'[<>:"|?*]|[. ]$|^(?:CON|PRN|AUX|NUL|COM\d|LPT\d)(?:\..*)?$', re.IGNORECASE
)
#: Bytes in one file name: the limit of ext4, XFS, APFS and NTFS (in UTF-16 units there).
MAX_NAME_BYTES = 255
#: Folders below a version's artifact root; a listing that nests deeper is refused.
MAX_ARTIFACT_DEPTH = 64
#: Files and folders in one version's artifacts; a listing with more is refused.
MAX_ARTIFACT_ENTRIES = 100_000
#: Control characters: never part of an artifact location.
_CONTROL = frozenset(map(chr, [*range(0x20), 0x7F]))
#: Digits of the largest int64, the type of a listing's ``file_size``.
_DIGITS = 19
#: Opening a file to write an artifact: never through a symlink planted in its place.
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
)
#: Opening a file being downloaded to go on from where a cut try stopped.
_RESUME_FLAGS = _WRITE_FLAGS & ~os.O_TRUNC
#: What a file being downloaded is called until it is whole: ``<name>.incomplete``.
INCOMPLETE = ".incomplete"
#: A 206 reply's ``Content-Range``: ``bytes <first>-<last>/<total or *>``.
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)")
#: Bytes read at a time. A try cut mid-read loses that read (urllib3 drops a short read of a
#: reply with a Content-Length), so this bounds what a resumed try fetches again.
_CHUNK = 1 << 18
_PARTIAL_CONTENT = 206
_RANGE_NOT_SATISFIABLE = 416
_FORBIDDEN = 403
#: The artifact proxy's presigned-URL endpoint (MLflow 3; MLflow 2 servers answer 404).
PRESIGNED_API = "/api/2.0/mlflow-artifacts/presigned"
#: Answers meaning "no presigned URLs from this server": no such endpoint (MLflow 2), not for
#: this store (MLflow 3 over a local directory answers 501), or not for this user.
_NO_PRESIGNED = frozenset({400, 401, 403, 404, 405, 501})
#: The slowest rate at which a server is expected to copy a file from its store before its
#: reply starts: 2 MiB/s, so 1 GiB may take 8.5 minutes more than the idle timeout to start.
SLOWEST_COPY_BYTES_PER_S = 2 << 20
#: Files this big are hashed on a thread of their own while they are written.
HASH_THREAD_MIN_BYTES = 16 << 20
#: The smallest byte range a direct download splits off.
MIN_RANGE_BYTES = 1 << 20
#: A direct download is split into ranges fetched at once only after this many seconds of one
#: stream, and only when what is left would take more than :data:`SPLIT_WORTH_S` at its rate.
SPLIT_AFTER_S = 1.0
SPLIT_WORTH_S = 2.0
#: How often a direct download looks at whether to split.
SPLIT_CHECK_S = 0.25
#: Headers a presigned reply may not ask for: the client sets them, they belong to one
#: connection, or they carry credentials (a presigned URL carries its own, in the query).
_RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-length",
        "cookie",
        "host",
        "proxy-authorization",
        "range",
        "te",
        "transfer-encoding",
        "upgrade",
    }
)
#: An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
#: The longest presigned URL accepted.
_MAX_URL_CHARS = 16_384


def first_byte_timeout(idle: float, size: int) -> float:
    """How long a file's GET through the server may wait for the reply to start.

    A server whose artifacts are in a remote store (S3, GCS, ...) copies the whole object to a
    temporary file before it sends the first byte, even of a ranged reply: the wait grows with
    the file. ``idle`` plus the time to copy ``size`` bytes at :data:`SLOWEST_COPY_BYTES_PER_S`
    (a file of unknown size: ``idle``). Once the reply started, ``idle`` holds between bytes.
    """
    return idle + max(size, 0) / SLOWEST_COPY_BYTES_PER_S


def _wait_between_bytes(response: requests.Response, seconds: float) -> None:
    """Make ``seconds`` the read timeout of the socket ``response``'s body comes from.

    The reply has started: from here the idle timeout holds, not the wait for the first byte.
    Through urllib3's and http.client's attributes; where they are not found, the longer wait
    stays (never a shorter one).
    """
    reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
    sock = getattr(getattr(reader, "raw", None), "_sock", None)
    settimeout = getattr(sock, "settimeout", None)
    if callable(settimeout):
        settimeout(seconds)


class _FileJob(NamedTuple):
    """One file of a download: where it is on the server, where it goes, its listed size."""

    remote: str
    target: Path
    partial: Path
    size: int
    #: Bytes already in ``partial`` from an earlier, interrupted download (resumed, not refetched).
    have: int = 0


def _partial_names(relatives: Sequence[str]) -> dict[str, str]:
    """The name each listed file is downloaded under until whole, relative like the listing.

    ``<name>.incomplete`` beside the file, unless the listing itself holds that path (then
    ``~`` is added until it is free: a file is never written over another's bytes) or it would
    not fit in a file name (then a digest of the name stands for it).
    """
    taken: set[str] = set()
    for relative in relatives:
        parts = relative.split("/")
        taken.update("/".join(parts[:i]).casefold() for i in range(1, len(parts) + 1))
    names: dict[str, str] = {}
    for relative in relatives:
        folder, _, name = relative.rpartition("/")
        base = name + INCOMPLETE
        if len(base.encode("utf-8")) > MAX_NAME_BYTES - 8:
            base = f".{hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]}{INCOMPLETE}"
        candidate = f"{folder}/{base}" if folder else base
        while candidate.casefold() in taken:
            candidate += "~"
        taken.add(candidate.casefold())
        names[relative] = candidate
    return names


def _resumable(job: _FileJob) -> _FileJob:
    """``job`` as an interrupted download left it: ``have`` -1 when its file is whole already.

    Only regular files count (``lstat``: never through a link); a partial file as long as the
    listed size or longer, or a file of another size, is fetched again from its first byte.
    """
    if job.size < 0:
        return job
    with contextlib.suppress(OSError):
        whole = job.target.lstat()
        if stat.S_ISREG(whole.st_mode) and whole.st_size == job.size:
            return job._replace(have=-1)
    with contextlib.suppress(OSError):
        partial = job.partial.lstat()
        if stat.S_ISREG(partial.st_mode) and 0 < partial.st_size < job.size:
            return job._replace(have=partial.st_size)
    return job


class _Presigned(NamedTuple):
    """A presigned URL of one file and the headers the server says to send with it."""

    url: str
    headers: dict[str, str]


def parse_presigned(data: object, size: int, action: str) -> _Presigned:
    """Check the server's presigned-URL reply for a file of ``size`` bytes; never trusted.

    Raises:
        InvalidResponseError: not a JSON object; a URL that is not http(s), names no host,
            carries credentials or control characters; headers that are not names and values,
            or ask for one the client sets itself or one carrying credentials; a
            ``file_size`` other than the listing's.
    """
    if not isinstance(data, dict):
        msg = f"{action}: the server's reply is not a presigned URL"
        raise InvalidResponseError(msg)
    url = _presigned_url(data.get("url"), action)
    headers = _presigned_headers(data.get("headers"), action)
    announced = data.get("file_size")
    if announced is not None:
        digits = isinstance(announced, str) and announced.isascii() and announced.isdigit()
        number = isinstance(announced, int) and not isinstance(announced, bool)
        if not (digits or number) or int(announced) != size:
            msg = (
                f"{action}: the presigned URL's file_size {announced!r} is not the "
                f"{size} bytes the listing announced"
            )
            raise InvalidResponseError(msg)
    return _Presigned(url, headers)


def _presigned_url(url: object, action: str) -> str:
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_CHARS:
        msg = f"{action}: the server's reply holds no usable URL"
        raise InvalidResponseError(msg)
    try:
        parts = urlsplit(url)
        acceptable = (
            parts.scheme.lower() in {"http", "https"}
            and bool(parts.hostname)
            and parts.username is None
            and parts.password is None
            and not any(ch in _CONTROL or ch.isspace() for ch in url)
        )
    except ValueError:  # a port that is not a number, an unclosed IPv6 bracket
        acceptable = False
    if not acceptable:
        msg = (
            f"{action}: refusing the presigned URL {redact(url[:80])!r}: only http(s) URLs "
            "naming a host, without credentials or control characters, are fetched"
        )
        raise InvalidResponseError(msg)
    return url


def _presigned_headers(raw: object, action: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        msg = f"{action}: the presigned URL's headers are not an object"
        raise InvalidResponseError(msg)
    headers: dict[str, str] = {}
    for key, value in raw.items():
        ok = (
            isinstance(key, str)
            and _HEADER_NAME.fullmatch(key) is not None
            and isinstance(value, str)
            and not any(ch in _CONTROL for ch in value)
        )
        if not ok:
            msg = f"{action}: refusing the presigned URL's header {str(key)[:60]!r}"
            raise InvalidResponseError(msg)
        if key.lower() in _RESERVED_HEADERS:
            msg = f"{action}: refusing the presigned URL's header {key!r}: the client sets it"
            raise InvalidResponseError(msg)
        headers[key] = value
    return headers


class _StoreRefused(Exception):  # noqa: N818 - a signal to fall back, never seen outside
    """The store will not serve the file directly: fetch it through the server instead.

    ``unreachable``: no connection to the store at all (a store only the server can reach).
    """

    def __init__(self, reason: str, *, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class _Refreshed(Exception):  # noqa: N818 - a signal to try again, never seen outside
    """The store refused an expired presigned URL and a fresh one was given: try again."""


class _Cancelled(Exception):  # noqa: N818 - a signal to stop, never seen outside
    """Another file of the same download failed: this one stops too."""


class _Transient(Exception):  # noqa: N818 - a signal to retry, never seen outside
    """An attempt that may succeed if repeated; carries the error to raise if it never does."""

    def __init__(self, error: RegistryError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        kind = getattr(error, "failure", Failure.TRANSIENT.value)
        self.failure = Failure(kind)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def _is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (JSON may carry lone surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RestBackend:
    """The :class:`~registry_sdk._backends.base.Backend` for an MLflow server (``http(s)://``)."""

    max_models_page = 1000
    max_versions_page = 200_000

    def __init__(
        self,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.uri = settings.registry_uri.rstrip("/")
        self._timeout = settings.timeout
        self._sleep = sleep
        self._session = session or Session(settings.download_workers)
        self._session.headers["User-Agent"] = USER_AGENT
        if settings.token:
            self._session.headers["Authorization"] = f"Bearer {settings.token}"
        elif settings.username and settings.password:
            self._session.auth = (settings.username, settings.password)
        if settings.insecure_tls:
            self._session.verify = False
        elif settings.server_cert_path:
            self._session.verify = settings.server_cert_path
        if settings.client_cert_path:
            self._session.cert = settings.client_cert_path
        #: The server's capabilities once learnt (``GET /version``, asked at most once).
        self._capabilities: Capabilities | None = None
        #: Whether the server hands out presigned URLs (None: not known yet) and whether its
        #: store answered a direct download at all; learnt once per backend.
        self._presigns: bool | None = None
        self._store_unreachable = False
        self._presign_lock = threading.Lock()
        #: The session for the artifact store: no credentials, no cookies (made when needed).
        self._store_session: requests.Session | None = None
        #: Byte ranges fetched from the store at once, over every file of this backend.
        self._range_slots = threading.BoundedSemaphore(settings.download_workers)

    def __repr__(self) -> str:
        return f"RestBackend({self.uri!r}, auth={self.settings.auth_kind!r})"

    def _store(self) -> requests.Session:
        """The session for presigned URLs: none of this client's credentials, no cookies."""
        with self._presign_lock:
            if self._store_session is None:
                # Byte ranges count bytes as stored: never a body the store compressed.
                self._store_session = store_session(self.settings.download_workers, identity=True)
            return self._store_session

    # ---------------------------------------------------------------------------- transport

    def _log_retry(self, exc: BaseException, tries: int, delay: float) -> None:
        logger.info("retrying after %s (attempt %d, waiting %.2fs)", exc, tries, delay)

    @staticmethod
    def _classify(exc: BaseException) -> tuple[Failure, float | None] | None:
        if not isinstance(exc, _Transient):
            return None
        return exc.failure, exc.retry_after

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        subject: Subject | None,
        action: str,
        stream: bool = False,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        first_byte: float | None = None,
    ) -> requests.Response:
        """One request.

        ``first_byte`` (seconds) waits that long for the reply to start, then ``timeout``
        holds between the bytes of a streamed body.
        """
        started = time.perf_counter()
        connect, idle = Settings.http_timeout(timeout or self._timeout)
        try:
            # verify is passed per call: requests lets REQUESTS_CA_BUNDLE override session.verify,
            # which would silently undo MLFLOW_TRACKING_INSECURE_TLS / _SERVER_CERT_PATH.
            response = self._session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                timeout=(connect, max(idle, first_byte or 0)),
                verify=self._session.verify,
                stream=stream,
            )
        # ChunkedEncodingError: the connection dropped mid-reply, as transient as a reset.
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            unavailable = RegistryUnavailableError(
                redact(f"{action}: cannot reach the registry at {self.uri}: {exc}")
            )
            if isinstance(exc, requests.Timeout):
                unavailable.failure = Failure.TIMEOUT.value
            elif is_refused(exc):
                unavailable.failure = Failure.REFUSED.value
            raise _Transient(unavailable) from None
        except requests.RequestException as exc:
            msg = redact(f"{action}: request to {self.uri} failed: {exc}")
            raise RegistryError(msg) from None
        logger.debug(
            "%s %s -> %d in %.1f ms",
            method,
            url[len(self.uri) :],
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code in RETRY_STATUSES:
            error = from_response(response, subject=subject, action=action)
            raise _Transient(error, parse_retry_after(response.headers.get("Retry-After")))
        if not response.ok:
            raise from_response(response, subject=subject, action=action)
        if stream and first_byte is not None and first_byte > idle:
            _wait_between_bytes(response, idle)
        return response

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        subject: Subject | None = None,
        action: str,
        retry: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """Send one API call, retrying transient failures unless ``retry`` is false.

        Retries spend the budget of the operation under way (see :mod:`registry_sdk._retry`),
        or a fresh one for a lone call; a call with ``retry=False`` is tried once.
        """
        budget = current(self.settings)
        args = (method, self.uri + endpoint, params, body, subject, action, stream)
        timeout = budget.request_timeout

        def attempt() -> requests.Response:
            return self._attempt(*args, timeout=timeout)

        try:
            if not retry:
                return attempt()
            return retry_call(
                attempt,
                budget=budget,
                classify=self._classify,
                sleep=self._sleep,
                on_retry=self._log_retry,
            )
        except _Transient as final:
            raise self._final(final) from None

    @staticmethod
    def _final(transient: _Transient) -> RegistryError:
        error = transient.error
        if isinstance(error, RegistryUnavailableError):
            error.retry_after = transient.retry_after
        return error

    def _json(
        self,
        method: str,
        endpoint: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        subject: Subject | None = None,
        action: str,
        retry: bool = True,
    ) -> dict[str, Any]:
        try:
            response = self.request(
                method,
                _API + endpoint,
                params=params,
                body=body,
                subject=subject,
                action=action,
                retry=retry,
            )
        except NotFoundError as exc:
            if is_missing_endpoint(exc):
                raise self._missing_endpoint(_API + endpoint, exc, action) from None
            raise in_registry(exc, self.uri) from None
        try:
            data = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
            kind = response.headers.get("Content-Type", "unknown content type")
            msg = f"{action}: the server at {self.uri} sent a reply that is not JSON ({kind})"
            raise InvalidResponseError(msg, status=response.status_code) from None
        if not isinstance(data, dict):
            msg = f"{action}: expected a JSON object from {self.uri}, got {type(data).__name__}"
            raise InvalidResponseError(msg, status=response.status_code)
        return data

    def _missing_endpoint(self, endpoint: str, error: NotFoundError, action: str) -> RegistryError:
        """What a 404 without an MLflow error on ``endpoint`` means: the server lacks the route.

        For an endpoint that came with a feature, the server's version decides (one
        ``GET /version``, remembered): too old, or silent about its version, is an
        :class:`UnsupportedServerError`; new enough keeps the not-found, naming the endpoint.
        """
        feature = feature_of_endpoint(endpoint)
        detail = f"HTTP {error.status or 404} on {endpoint}"
        if feature is not None:
            caps = self.capabilities()
            if caps.server_version is None or not caps.supports(feature):
                return caps.unsupported(
                    feature,
                    detail=f"{action}: {detail}",
                    status=error.status,
                    server_message=error.server_message,
                )
            running = f"runs MLflow {caps.server_version}, which has {FEATURES[feature][0]}, but "
        else:
            running = ""
        msg = (
            f"{action}: the server at {self.uri} {running}has no endpoint {endpoint} ({detail} "
            "without an MLflow error): check that the URI is the MLflow server's root, and that "
            "a proxy in front of it routes the whole API"
        )
        return NotFoundError(
            redact(msg),
            status=error.status,
            error_code=error.error_code,
            server_message=error.server_message,
        )

    @staticmethod
    def _field(data: Mapping[str, Any], key: str, action: str) -> Any:
        if key not in data:
            msg = f"{action}: the server's reply has no {key!r}"
            raise InvalidResponseError(msg)
        return data[key]

    def _model(self, data: Mapping[str, Any], action: str) -> RegisteredModel:
        return RegisteredModel.from_json(self._field(data, "registered_model", action))

    def _version(self, data: Mapping[str, Any], action: str) -> ModelVersion:
        return ModelVersion.from_json(self._field(data, "model_version", action))

    @staticmethod
    def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
        return [{"key": k, "value": v} for k, v in tags.items()]

    @staticmethod
    def _list(data: Mapping[str, Any], key: str, action: str) -> list[Any]:
        items = data.get(key) or []
        if not isinstance(items, list):
            msg = f"{action}: expected a list in {key!r}, got {type(items).__name__}"
            raise InvalidResponseError(msg)
        return items

    @staticmethod
    def _search_params(
        filter: str | None, order_by: Sequence[str], max_results: int, page_token: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"max_results": max_results}
        optional = {"filter": filter, "order_by": list(order_by), "page_token": page_token}
        params.update({k: v for k, v in optional.items() if v})
        return params

    @staticmethod
    def _token(data: Mapping[str, Any]) -> str | None:
        token = data.get("next_page_token")
        return token if isinstance(token, str) and token else None

    # ---------------------------------------------------------------------------- models

    def create_model(
        self, name: str, *, description: str | None, tags: Mapping[str, str]
    ) -> RegisteredModel:
        """Create a registered model (one attempt)."""
        body: dict[str, Any] = {"name": name, "tags": self._tags(tags)}
        if description is not None:
            body["description"] = description
        action = f"create model {name!r}"
        data = self._json(
            "POST", "/registered-models/create", body=body, action=action, retry=False
        )
        return self._model(data, action)

    def get_model(self, name: str) -> RegisteredModel:
        """Fetch a registered model with its tags and aliases."""
        action = f"get model {name!r}"
        data = self._json(
            "GET", "/registered-models/get", params={"name": name}, subject="model", action=action
        )
        return self._model(data, action)

    def search_models(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
        retry: bool = True,
    ) -> Page[RegisteredModel]:
        """One page of registered models (one attempt only with ``retry=False``)."""
        params = self._search_params(filter, order_by, max_results, page_token)
        action = "search models"
        data = self._json(
            "GET", "/registered-models/search", params=params, action=action, retry=retry
        )
        items = self._list(data, "registered_models", action)
        return Page(tuple(RegisteredModel.from_json(m) for m in items), self._token(data))

    def update_model(self, name: str, *, description: str) -> RegisteredModel:
        """Set a registered model's description."""
        action = f"update model {name!r}"
        data = self._json(
            "PATCH",
            "/registered-models/update",
            body={"name": name, "description": description},
            subject="model",
            action=action,
        )
        return self._model(data, action)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a registered model."""
        action = f"rename model {name!r} to {new_name!r}"
        data = self._json(
            "POST",
            "/registered-models/rename",
            body={"name": name, "new_name": new_name},
            subject="model",
            action=action,
            retry=False,
        )
        return self._model(data, action)

    def delete_model(self, name: str) -> None:
        """Delete a registered model and all its versions."""
        self._json(
            "DELETE",
            "/registered-models/delete",
            body={"name": name},
            subject="model",
            action=f"delete model {name!r}",
        )

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on a registered model."""
        self._json(
            "POST",
            "/registered-models/set-tag",
            body={"name": name, "key": key, "value": value},
            subject="model",
            action=f"set tag {key!r} on model {name!r}",
        )

    def delete_model_tag(self, name: str, key: str) -> None:
        """Delete a tag from a registered model."""
        self._json(
            "DELETE",
            "/registered-models/delete-tag",
            body={"name": name, "key": key},
            subject="model",
            action=f"delete tag {key!r} of model {name!r}",
        )

    # ---------------------------------------------------------------------------- versions

    def create_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None,
        tags: Mapping[str, str],
        description: str | None,
        run_link: str | None,
        model_id: str | None,
    ) -> ModelVersion:
        """Create a model version (one attempt: never retried blindly)."""
        body: dict[str, Any] = {"name": name, "source": source, "tags": self._tags(tags)}
        optional = {
            "run_id": run_id,
            "description": description,
            "run_link": run_link,
            "model_id": model_id,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        action = f"create a version of {name!r}"
        data = self._json(
            "POST",
            "/model-versions/create",
            body=body,
            subject="model",
            action=action,
            retry=False,
        )
        return self._version(data, action)

    def get_version(self, name: str, version: int) -> ModelVersion:
        """Fetch one version (its ``aliases`` as the server reports them)."""
        action = f"get version {name}/{version}"
        try:
            data = self._json(
                "GET",
                "/model-versions/get",
                params={"name": name, "version": str(version)},
                subject="version",
                action=action,
            )
        except NotFoundError as missing:
            raise model_missing_or(self, name, missing) from None
        return self._version(data, action)

    def search_versions(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[ModelVersion]:
        """One page of model versions."""
        params = self._search_params(filter, order_by, max_results, page_token)
        action = "search versions"
        data = self._json("GET", "/model-versions/search", params=params, action=action)
        items = self._list(data, "model_versions", action)
        return Page(tuple(ModelVersion.from_json(v) for v in items), self._token(data))

    def update_version(self, name: str, version: int, *, description: str) -> ModelVersion:
        """Set a version's description."""
        action = f"update version {name}/{version}"
        data = self._json(
            "PATCH",
            "/model-versions/update",
            body={"name": name, "version": str(version), "description": description},
            subject="version",
            action=action,
        )
        return self._version(data, action)

    def delete_version(self, name: str, version: int) -> None:
        """Delete one version."""
        self._json(
            "DELETE",
            "/model-versions/delete",
            body={"name": name, "version": str(version)},
            subject="version",
            action=f"delete version {name}/{version}",
        )

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set a tag on a version."""
        self._json(
            "POST",
            "/model-versions/set-tag",
            body={"name": name, "version": str(version), "key": key, "value": value},
            subject="version",
            action=f"set tag {key!r} on {name}/{version}",
        )

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        """Delete a tag from a version."""
        self._json(
            "DELETE",
            "/model-versions/delete-tag",
            body={"name": name, "version": str(version), "key": key},
            subject="version",
            action=f"delete tag {key!r} of {name}/{version}",
        )

    def get_download_uri(self, name: str, version: int) -> str:
        """Where the version's artifacts live."""
        action = f"get the artifact location of {name}/{version}"
        data = self._json(
            "GET",
            "/model-versions/get-download-uri",
            params={"name": name, "version": str(version)},
            subject="version",
            action=action,
        )
        uri = self._field(data, "artifact_uri", action)
        if not isinstance(uri, str):
            msg = f"{action}: artifact_uri is not a string"
            raise InvalidResponseError(msg)
        if not _is_text(uri) or any(c in _CONTROL for c in uri):
            msg = f"{action}: artifact_uri {uri!r} holds control characters or is not valid text"
            raise InvalidResponseError(msg)
        try:
            usable = bool(urlsplit(uri).scheme) or uri.startswith("/")
        except ValueError:  # e.g. an unclosed IPv6 bracket
            usable = False
        if not usable:
            # Empty, relative or unparsable: a relative path would name *our* working directory.
            msg = f"{action}: artifact_uri {uri!r} is neither a URI nor an absolute path"
            raise InvalidResponseError(msg)
        return uri

    # ---------------------------------------------------------------------------- aliases

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self._json(
            "POST",
            "/registered-models/alias",
            body={"name": name, "alias": alias, "version": str(version)},
            subject="version",
            action=f"set alias {name}@{alias} -> {version}",
        )

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``."""
        self._json(
            "DELETE",
            "/registered-models/alias",
            body={"name": name, "alias": alias},
            subject="alias",
            action=f"delete alias {name}@{alias}",
        )

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at."""
        action = f"resolve {name}@{alias}"
        try:
            data = self._json(
                "GET",
                "/registered-models/alias",
                params={"name": name, "alias": alias},
                subject="alias",
                action=action,
            )
        except NotFoundError as missing:
            raise model_missing_or(self, name, missing, alias=alias) from None
        return self._version(data, action)

    # ---------------------------------------------------------------------------- legacy stages

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (MLflow's deprecated stage API)."""
        action = f"get latest versions of {name!r}"
        data = self._json(
            "POST",
            "/registered-models/get-latest-versions",
            body={"name": name, "stages": list(stages)},
            subject="model",
            action=action,
        )
        return [ModelVersion.from_json(v) for v in self._list(data, "model_versions", action)]

    def transition_stage(
        self, name: str, version: int, stage: str, *, archive_existing: bool
    ) -> ModelVersion:
        """Move a version to a legacy stage (MLflow's deprecated stage API)."""
        action = f"transition {name}/{version} to {stage}"
        data = self._json(
            "POST",
            "/model-versions/transition-stage",
            body={
                "name": name,
                "version": str(version),
                "stage": stage,
                "archive_existing_versions": archive_existing,
            },
            subject="version",
            action=action,
        )
        return self._version(data, action)

    # ---------------------------------------------------------------------------- runs

    def _run(self, run_id: str) -> tuple[Any, dict[str, Any]]:
        """``GET /runs/get``: the run as sent, and its ``info`` (empty when malformed)."""
        action = f"get run {run_id!r}"
        data = self._json("GET", "/runs/get", params={"run_id": run_id}, action=action)
        run = self._field(data, "run", action)
        info = run.get("info") if isinstance(run, dict) else None
        return run, info if isinstance(info, dict) else {}

    def run_artifact_uri(self, run_id: str) -> str:
        """The root of the run's artifacts, as the server names it."""
        uri = self._run(run_id)[1].get("artifact_uri")
        if not isinstance(uri, str) or not uri:
            msg = f"get run {run_id!r}: the server's reply names no artifact location for the run"
            raise InvalidResponseError(msg)
        return uri

    def get_run(self, run_id: str) -> RunData:
        """The run (params, metrics, tags) and its experiment's name."""
        # The run is checked by RunData.from_json; here a malformed one just has no experiment.
        run, info = self._run(run_id)
        experiment_id = info.get("experiment_id")
        name = None
        if experiment_id is not None:
            try:
                exp = self._json(
                    "GET",
                    "/experiments/get",
                    params={"experiment_id": str(experiment_id)},
                    action=f"get experiment {experiment_id}",
                )
                experiment = exp.get("experiment")
                name = experiment.get("name") if isinstance(experiment, dict) else None
            except RegistryError:
                name = None
        return RunData.from_json(run, experiment_name=name if isinstance(name, str) else None)

    # ---------------------------------------------------------------------------- webhooks

    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        *,
        description: str | None,
        secret: str | None,
        status: str | None,
    ) -> Webhook:
        """Create a webhook (one attempt)."""
        body: dict[str, Any] = {"name": name, "url": url, "events": events_to_json(list(events))}
        optional = {"description": description, "secret": secret, "status": status}
        body.update({k: v for k, v in optional.items() if v is not None})
        action = f"create webhook {name!r}"
        data = self._json("POST", "/webhooks", body=body, action=action, retry=False)
        return Webhook.from_json(self._field(data, "webhook", action))

    def list_webhooks(self, page_token: str | None) -> Page[Webhook]:
        """One page of webhooks."""
        params = {"page_token": page_token} if page_token else None
        action = "list webhooks"
        data = self._json("GET", "/webhooks", params=params, action=action)
        items = self._list(data, "webhooks", action)
        return Page(tuple(Webhook.from_json(w) for w in items), self._token(data))

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook."""
        action = f"get webhook {webhook_id!r}"
        data = self._json("GET", f"/webhooks/{quote(webhook_id)}", action=action)
        return Webhook.from_json(self._field(data, "webhook", action))

    def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change a webhook's name, url, events, description, secret or status."""
        body = {k: v for k, v in changes.items() if v is not None}
        if "events" in body:
            body["events"] = events_to_json(list(body["events"]))
        action = f"update webhook {webhook_id!r}"
        data = self._json("PATCH", f"/webhooks/{quote(webhook_id)}", body=body, action=action)
        return Webhook.from_json(self._field(data, "webhook", action))

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook."""
        self._json(
            "DELETE", f"/webhooks/{quote(webhook_id)}", action=f"delete webhook {webhook_id!r}"
        )

    def test_webhook(self, webhook_id: str, event: str | None) -> WebhookTestResult:
        """Make the server send a test delivery and report what the receiver answered."""
        body = {"event": events_to_json([event])[0]} if event else {}
        action = f"test webhook {webhook_id!r}"
        data = self._json(
            "POST", f"/webhooks/{quote(webhook_id)}/test", body=body, action=action, retry=False
        )
        return WebhookTestResult.from_json(self._field(data, "result", action))

    # ---------------------------------------------------------------------------- artifacts

    def artifact_proxy_path(self, uri: str) -> str | None:
        """The path below this server's artifact proxy that the http(s) URL ``uri`` names.

        None when ``uri`` is on another host, scheme or port, or not below the proxy's endpoint.
        """
        try:
            target, own = urlsplit(uri), urlsplit(self.uri)
            ports = {"http": 80, "https": 443}
            target_port = target.port or ports.get(target.scheme.lower())
            own_port = own.port or ports.get(own.scheme.lower())
        except ValueError:  # a port that is not a number, an unclosed IPv6 bracket
            return None
        same_origin = (
            target.scheme.lower() == own.scheme.lower()
            and (target.hostname or "") == (own.hostname or "")
            and target_port == own_port
        )
        endpoint = own.path.rstrip("/") + ARTIFACTS_API
        if not same_origin or not (target.path + "/").startswith(endpoint + "/"):
            return None
        return unquote(target.path[len(endpoint) :]).strip("/")

    def list_artifacts(self, path: str) -> list[tuple[str, bool, int]]:
        """(relative path, is_dir, size) of every file under ``path`` on the artifact proxy.

        The size is -1 when the listing gives none.

        Raises:
            InvalidResponseError: a reply that is not a listing; a name that is not one safe
                file name; a name listed twice in a folder; an odd ``is_dir`` or
                ``file_size``; folders nested deeper than :data:`MAX_ARTIFACT_DEPTH`; more
                than :data:`MAX_ARTIFACT_ENTRIES` entries.
        """
        out: list[tuple[str, bool, int]] = []
        entries = 0
        pending = [(path.strip("/"), 0)]
        while pending:
            folder, depth = pending.pop()
            action = f"list artifacts under {folder!r}"
            response = self.request("GET", ARTIFACTS_API, params={"path": folder}, action=action)
            try:
                files = response.json().get("files") or []
            except (ValueError, AttributeError, RecursionError):  # RecursionError: [[[[...
                files = None
            if not isinstance(files, list):
                msg = f"{action}: the server's reply is not an artifact listing"
                raise InvalidResponseError(msg)
            names: set[str] = set()
            for item in files:
                name = self._artifact_name(item, action)
                if name in names:
                    msg = f"{action}: the listing names {name!r} twice"
                    raise InvalidResponseError(msg)
                names.add(name)
                entries += 1
                if entries > MAX_ARTIFACT_ENTRIES:
                    msg = (
                        f"{action}: the server lists more than {MAX_ARTIFACT_ENTRIES} entries "
                        f"under {path.strip('/')!r}; refusing an artifact tree this large"
                    )
                    raise InvalidResponseError(msg)
                child = f"{folder}/{name}" if folder else name
                if self._artifact_is_dir(item, name, action):
                    if depth >= MAX_ARTIFACT_DEPTH:
                        msg = (
                            f"{action}: the server lists folders nested deeper than "
                            f"{MAX_ARTIFACT_DEPTH} folders below {path.strip('/')!r}"
                        )
                        raise InvalidResponseError(msg)
                    pending.append((child, depth + 1))
                else:
                    out.append((child, False, self._artifact_size(item, name, action)))
        return out

    @staticmethod
    def _artifact_name(item: object, action: str) -> str:
        name = item.get("path") if isinstance(item, dict) else None
        # fullmatch: "$" alone would let a trailing newline through.
        if not isinstance(name, str) or not _SAFE_ARTIFACT_NAME.fullmatch(name):
            msg = f"{action}: refusing the unsafe artifact name {name!r}"
            raise InvalidResponseError(msg)
        if not _is_text(name):
            msg = (
                f"{action}: refusing the artifact name {name!r}: not valid text (a lone surrogate)"
            )
            raise InvalidResponseError(msg)
        size = len(name.encode("utf-8"))
        if size > MAX_NAME_BYTES:
            msg = (
                f"{action}: refusing the artifact name {name[:60]!r}... ({size} bytes): a file "
                f"name may have at most {MAX_NAME_BYTES} bytes"
            )
            raise InvalidResponseError(msg)
        if os.name == "nt" and _WINDOWS_UNSAFE_NAME.search(name):
            msg = f"{action}: refusing the artifact name {name!r}: Windows cannot hold it as a file"
            raise InvalidResponseError(msg)
        return name

    @staticmethod
    def _artifact_is_dir(item: dict[str, Any], name: str, action: str) -> bool:
        is_dir = item.get("is_dir")
        if is_dir is None or isinstance(is_dir, bool):
            return bool(is_dir)
        msg = f"{action}: is_dir {is_dir!r} of {name!r} is not a boolean"
        raise InvalidResponseError(msg)

    @staticmethod
    def _artifact_size(item: dict[str, Any], name: str, action: str) -> int:
        size = item.get("file_size")
        if size is None:
            return -1
        # int64 fields may arrive as strings of digits (protobuf's JSON form).
        if isinstance(size, str) and size.isascii() and size.isdigit() and len(size) <= _DIGITS:
            return int(size)
        if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
            return size
        msg = f"{action}: file_size {size!r} of {name!r} is not a byte count"
        raise InvalidResponseError(msg)

    @staticmethod
    def _write_error(action: str, target: Path, exc: OSError) -> RegistryError:
        """What a failure to write ``target`` locally means to the caller."""
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENAMETOOLONG:
            msg = f"{action}: the artifact path the server listed is too long ({target}): {reason}"
            return InvalidResponseError(redact(msg))
        return RegistryError(redact(f"{action}: cannot write {target}: {reason}"))

    def download_artifacts(
        self, path: str, dest: Path, *, label: str, resume: bool = False
    ) -> dict[str, str]:
        """Stream every file under ``path`` into ``dest``, several at once, each resumable.

        Returns the sha256 of each file that was hashed as it was written (relative POSIX path
        below ``dest``; a file that went on from an earlier download's bytes is not in it).

        ``settings.download_workers`` files are fetched at once. Each file is written as
        ``<name>.incomplete`` and renamed once whole; a try cut short goes on from where it
        stopped (HTTP ``Range``) within the file's retry budget. The first file that fails
        stops the others, and its error is raised; no ``.incomplete`` file is left behind.

        ``resume`` is for a ``dest`` an interrupted download left behind, whose result will be
        verified against a recorded digest (the cache does that): a regular file there of its
        listed size is kept, a shorter ``.incomplete`` one is continued from its last byte, and
        a download that runs out of retries keeps its ``.incomplete`` file for the next call.

        Raises:
            InvalidResponseError: the listing or a file is not what a server may send (see
                :meth:`list_artifacts`; a body longer than its listed size; a ``206`` for
                other bytes than asked for, on the last try).
            RegistryUnavailableError: a file could not be fetched within its retry budget.
            RegistryError: a file could not be written here (disk full, permissions).
        """
        files = self.list_artifacts(path)
        root = path.strip("/")
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            action = f"download the artifacts of {label}"
            raise self._write_error(action, dest, exc) from None
        relatives = [
            (remote, remote[len(root) :].lstrip("/") if root else remote, size)
            for remote, _, size in files
        ]
        partials = _partial_names([relative for _, relative, _ in relatives])
        jobs: list[_FileJob] = []
        names: dict[Path, str] = {}
        for remote, relative, size in relatives:
            target = dest / relative
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                action = f"download artifact {remote!r}"
                raise self._write_error(action, target, exc) from None
            job = _FileJob(remote, target, dest / partials[relative], size)
            jobs.append(_resumable(job) if resume else job)
            names[target] = PurePosixPath(relative).as_posix()
        progress = Progress(label, sum(max(size, 0) for _, _, size in files))
        if resume:
            progress.skip(sum(job.size if job.have < 0 else job.have for job in jobs))
        try:
            digests = self._download_files(
                [job for job in jobs if job.have >= 0], progress, keep=resume
            )
        finally:
            progress.close()
        return {names[target]: digest for target, digest in digests.items()}

    def _download_files(
        self, jobs: Sequence[_FileJob], progress: Progress, *, keep: bool = False
    ) -> dict[Path, str]:
        """Fetch ``jobs`` with at most ``settings.download_workers`` threads; first error wins.

        Returns the sha256 of each target that was hashed as it was written.

        ``keep``: a file that runs out of retries, or is stopped by another's failure, keeps
        its ``.incomplete`` bytes (see :meth:`download_artifacts`).
        """
        workers = min(self.settings.download_workers, len(jobs))
        digests: dict[Path, str] = {}
        if workers <= 1:
            for job in jobs:
                digest = self._fetch_job(job, progress, None, keep=keep)
                if digest is not None:
                    digests[job.target] = digest
            return digests
        cancelled = threading.Event()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-sdk-download")
        try:
            futures = {
                # Each file in a copy of this context: an outer operation's fallback still rules.
                pool.submit(
                    contextvars.copy_context().run,
                    self._fetch_job,
                    job,
                    progress,
                    cancelled,
                    keep=keep,
                ): job
                for job in jobs
            }
            for future in as_completed(futures):
                error = future.exception()
                if error is not None and not isinstance(error, _Cancelled):
                    cancelled.set()
                    raise error
                digest = None if error is not None else future.result()
                if digest is not None:
                    digests[futures[future].target] = digest
        finally:
            # Never return (or let the caller remove ``dest``) while a worker still writes.
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return digests

    def _get_once(
        self,
        endpoint: str,
        action: str,
        headers: Mapping[str, str] | None = None,
        *,
        size: int = -1,
    ) -> requests.Response:
        """One streamed GET; a transient failure stays a ``_Transient`` for the caller's loop.

        ``size``, the bytes of the file asked for, gives the reply longer to start (see
        :func:`first_byte_timeout`); between bytes the idle timeout holds.
        """
        budget = current(self.settings)
        return self._attempt(
            "GET",
            self.uri + endpoint,
            None,
            None,
            None,
            action,
            stream=True,
            timeout=budget.request_timeout,
            headers=headers,
            first_byte=first_byte_timeout(budget.request_timeout, size),
        )

    def _fetch_job(
        self,
        job: _FileJob,
        progress: Progress,
        cancelled: threading.Event | None,
        *,
        keep: bool = False,
    ) -> str | None:
        """Fetch ``job`` straight from the store where offered, else through the server.

        Returns the file's sha256 when it was hashed as it was written, else None.

        Through the server, a try cut short that got further into the file than any before
        costs no retry: the file gets a fresh budget. Retries are spent on tries that make no
        progress, never on a file that moves (a big file over a link that drops every few
        minutes). ``keep``: on running out of retries (or being stopped), leave
        ``job.partial`` in place.
        """
        # One budget per file, spent by this loop alone: the GETs inside are sent once each,
        # so a file that endlessly fails without progress costs at most max_retries + 1 of them.
        with operation(self.settings, fresh=True) as budget:
            if self._wants_direct(job.size):
                direct = self._download_direct(job, progress, cancelled, budget)
                if direct is not False:
                    return direct
                if job.have and not os.path.lexists(job.partial):
                    job = job._replace(have=0)  # the direct try took the partial file away
        download = _FileDownload(self, job, progress, cancelled)
        try:
            self._fetch_proxied(download, keep=keep)
        finally:
            download.close()
        return download.digest

    def _fetch_proxied(self, download: _FileDownload, *, keep: bool) -> None:
        """Fetch one file through the server's artifact proxy (see :meth:`_fetch_job`)."""
        try:
            while not self._proxied_tries(download):
                pass
        except _Transient as final:
            if not keep:
                download.discard()
            raise self._final(final) from None
        except _Cancelled:
            if not keep:
                download.discard()
            raise
        except BaseException:
            download.discard()
            raise

    def _proxied_tries(self, download: _FileDownload) -> bool:
        """Tries within one retry budget: True once the file is whole, False to renew the budget.

        A try cut short that got further into the file than any before ends the budget
        (False): the next try starts a fresh one. Else it spends a retry as usual.
        """
        with operation(self.settings, fresh=True) as budget:
            furthest = download.furthest
            tries = 0
            while True:
                tries += 1
                try:
                    download.attempt()
                except Exception as exc:
                    kind = self._classify(exc)
                    if kind is not None and download.furthest > furthest:
                        logger.info("%s: cut at byte %d; going on", download.action, furthest)
                        return False
                    delay = None if kind is None else budget.take(*kind)
                    if delay is None:
                        raise
                    self._log_retry(exc, tries, delay)
                    self._sleep(delay)
                else:
                    return True

    def _wants_direct(self, size: int) -> bool:
        """Whether a file of ``size`` bytes is worth asking a presigned URL for."""
        least = self.settings.direct_download_min_bytes
        return 0 < least <= size and self._presigns is not False and not self._store_unreachable

    def _presign(self, remote: str, size: int) -> _Presigned | None:
        """A presigned URL of ``remote``, or None: fetch it through the server instead.

        Until the server has answered once, one file at a time asks; a server without
        presigned URLs is remembered, so it costs this backend one request in all.

        Raises:
            InvalidResponseError: a reply that is no acceptable presigned URL
                (:func:`parse_presigned`).
        """
        if self._presigns is None:
            with self._presign_lock:
                if self._presigns is None:
                    return self._ask_presigned(remote, size)
        if self._presigns is False:
            return None
        return self._ask_presigned(remote, size)

    def _ask_presigned(self, remote: str, size: int) -> _Presigned | None:
        action = f"get a presigned URL for artifact {remote!r}"
        try:
            reply = self._attempt(
                "GET",
                f"{self.uri}{PRESIGNED_API}/{quote(remote)}",
                None,
                None,
                None,
                action,
                timeout=current(self.settings).request_timeout,
            )
        except _Transient as exc:  # busy or down: this file goes through the server
            logger.debug("%s: %s; through the server instead", action, exc.error)
            return None
        except RegistryError as exc:
            if exc.status in _NO_PRESIGNED:
                logger.debug(
                    "%s: no presigned URLs from %s (HTTP %s)", action, self.uri, exc.status
                )
                self._presigns = False
            else:
                logger.debug("%s: %s; through the server instead", action, exc)
            return None
        try:
            data = reply.json()
        except (ValueError, RecursionError):
            data = None
        presigned = parse_presigned(data, size, action)
        self._presigns = True
        return presigned

    def _download_direct(
        self,
        job: _FileJob,
        progress: Progress,
        cancelled: threading.Event | None,
        budget: Budget,
    ) -> str | Literal[False] | None:
        """Fetch ``job`` straight from the store; False when it must go through the server.

        Else the file's sha256 when it was hashed as it was written (one range, in order).
        """
        presigned = self._presign(job.remote, job.size)
        if presigned is None:
            return False
        download = _DirectDownload(self, job, presigned, progress, cancelled, budget)
        try:
            download.run()
        except _StoreRefused as refused:
            download.discard()
            if refused.unreachable:
                self._store_unreachable = True
            logger.debug("%s: %s; through the server instead", download.action, scrub(str(refused)))
            return False
        except _Transient as final:
            download.discard()
            raise self._final(final) from None
        except BaseException:
            download.discard()
            raise
        return download.digest()

    # ---------------------------------------------------------------------------- diagnostics

    def server_info(self) -> ServerInfo:
        """Reachability and MLflow version of the server (one quick try, no retries)."""
        try:
            health = self.request("GET", "/health", action="check health", retry=False)
        except RegistryError as exc:
            return ServerInfo("rest", self.uri, reachable=False, version=None, detail=str(exc))
        answered, version = self._ask_version()
        if answered and self._capabilities is None:
            self._capabilities = Capabilities(version)
        return ServerInfo(
            "rest", self.uri, reachable=True, version=version, detail=health.text.strip() or None
        )

    def capabilities(self) -> Capabilities:
        """What the server supports, from ``GET /version`` (asked once, then remembered).

        A server that hides its version (or a proxy that answers ``/version`` with a page of
        its own) gets ``server_version=None``: every feature is assumed present until its
        endpoint turns out to be missing. An unreachable server is asked again next time.
        """
        if self._capabilities is None:
            answered, version = self._ask_version()
            if not answered:
                return Capabilities(None)
            self._capabilities = Capabilities(version)
        return self._capabilities

    def _ask_version(self) -> tuple[bool, str | None]:
        """(whether the server answered, its MLflow version or None when it will not say)."""
        try:
            reply = self.request("GET", "/version", action="get server version", retry=False)
        except RegistryUnavailableError:
            return False, None
        except RegistryError:  # a 404 or 403 from a proxy: the server will not say
            return True, None
        return True, parse_server_version(reply.text)

    def open_for_writes(self) -> None:
        """Nothing to prepare: a server's store exists."""

    def close(self) -> None:
        """Close the HTTP sessions."""
        self._session.close()
        if self._store_session is not None:
            self._store_session.close()


class _Digest:
    """The sha256 of a file as its chunks are written, in order.

    A big file (:data:`HASH_THREAD_MIN_BYTES` or more) is hashed on a thread of its own, fed
    through a short queue, so that hashing overlaps the wait for the next bytes instead of
    adding to it (hashlib lets go of the GIL). :meth:`close` stops that thread when the digest
    is not wanted after all.
    """

    def __init__(self, size: int) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if size >= HASH_THREAD_MIN_BYTES:
            self._queue = queue.Queue(maxsize=32)
            self._thread = threading.Thread(target=self._run, name="registry-sdk-hash", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None  # noqa: S101 - started only with a queue
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        """Add ``chunk``, the next bytes of the file."""
        if self._queue is None:
            self._hash.update(chunk)
        else:
            self._queue.put(chunk)

    def close(self) -> None:
        """Wait for what was queued to be hashed, and stop the thread, if any."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = self._thread = None

    def hexdigest(self) -> str:
        """The digest of every chunk added."""
        self.close()
        return self._hash.hexdigest()


class _FileDownload:
    """One file of a download, over the tries of its retry budget.

    The file is written as ``job.partial``. A try cut short (connection dropped, idle timeout,
    fewer bytes than listed) keeps what it got, and the next try asks for the rest with
    ``Range: bytes=<have>-``: a ``206`` whose ``Content-Range`` is exactly that rest is
    appended; a ``200`` (a server that ignores ranges, as MLflow 2 does) is written from the
    start; a ``206`` for other bytes, or a ``416``, is refused and the next try starts over.
    Only a whole file is renamed to ``job.target``. A ``partial`` already on disk before the
    first try is written over, unless the job says it resumes ``job.have`` bytes of it.
    """

    def __init__(
        self,
        backend: RestBackend,
        job: _FileJob,
        progress: Progress,
        cancelled: threading.Event | None,
    ) -> None:
        self.backend = backend
        self.job = job
        self.progress = progress
        self.cancelled = cancelled
        self.action = f"download artifact {job.remote!r}"
        #: Bytes of ``job.partial`` written (and counted on the progress bar): by this
        #: download, or by an interrupted one before it (``job.have``).
        self.have = job.have
        #: Whether ``job.partial`` holds ``self.have`` bytes to go on from; else the first
        #: open empties it.
        self.started = job.have > 0
        #: The most bytes of the file any try had written.
        self.furthest = job.have
        #: The sha256 of the bytes written from the first on, in order; None when some were
        #: written by an earlier download (they would have to be read back).
        self._hasher: _Digest | None = None if job.have else _Digest(job.size)
        #: The file's sha256, once it is whole and was hashed as it was written.
        self.digest: str | None = None

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise _Cancelled

    def _restart(self) -> None:
        self.progress.advance(-self.have)
        self.have = 0

    def close(self) -> None:
        """Stop hashing, if a thread does it (the digest is not wanted)."""
        if self._hasher is not None:
            self._hasher.close()

    def discard(self) -> None:
        """Give up: remove the partial file and take its bytes off the progress bar."""
        self.close()
        self._restart()
        with contextlib.suppress(OSError):  # never created, or its folder is going away
            self.job.partial.unlink()

    def attempt(self) -> None:
        """One try: fetch what is missing, then rename the whole file into place."""
        self._check_cancelled()
        size = self.job.size
        if not 0 < self.have == size:  # else every byte came before the last try failed
            with self._get() as response:
                start = self._reply_start(response)
                if start == 0 and self.have:
                    logger.info("%s: the server sent the whole file again", self.action)
                    self._restart()
                self._write(response, start)
            # A reply delimited by closing the connection looks complete when cut: compare.
            if size >= 0 and self.have != size:
                msg = f"{self.action}: got {self.have} bytes, the listing announced {size}"
                raise _Transient(RegistryUnavailableError(redact(msg)))
        try:
            self.job.partial.replace(self.job.target)
        except OSError as exc:
            raise self.backend._write_error(self.action, self.job.target, exc) from None  # noqa: SLF001
        if self._hasher is not None:
            self.digest = self._hasher.hexdigest()

    def _get(self) -> requests.Response:
        endpoint = f"{ARTIFACTS_API}/{quote(self.job.remote)}"
        headers = {"Range": f"bytes={self.have}-"} if self.have else None
        try:
            return self.backend._get_once(endpoint, self.action, headers, size=self.job.size)  # noqa: SLF001
        except RegistryError as exc:
            if self.have and exc.status == _RANGE_NOT_SATISFIABLE:
                self._restart()  # the server cannot go on from there: the next try starts over
                raise _Transient(exc) from None
            raise

    def _reply_start(self, response: requests.Response) -> int:
        """Where the body of ``response`` starts in the file: 0 (all of it) or ``self.have``.

        Raises:
            _Transient: a ``206`` whose ``Content-Range`` is not the rest of the file from
                ``self.have`` on (the next try starts over).
        """
        if response.status_code != _PARTIAL_CONTENT:
            return 0
        value = response.headers.get("Content-Range", "")
        found = _CONTENT_RANGE.fullmatch(value.strip())
        size = self.job.size
        ok = found is not None
        if found is not None:
            first, last = int(found[1]), int(found[2])
            total = None if found[3] == "*" else int(found[3])
            whole = size if size >= 0 else total
            ok = (
                first == self.have
                and last >= first
                and (total is None or last + 1 == total)
                and (whole is None or (last + 1 == whole and total in {None, whole}))
            )
        if not ok:
            asked = self.have
            self._restart()
            msg = (
                f"{self.action}: asked for the bytes from {asked} on, the server answered 206 "
                f"with Content-Range {value!r}; not appended, the next try starts over"
            )
            raise _Transient(InvalidResponseError(redact(msg)))
        return self.have

    def _write(self, response: requests.Response, start: int) -> None:
        """Write the body of ``response`` into the partial file from byte ``start`` on."""
        flags = _RESUME_FLAGS if start and self.started else _WRITE_FLAGS
        if not start:
            self.close()
            self._hasher = _Digest(self.job.size)  # from the first byte: every byte passes here
        size = self.job.size
        try:
            with os.fdopen(os.open(self.job.partial, flags, 0o666), "wb") as fh:
                self.started = True
                fh.truncate(start)
                fh.seek(start)
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    self._check_cancelled()
                    if 0 <= size < self.have + len(chunk):
                        # Never fill the disk past what the listing promised.
                        msg = (
                            f"{self.action}: the server sent more than the {size} bytes the "
                            "listing announced"
                        )
                        raise InvalidResponseError(msg)
                    fh.write(chunk)
                    if self._hasher is not None:
                        self._hasher.update(chunk)
                    self.have += len(chunk)
                    self.furthest = max(self.furthest, self.have)
                    self.progress.advance(len(chunk))
        except requests.RequestException as exc:  # reset, idle timeout, or a body cut short
            error = RegistryUnavailableError(redact(f"{self.action}: cut short: {exc}"))
            raise _Transient(error) from None
        except OSError as exc:  # writing here: disk full, permissions, a path too long
            raise self.backend._write_error(self.action, self.job.target, exc) from None  # noqa: SLF001


class _Range:
    """Bytes ``first`` to ``last`` (inclusive) of a file, and how many of them are written.

    ``last`` may be moved down while the range is fetched (:meth:`_DirectDownload._split`);
    ``asked`` is the last byte the GET under way asked for.
    """

    def __init__(self, first: int, last: int) -> None:
        self.first = first
        self.last = last
        self.asked = last
        self.done = 0

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    @property
    def left(self) -> int:
        return self.length - self.done


class _DirectDownload:
    """One file fetched from the artifact store through a presigned URL, in byte ranges.

    The file starts as one GET of all of it, streamed into ``job.partial``. Where that would
    take a while (after :data:`SPLIT_AFTER_S`, more than :data:`SPLIT_WORTH_S` left at the
    rate so far: a store that serves one connection slowly, as S3 does), what is left is split
    into more ranges fetched at once, up to ``download_workers``, each written at its offset:
    the GET under way stops where the next range starts. A store that sends one stream fast
    gets one GET. A range cut short goes on from where it stopped, within the file's retry
    budget. A ``403`` (the URL expired) gets one fresh URL per file. Anything else the store
    refuses (a second ``403``, a redirect, a reply that is not the range asked for) or a store
    that cannot be reached raises :class:`_StoreRefused`: the caller fetches the file through
    the server instead.
    """

    def __init__(
        self,
        backend: RestBackend,
        job: _FileJob,
        presigned: _Presigned,
        progress: Progress,
        cancelled: threading.Event | None,
        budget: Budget,
    ) -> None:
        self.backend = backend
        self.job = job
        self.presigned = presigned
        self.progress = progress
        self.cancelled = cancelled
        self.budget = budget
        self.action = f"download artifact {job.remote!r} from the artifact store"
        self.failed = threading.Event()
        self.lock = threading.Lock()
        #: How many fresh URLs were asked for (at most one per file).
        self.refreshed = False
        #: What an interrupted download wrote from the first byte on is not fetched again.
        self.ranges = [_Range(min(job.have, job.size - 1), job.size - 1)] if job.size else []
        #: The sha256 of the file while it comes as one range, in order; None once split.
        self._hasher: _Digest | None = None if job.have else _Digest(job.size)

    def digest(self) -> str | None:
        """The file's sha256 when it came as one range from its first byte, else None."""
        with self.lock:
            return None if self._hasher is None else self._hasher.hexdigest()

    def _check_cancelled(self) -> None:
        if self.failed.is_set() or (self.cancelled is not None and self.cancelled.is_set()):
            raise _Cancelled

    def discard(self) -> None:
        """Give up: remove the partial file and take its bytes off the progress bar."""
        with self.lock:
            self.progress.advance(-sum(r.done for r in self.ranges) - self.job.have)
            for part in self.ranges:
                part.done = 0
            hasher, self._hasher = self._hasher, None
        if hasher is not None:
            hasher.close()
        with contextlib.suppress(OSError):
            self.job.partial.unlink()

    def run(self) -> None:
        """Fetch every range, then rename the whole file into place."""
        try:
            flags = _RESUME_FLAGS if self.job.have else _WRITE_FLAGS
            with os.fdopen(os.open(self.job.partial, flags, 0o666), "wb") as fh:
                fh.truncate(self.job.size)
        except OSError as exc:
            raise self.backend._write_error(self.action, self.job.target, exc) from None  # noqa: SLF001
        workers = self.backend.settings.download_workers
        if workers <= 1 or not self._splittable():
            for part in self.ranges:  # in this thread: no pool for a file that stays whole
                self._fetch_range(part)
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-sdk-range")
            try:
                self._run_in(pool, workers)
            finally:
                self.failed.set()  # stops the ranges still under way, if any
                pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.job.partial.replace(self.job.target)
        except OSError as exc:
            raise self.backend._write_error(self.action, self.job.target, exc) from None  # noqa: SLF001

    def _splittable(self) -> bool:
        """Whether :meth:`_split` could ever cut a range off what is left to fetch."""
        left = sum(part.left for part in self.ranges)
        return left > 2 * MIN_RANGE_BYTES

    def _run_in(self, pool: ThreadPoolExecutor, workers: int) -> None:
        """Fetch the ranges on ``pool``, splitting what is left while it is worth it."""
        started = time.monotonic()
        pending = {pool.submit(self._fetch_range, part) for part in self.ranges}
        stopped = False
        while pending:
            finished, pending = wait(pending, timeout=SPLIT_CHECK_S, return_when=FIRST_COMPLETED)
            for future in finished:
                error = future.exception()
                if isinstance(error, _Cancelled):
                    stopped = True
                elif error is not None:
                    self.failed.set()
                    raise error
            if not stopped and pending and len(pending) < workers:
                for part in self._split(time.monotonic() - started, workers - len(pending)):
                    pending.add(pool.submit(self._fetch_range, part))
        if stopped:  # another file failed: this one is not whole
            raise _Cancelled

    def _split(self, elapsed: float, idle: int) -> list[_Range]:
        """New ranges for ``idle`` free workers, cut from the range with the most left.

        None before :data:`SPLIT_AFTER_S`, or when what is left would take less than
        :data:`SPLIT_WORTH_S` at the rate so far.
        """
        if elapsed < SPLIT_AFTER_S:
            return []
        with self.lock:
            done = sum(part.done for part in self.ranges)
            left = sum(part.left for part in self.ranges)
            if done <= 0 or left / (done / elapsed) < SPLIT_WORTH_S:
                return []
            biggest = max(self.ranges, key=lambda part: part.left)
            # Keep a margin before the cut: the stream under way writes up to there.
            start = biggest.first + biggest.done + MIN_RANGE_BYTES
            pieces = min(idle + 1, (biggest.last + 1 - start) // MIN_RANGE_BYTES + 1)
            if pieces < 2:  # noqa: PLR2004 - the range itself and at least one new one
                return []
            step = -(-(biggest.last + 1 - start) // pieces)
            cuts = list(range(start, biggest.last + 1, step))
            fresh = [_Range(cut, min(cut + step, biggest.last + 1) - 1) for cut in cuts[1:]]
            if not fresh:
                return []
            biggest.last = fresh[0].first - 1
            self.ranges.extend(fresh)
            if self._hasher is not None:  # bytes now arrive out of order: the cache hashes it
                self._hasher.close()
                self._hasher = None
        logger.debug("%s: %d more ranges at once", self.action, len(fresh))
        return fresh

    def _fetch_range(self, part: _Range) -> None:
        """Fetch ``part``, going on from where a cut try stopped, within the file's budget."""
        while part.done < part.length:
            self._check_cancelled()
            try:
                with self.backend._range_slots:  # noqa: SLF001
                    self._get_range(part)
            except _Refreshed:
                continue  # a fresh URL after a 403: at most once per file, not a retry
            except _Transient as exc:
                with self.lock:
                    delay = self.budget.take(exc.failure, exc.retry_after)
                if delay is None:
                    raise
                self.backend._log_retry(exc, 0, delay)  # noqa: SLF001
                self.backend._sleep(delay)  # noqa: SLF001
            else:
                return

    def _refresh(self, expired: _Presigned) -> None:
        """After a ``403``: one fresh URL per file, else :class:`_StoreRefused`."""
        with self.lock:
            if self.presigned is not expired:
                return  # another range got a fresh one already
            if self.refreshed:
                msg = "the store refused the presigned URL (HTTP 403), and a fresh one"
                raise _StoreRefused(msg)
            self.refreshed = True
            fresh = self.backend._ask_presigned(self.job.remote, self.job.size)  # noqa: SLF001
            if fresh is None:
                msg = "the store refused the presigned URL (HTTP 403); no fresh one was given"
                raise _StoreRefused(msg)
            self.presigned = fresh

    def _get_range(self, part: _Range) -> None:
        """One GET of the rest of ``part``, written at its offset."""
        with self.lock:
            presigned = self.presigned
            start = part.first + part.done
            part.asked = part.last
        headers = {**presigned.headers, "Range": f"bytes={start}-{part.asked}"}
        timeout = Settings.http_timeout(self.budget.request_timeout)
        try:
            response = self.backend._store().get(  # noqa: SLF001
                presigned.url, headers=headers, stream=True, allow_redirects=False, timeout=timeout
            )
        except requests.exceptions.SSLError as exc:
            raise _StoreRefused(scrub(f"no TLS connection to the store: {exc}")) from None
        except requests.Timeout as exc:
            error = RegistryUnavailableError(scrub(f"{self.action}: timed out: {exc}"))
            error.failure = Failure.TIMEOUT.value
            raise _Transient(error) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            if is_refused(exc):
                raise _StoreRefused(
                    scrub(f"cannot reach the store: {exc}"), unreachable=True
                ) from None
            error = RegistryUnavailableError(scrub(f"{self.action}: {exc}"))
            raise _Transient(error) from None
        except requests.RequestException as exc:
            raise _StoreRefused(scrub(f"cannot ask the store: {exc}")) from None
        with response:
            status = response.status_code
            if status == _FORBIDDEN:
                self._refresh(presigned)
                raise _Refreshed
            if status in RETRY_STATUSES:
                error = RegistryUnavailableError(
                    f"{self.action}: the store answered HTTP {status}", status=status
                )
                raise _Transient(error, parse_retry_after(response.headers.get("Retry-After")))
            expected = f"bytes {start}-{part.asked}/{self.job.size}"
            if (
                status != _PARTIAL_CONTENT
                or response.headers.get("Content-Range", "").strip() != expected
            ):
                got = response.headers.get("Content-Range")
                msg = f"the store answered HTTP {status} (Content-Range {got!r}) to a range request"
                raise _StoreRefused(msg)
            self._write(response, part)
        if part.done < part.length:
            msg = f"{self.action}: cut short at byte {part.first + part.done}"
            raise _Transient(RegistryUnavailableError(msg))

    def _write(self, response: requests.Response, part: _Range) -> None:
        """Stream the body of ``response`` into the partial file at ``part``'s next byte."""
        try:
            with os.fdopen(os.open(self.job.partial, _RESUME_FLAGS, 0o666), "wb") as fh:
                fh.seek(part.first + part.done)
                for chunk in response.iter_content(chunk_size=_CHUNK):
                    self._check_cancelled()
                    if part.first + part.done + len(chunk) > part.asked + 1:
                        msg = "the store sent more bytes than the range asked for"
                        raise _StoreRefused(msg)
                    with self.lock:  # a split may have moved the end of this range down
                        take = min(len(chunk), part.left)
                    data = chunk[:take] if take < len(chunk) else chunk
                    fh.write(data)
                    with self.lock:
                        part.done += take
                        if self._hasher is not None:
                            self._hasher.update(data)
                    self.progress.advance(take)
                    if part.left <= 0:
                        break  # the rest is another range's
        except requests.RequestException as exc:  # reset, idle timeout, or a body cut short
            error = RegistryUnavailableError(scrub(f"{self.action}: cut short: {exc}"))
            raise _Transient(error) from None
        except OSError as exc:  # writing here: disk full, permissions, a path too long
            raise self.backend._write_error(self.action, self.job.target, exc) from None  # noqa: SLF001

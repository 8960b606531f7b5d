"""Upload files to an MLflow server's artifact proxy; big ones in parts, straight to the store.

A location is *proxied* when the server stores the files for its clients: ``mlflow-artifacts:/``
(resolved against the client's own tracking URI) or an http(s) URL of the server's artifact API
(``.../api/2.0/mlflow-artifacts/artifacts/...``). There every file goes one of two ways:

* In parts, when it is at least MLflow's ``MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE`` (500 MiB
  by default) and ``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD`` is not set to a false value. The
  server opens a multipart upload in its store (``mpu/create``) and hands out one presigned URL
  per part of ``MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE`` bytes (10 MiB by default). The parts go to
  the store directly, :data:`PART_WORKERS` at a time, each streamed from the file by a
  :class:`RangeReader`, a mebibyte at a time (a part is never read into memory whole), and
  retried on a lost connection, 408, 429 or 5xx; then the server completes the upload
  (``mpu/complete``). Any failure aborts it (``mpu/abort``) and raises a
  :class:`~registry_sdk.RegistryError`.
* Whole, in one streamed PUT through the server, as MLflow sends it: every smaller file, and
  every file where the server takes no multipart uploads (its store is a local directory: it
  says so; an older server: it has no such endpoint). A server found so is remembered for the
  life of the process, so finding out costs one request.

Requests to the server carry MLflow's credentials for it, as MLflow's ``HttpArtifactRepository``
sends them (``get_default_host_creds`` and ``http_request``); requests to the store carry none
(a presigned URL is its own credential): no ``Authorization``, no cookie, no ``.netrc``.
MLflow's environment variables are read, never set. Only MLflow's REST helpers are used, which
MLflow 2 and 3 share, so either client works the same.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

from registry_sdk._http import scrub, store_session
from registry_sdk.errors import (
    ConfigurationError,
    InvalidResponseError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnavailableError,
    from_response,
    redact,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests
    from typing_extensions import Self

__all__ = [
    "MultipartSettings",
    "ProxiedUploader",
    "RangeReader",
    "is_proxied",
    "multipart_settings",
    "resolve",
]

logger = logging.getLogger("registry_sdk.upload")

#: Where a server's artifact API starts in an artifact URL (MLflow splits its URLs there too).
ARTIFACTS_ROUTE = "/mlflow-artifacts/artifacts"
#: The multipart routes, beside the artifact API: ``<route>/<artifact directory>``.
MPU_CREATE = "/mlflow-artifacts/mpu/create"
MPU_COMPLETE = "/mlflow-artifacts/mpu/complete"
MPU_ABORT = "/mlflow-artifacts/mpu/abort"
#: How MLflow's server says its store takes no multipart uploads (``_UnsupportedMultipart...``).
UNSUPPORTED_MESSAGE = "Multipart upload is not supported for the current artifact repository"
#: Statuses of a server without the multipart routes (MLflow < 2.8, or a proxy not routing them).
_NO_ROUTE = frozenset({HTTPStatus.NOT_FOUND, HTTPStatus.METHOD_NOT_ALLOWED, 501})
#: Parts sent to the store at once, per file.
PART_WORKERS = 4
#: Tries per part: the first and three more, on a lost connection, 408, 429 or 5xx.
PART_TRIES = 4
#: Seconds before the second try of a part; doubled for each later one.
PART_BACKOFF_S = 0.5
#: Connect and read timeouts of a part's PUT: the read timeout runs from the last byte sent
#: until the store answers, while it stores the part.
PART_TIMEOUT_S = (30.0, 300.0)
#: Bytes read from the file and sent at a time, per part being sent.
SEND_BLOCK = 1 << 20
#: The most parts a store takes for one object (S3's limit); a bigger file gets bigger parts.
MAX_PARTS = 10_000
#: Digits of the biggest part number (MAX_PARTS).
_DIGITS = len(str(MAX_PARTS))
_TRANSIENT = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
#: The error code in an S3-style XML error reply.
_STORE_CODE = re.compile(r"<Code>([A-Za-z0-9._-]{1,64})</Code>")

#: Servers (their API base URL) whose store took no multipart upload: files go whole.
_no_multipart: set[str] = set()
_no_multipart_lock = threading.Lock()


class MultipartSettings(NamedTuple):
    """MLflow's multipart settings, as its environment variables have them (read, never set)."""

    #: False only when ``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD`` is set to a false value.
    enabled: bool
    #: ``MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE``: smaller files go whole.
    minimum_size: int
    #: ``MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE``: the size of every part but the last.
    chunk_size: int


def multipart_settings() -> MultipartSettings:
    """Read MLflow's multipart variables through ``mlflow.environment_variables``.

    Raises:
        ConfigurationError: a value MLflow cannot read, or a part size that is not positive.
    """
    from mlflow import environment_variables as env

    flag = env.MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD
    try:
        enabled = not flag.defined or bool(flag.get())  # type: ignore[no-untyped-call]
        minimum = int(env.MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE.get())  # type: ignore[no-untyped-call]
        chunk = int(env.MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE.get())  # type: ignore[no-untyped-call]
    except ValueError as exc:
        msg = f"cannot read MLflow's multipart upload settings: {exc}"
        raise ConfigurationError(msg) from None
    if chunk <= 0:
        msg = (
            f"MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE is {chunk}; it must be a positive number of "
            "bytes (MLflow's default is 10485760, 10 MiB; S3 takes parts of 5 MiB or more)"
        )
        raise ConfigurationError(msg)
    return MultipartSettings(enabled, minimum, chunk)


def is_proxied(artifact_uri: str) -> bool:
    """Whether ``artifact_uri`` is stored through an MLflow server's artifact proxy."""
    try:
        parts = urlsplit(artifact_uri)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "mlflow-artifacts":
        return True
    return scheme in {"http", "https"} and ARTIFACTS_ROUTE in parts.path


def resolve(artifact_uri: str, tracking_uri: str) -> str:
    """The http(s) URL of a proxied location: ``mlflow-artifacts:/`` resolved as MLflow does.

    Against ``tracking_uri``, the client's own (MLflow 2's client would use the process-global
    tracking URI instead).
    """
    if urlsplit(artifact_uri).scheme.lower() != "mlflow-artifacts":
        return artifact_uri.rstrip("/")
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    resolved = MlflowArtifactsRepository.resolve_uri(artifact_uri, tracking_uri)  # type: ignore[no-untyped-call]
    return str(resolved).rstrip("/")


class _Cancelled(Exception):  # noqa: N818 - a signal to stop, never seen outside
    """Another part of the same file failed: this one stops too."""


class _LocalReadError(Exception):
    """Reading the file failed: not an OSError, which the HTTP stack would take for the network."""


class RangeReader:
    """``length`` bytes of a file from ``offset``, as a file-like body of known length.

    An HTTP client reads it in small blocks, so a part is never held in memory. It yields
    exactly ``length`` bytes, never one of the bytes after them, and raises when the file ends
    before them (it shrank since its size was taken). ``stop``, once set, makes the next read
    raise: a part still being sent stops when another part failed.
    """

    def __init__(
        self, path: str | os.PathLike[str], offset: int, length: int, stop: threading.Event
    ) -> None:
        if offset < 0 or length < 0:
            msg = f"a byte range needs a non-negative offset and length, not {offset}, {length}"
            raise ValueError(msg)
        self._file = Path(path).open("rb")  # noqa: SIM115 - closed by close(), after the request
        self._file.seek(offset)
        self._left = length
        self._length = length
        self._stop = stop
        self._path = os.fspath(path)

    def __len__(self) -> int:
        """The bytes of the range (what ``Content-Length`` announces), however many are read."""
        return self._length

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of what is left of the range (all of it for a negative size)."""
        if self._stop.is_set():
            raise _Cancelled
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        if wanted == 0:
            return b""
        try:
            data = self._file.read(wanted)
        except OSError as exc:
            msg = f"reading {self._path} failed: {exc}"
            raise _LocalReadError(msg) from None
        if not data:
            msg = f"{self._path} ended {self._left} bytes early: it shrank while being uploaded"
            raise _LocalReadError(msg)
        self._left -= len(data)
        return data

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PartBody:
    """A part as an HTTP body: its length, then its bytes :data:`SEND_BLOCK` at a time.

    An iterable, not a file: an HTTP client sends a file in the blocks it reads itself
    (urllib3: 16 KiB), one system call and a little Python each, where a block of a mebibyte
    costs the same. Holds at most one block in memory.
    """

    def __init__(self, reader: RangeReader, block: int) -> None:
        self._reader = reader
        self._block = block

    def __len__(self) -> int:
        return len(self._reader)

    def __iter__(self) -> Iterator[bytes]:
        while data := self._reader.read(self._block):
            yield data


class _Part(NamedTuple):
    """One part of a multipart upload: its presigned URL and the bytes of the file it holds."""

    number: int
    url: str
    headers: dict[str, str]
    offset: int
    length: int


class _Upload(NamedTuple):
    upload_id: str | None
    parts: list[_Part]


class _PartFailure(Exception):  # noqa: N818 - becomes a RegistryError with the file's context
    """A part the store did not take; ``status`` is its last HTTP status, if it answered."""

    def __init__(self, part: _Part, reason: str, status: int | None, tries: int) -> None:
        super().__init__(reason)
        self.part = part
        self.reason = reason
        self.status = status
        self.tries = tries


class ProxiedUploader:
    """Uploads files below ``artifact_url``, an http(s) URL of an MLflow server's artifact API.

    ``artifact_url`` is what :func:`resolve` returns. One uploader serves one location; the
    server's lack of multipart support is remembered for every uploader of the process.
    """

    def __init__(self, artifact_url: str, *, workers: int = PART_WORKERS) -> None:
        base, found, root = artifact_url.partition(ARTIFACTS_ROUTE)
        if not found:
            msg = f"{artifact_url!r} is not an URL of an MLflow server's artifact API"
            raise ValueError(msg)
        #: The server's API base (``http://host:port/api/2.0``): where the routes are.
        self.base = base.rstrip("/")
        #: The location below the artifact API's root.
        self.root = root.strip("/")
        self.workers = max(1, workers)
        self._store_session: requests.Session | None = None
        self._session_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ProxiedUploader({redact(self.base)!r}, {self.root!r})"

    def close(self) -> None:
        """Close the connections to the store, if any were opened."""
        with self._session_lock:
            session, self._store_session = self._store_session, None
        if session is not None:
            session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ the API

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None) -> None:
        """Upload every file below ``local_dir`` to ``artifact_path``, as MLflow lays them out."""
        top = Path(local_dir).absolute()
        for root, _, filenames in os.walk(top):
            below = Path(root).relative_to(top).as_posix()
            if below == ".":
                directory = artifact_path
            else:
                directory = posixpath.join(artifact_path, below) if artifact_path else below
            for name in sorted(filenames):
                self.log_artifact(Path(root, name), directory)

    def log_artifact(self, local_file: str | os.PathLike[str], artifact_path: str | None) -> None:
        """Upload one file into the directory ``artifact_path`` (None: the location itself).

        Raises:
            RegistryUnavailableError: the server or the store cannot be reached, or kept
                failing (5xx); a multipart upload was aborted.
            PermissionDeniedError: the server, or the store, refused the credentials or the
                presigned URL.
            ConfigurationError: MLflow's multipart settings cannot be read.
            RegistryError: anything else the server or the store refused.
        """
        local_file = os.fspath(local_file)
        size = Path(local_file).stat().st_size
        settings = multipart_settings()
        wanted = settings.enabled and size > 0 and size >= settings.minimum_size
        if wanted and not self._known_without_multipart():
            chunk = max(settings.chunk_size, math.ceil(size / MAX_PARTS))
            if self._upload_in_parts(local_file, artifact_path, size, chunk):
                return
        self._upload_whole(local_file, artifact_path)

    # ------------------------------------------------------------------------------ server

    def _endpoint(self, route: str, *segments: str | None) -> str:
        """``route`` + the location + ``segments``; only the segments, local names, are quoted.

        The location is part of a URI the server gave, sent as MLflow sends it.
        """
        below = [quote(s.strip("/"), safe="/") for s in segments if s and s.strip("/")]
        return "/".join([route, *([self.root] if self.root else []), *below])

    def _where(self, artifact_path: str | None, name: str) -> str:
        inside = "/".join(s for s in (self.root, artifact_path, name) if s)
        return f"{redact(self.base)}{ARTIFACTS_ROUTE}/{inside}"

    def _call(self, method: str, endpoint: str, action: str, **kwargs: Any) -> requests.Response:
        """One request to the server, with MLflow's credentials, timeouts and retries."""
        from mlflow.exceptions import MlflowException
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request

        try:
            response: requests.Response = http_request(  # type: ignore[no-untyped-call]
                get_default_host_creds(self.base),  # type: ignore[no-untyped-call]
                endpoint,
                method,
                **kwargs,
            )
        except MlflowException as exc:  # MLflow's wrapper of a lost connection, spent retries
            msg = f"{action}: the request to the server at {self.base} failed: {exc.message}"
            raise RegistryUnavailableError(scrub(msg)) from None
        return response

    def _upload_whole(self, local_file: str, artifact_path: str | None) -> None:
        """One streamed PUT through the server, as MLflow's ``HttpArtifactRepository`` sends it."""
        from mlflow.utils.mime_type_utils import _guess_mime_type

        name = Path(local_file).name
        action = f"upload {self._where(artifact_path, name)}"
        with Path(local_file).open("rb") as body:
            response = self._call(
                "PUT",
                self._endpoint(ARTIFACTS_ROUTE, artifact_path, name),
                action,
                data=body,
                extra_headers={"Content-Type": _guess_mime_type(name)},  # type: ignore[no-untyped-call]
            )
        if not response.ok:
            raise from_response(response, action=action)

    # ------------------------------------------------------------------------------ multipart

    def _known_without_multipart(self) -> bool:
        with _no_multipart_lock:
            return self.base in _no_multipart

    def _upload_in_parts(
        self, local_file: str, artifact_path: str | None, size: int, chunk: int
    ) -> bool:
        """Upload in parts; False (nothing sent) when the server takes no multipart upload."""
        name = Path(local_file).name
        where = self._where(artifact_path, name)
        action = f"upload {where} in parts"
        count = math.ceil(size / chunk)
        # The server stores it under artifact_path/<basename of "path">; the file's local path
        # says nothing the server needs.
        created = self._call(
            "POST",
            self._endpoint(MPU_CREATE, artifact_path),
            action,
            json={"path": name, "num_parts": count},
        )
        if not created.ok:
            if self._says_unsupported(created):
                with _no_multipart_lock:
                    _no_multipart.add(self.base)
                logger.info(
                    "the server at %s takes no multipart uploads (HTTP %s); files go whole",
                    redact(self.base),
                    created.status_code,
                )
                return False
            raise from_response(created, action=action)
        upload_id = _upload_id(created)
        try:
            upload = _parse_created(created, upload_id, size, chunk, count, action)
            etags = self._send_parts(local_file, upload.parts)
            completed = self._call(
                "POST",
                self._endpoint(MPU_COMPLETE, artifact_path),
                action,
                json={
                    "path": name,
                    "upload_id": upload_id,
                    "parts": [
                        {"part_number": part.number, "etag": etags[part.number], "url": part.url}
                        for part in upload.parts
                    ],
                },
            )
            _check_completed(completed, action)
        except _PartFailure as failure:
            self._abort(artifact_path, name, upload_id, action)
            raise _part_error(failure, action, count) from None
        except _LocalReadError as exc:
            self._abort(artifact_path, name, upload_id, action)
            msg = f"{action}: {exc}; the upload was aborted"
            raise RegistryError(redact(msg)) from None
        except BaseException:
            self._abort(artifact_path, name, upload_id, action)
            raise
        logger.debug("uploaded %s in %d parts", where, count)
        return True

    @staticmethod
    def _says_unsupported(response: requests.Response) -> bool:
        if response.status_code in _NO_ROUTE:
            return True
        try:
            message = response.json().get("message")
        except (ValueError, AttributeError):
            return False
        return isinstance(message, str) and message.startswith(UNSUPPORTED_MESSAGE)

    def _abort(
        self, artifact_path: str | None, name: str, upload_id: str | None, action: str
    ) -> None:
        """Ask the server to abort the upload (its store drops the parts); never raises."""
        try:
            response = self._call(
                "POST",
                self._endpoint(MPU_ABORT, artifact_path),
                action,
                json={"path": name, "upload_id": upload_id},
            )
        except RegistryError as exc:
            logger.warning("%s: aborting the multipart upload failed too: %s", action, exc)
            return
        if not response.ok:
            logger.warning(
                "%s: aborting the multipart upload failed too: HTTP %s",
                action,
                response.status_code,
            )

    # ------------------------------------------------------------------------------ store

    def _store(self) -> requests.Session:
        """The session for presigned URLs: none of the server's credentials, no cookies."""
        with self._session_lock:
            if self._store_session is None:
                self._store_session = store_session(self.workers, verify=not _ignore_store_tls())
            return self._store_session

    def _send_parts(self, local_file: str, parts: list[_Part]) -> dict[int, str]:
        """PUT every part, ``workers`` at a time; the ETag of each, by part number."""
        stop = threading.Event()
        etags: dict[int, str] = {}
        workers = min(self.workers, len(parts))
        with ThreadPoolExecutor(workers, thread_name_prefix="registry-sdk-upload") as pool:
            futures = [pool.submit(self._send_part, local_file, part, stop) for part in parts]
            try:
                for future in as_completed(futures):
                    number, etag = future.result()
                    etags[number] = etag
            except BaseException:
                stop.set()  # parts being sent stop at their next block; queued ones never start
                for future in futures:
                    future.cancel()
                raise
        return etags

    def _send_part(self, local_file: str, part: _Part, stop: threading.Event) -> tuple[int, str]:
        import requests

        session = self._store()
        for attempt in range(1, PART_TRIES + 1):
            if stop.is_set():
                raise _Cancelled
            status: int | None = None
            try:
                with RangeReader(local_file, part.offset, part.length, stop) as reader:
                    response = session.put(
                        part.url,
                        data=_PartBody(reader, SEND_BLOCK),
                        headers=part.headers,
                        timeout=PART_TIMEOUT_S,
                        allow_redirects=False,
                    )
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {scrub(str(exc))}"
                transient = True
            else:
                with response:
                    status = response.status_code
                    if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
                        return part.number, response.headers.get("ETag", "")
                    reason = _store_reply(response)
                transient = status in _TRANSIENT or status >= HTTPStatus.INTERNAL_SERVER_ERROR
            if not transient or attempt == PART_TRIES:
                raise _PartFailure(part, reason, status, attempt)
            logger.debug("part %d: %s; trying again", part.number, reason)
            if stop.wait(PART_BACKOFF_S * 2 ** (attempt - 1)):
                raise _Cancelled
        raise AssertionError  # pragma: no cover - the loop returns or raises


def _ignore_store_tls() -> bool:
    """MLflow's ``MLFLOW_S3_IGNORE_TLS``, which its own part uploads honour."""
    from mlflow import environment_variables as env

    flag = getattr(env, "MLFLOW_S3_IGNORE_TLS", None)
    if flag is None:  # pragma: no cover - every supported mlflow has it
        return False
    try:
        return bool(flag.get())
    except ValueError as exc:
        msg = f"cannot read MLflow's MLFLOW_S3_IGNORE_TLS: {exc}"
        raise ConfigurationError(msg) from None


def _store_reply(response: requests.Response) -> str:
    """What a store's error reply says: its status and S3-style error code, nothing else.

    Never the body: a store's reply to a bad signature echoes what was signed.
    """
    reason = f"HTTP {response.status_code}"
    try:
        head = response.text[:4000]
    except (ValueError, RuntimeError):  # pragma: no cover - an undecodable or consumed body
        head = ""
    found = _STORE_CODE.search(head)
    return f"{reason} {found.group(1)}" if found else reason


def _part_error(failure: _PartFailure, action: str, count: int) -> RegistryError:
    part = failure.part
    tries = "1 try" if failure.tries == 1 else f"{failure.tries} tries"
    text = (
        f"{action}: the artifact store did not take part {part.number} of {count} "
        f"({part.length} bytes from byte {part.offset}): {failure.reason}, after {tries}; "
        "the multipart upload was aborted"
    )
    status = failure.status
    if status is None or status in _TRANSIENT or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return RegistryUnavailableError(scrub(text + "; try again later"), status=status)
    hint = (
        "; the store refused the presigned URL the server handed out: the server's own store "
        "credentials must allow writing there (or set MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=false "
        "to send files through the server)"
    )
    if status in {HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN}:
        return PermissionDeniedError(scrub(text + hint), status=status)
    return RegistryError(scrub(text), status=status)


def _check_completed(response: requests.Response, action: str) -> None:
    if not response.ok:
        raise from_response(response, action=f"{action}: completing the upload")


def _upload_id(response: requests.Response) -> str | None:
    """The upload id of a ``mpu/create`` reply, if it has one (what an abort needs)."""
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("upload_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _parse_created(
    response: requests.Response,
    upload_id: str | None,
    size: int,
    chunk: int,
    count: int,
    action: str,
) -> _Upload:
    """The parts a ``mpu/create`` reply hands out; one presigned URL per part, each checked.

    Raises:
        InvalidResponseError: not MLflow's reply; not one URL for each of parts 1..``count``;
            a URL or headers a presigned URL may not have.
    """
    from registry_sdk._backends.rest import _presigned_headers, _presigned_url

    try:
        data = response.json()
    except ValueError:
        data = None
    credentials = data.get("credentials") if isinstance(data, dict) else None
    if not isinstance(credentials, list):
        msg = f"{action}: the server's reply to mpu/create holds no presigned URLs"
        raise InvalidResponseError(msg)
    if isinstance(data, dict) and data.get("upload_id") not in (None, upload_id):
        msg = f"{action}: the server's reply to mpu/create has an upload_id that is not a string"
        raise InvalidResponseError(msg)
    parts: dict[int, _Part] = {}
    for item in credentials:
        number = _part_number(item.get("part_number") if isinstance(item, dict) else None)
        if number is None or not 1 <= number <= count or number in parts:
            msg = (
                f"{action}: the server's reply to mpu/create does not hand out one presigned URL "
                f"for each of parts 1 to {count}"
            )
            raise InvalidResponseError(msg)
        url = _presigned_url(item.get("url"), action)
        headers = _presigned_headers(item.get("headers") or None, action)
        offset = (number - 1) * chunk
        parts[number] = _Part(number, url, headers, offset, min(chunk, size - offset))
    if len(parts) != count:
        msg = (
            f"{action}: the server handed out {len(parts)} presigned URLs for the {count} parts "
            "it was asked for"
        )
        raise InvalidResponseError(msg)
    return _Upload(upload_id, [parts[n] for n in sorted(parts)])


def _part_number(value: object) -> int | None:
    """A part number as MLflow's JSON has it: an int, or digits (protobuf's int64)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _DIGITS:
        return int(value)
    return None


def upload_directory(
    artifact_uri: str, tracking_uri: str, local_dir: str, artifact_path: str | None
) -> None:
    """Upload ``local_dir`` to the proxied location ``artifact_uri`` (see :func:`is_proxied`)."""
    with ProxiedUploader(resolve(artifact_uri, tracking_uri)) as uploader:
        uploader.log_artifacts(local_dir, artifact_path)


def forget_servers(bases: Iterable[str] | None = None) -> None:
    """Forget which servers took no multipart upload (all of them, or ``bases``)."""
    with _no_multipart_lock:
        if bases is None:
            _no_multipart.clear()
        else:
            _no_multipart.difference_update(bases)

"""Fetch a model version's artifacts into a directory.

Where the artifacts are is the registry's answer (``get-download-uri``), and a server can
answer anything; what reaches ``dest`` is only ever regular files below it:

* ``file:`` URIs and local paths are copied without following a symlink inside the tree, and a
  tree holding a symlink or a special file is refused (the root itself may be a symlink).
  A server that is not on this machine (its host is not a loopback address) does not share
  its disk: the paths it names are refused unless ``allow_local_artifacts`` is on.
* ``mlflow-artifacts:`` URIs, and http(s) URLs of the server's own artifact proxy, are
  streamed over the REST backend's session (same auth, retries and timeouts, no mlflow import).
* Anything else (``s3://``, ``gs://``, ...) goes through MLflow's own artifact repositories.

Every failure is a :class:`~registry_sdk.RegistryError` saying what the server sent, and
``dest`` is removed: nothing half-copied remains.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import url2pathname

from registry_sdk._digest import LINK_ERRNOS, READ_FLAGS, open_beneath, walk_files
from registry_sdk._progress import Progress
from registry_sdk.errors import (
    InvalidResponseError,
    RegistryError,
    RegistryUnavailableError,
    UnsafeArtifactError,
    from_mlflow_exception,
    redact,
)

if TYPE_CHECKING:
    from registry_sdk._backends.base import Backend
    from registry_sdk._backends.rest import RestBackend
    from registry_sdk._config import Settings

_CHUNK = 1 << 20
#: The variable that lets a remote server name paths on this machine.
ALLOW_LOCAL_ENV = "REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` (a URL's hostname) is this machine: localhost, 127.0.0.0/8 or ::1."""
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone says nothing here
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _split(uri: str, label: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises for a port that is not a number
    except ValueError as exc:
        msg = f"{label}: the artifact location {uri!r} is not a URI ({exc})"
        raise InvalidResponseError(redact(msg)) from None
    return parts


def _local_path(uri: str, parts: SplitResult) -> Path | None:
    if parts.scheme.lower() == "file":
        return Path(url2pathname(unquote(parts.path)))
    if parts.scheme == "" or (len(parts.scheme) == 1 and uri[1:3] in {":\\", ":/"}):
        return Path(uri)
    return None


def download(
    artifact_uri: str,
    dest: Path,
    *,
    backend: Backend,
    settings: Settings,
    label: str,
    resume: bool = False,
) -> dict[str, str]:
    """Put the artifacts at ``artifact_uri`` into ``dest`` (which must not exist yet).

    Returns the sha256 of the files hashed as they were written (relative POSIX path below
    ``dest``), so that they need not be read again: those fetched through a server's artifact
    proxy. Any other file is not in it.

    ``resume``: ``dest`` may hold what an interrupted download of the same artifacts left, and
    the caller verifies the result against a recorded digest. Files fetched through a server's
    artifact proxy go on from there (see :meth:`RestBackend.download_artifacts`), and a
    download that fails for want of the server (:class:`RegistryUnavailableError`) or is
    interrupted keeps what it got for the next call. Any other way of fetching starts afresh.

    Raises:
        UnsafeArtifactError: the artifacts are on this machine's file system and hold a symlink
            or a special file, or a remote server named such a location without
            ``allow_local_artifacts``.
        InvalidResponseError: the location or the listing is not one a server may send.
        RegistryError: anything else that failed (unreachable store, disk full, ...).
    """
    created = not os.path.lexists(dest)
    try:
        return _fetch(
            artifact_uri, dest, backend=backend, settings=settings, label=label, resume=resume
        )
    except BaseException as exc:
        kept = resume and isinstance(exc, (RegistryUnavailableError, KeyboardInterrupt))
        if created and not kept:
            shutil.rmtree(dest, ignore_errors=True)  # rmtree never follows a symlink
        raise


def _fetch(
    artifact_uri: str,
    dest: Path,
    *,
    backend: Backend,
    settings: Settings,
    label: str,
    resume: bool = False,
) -> dict[str, str]:
    from registry_sdk._backends.rest import RestBackend

    server = backend if isinstance(backend, RestBackend) else None
    parts = _split(artifact_uri, label)
    scheme = parts.scheme.lower()
    if scheme == "runs":
        # Resolved here, against this client's registry: MLflow 2 would resolve it against the
        # process-global tracking URI. The location the run names is then checked like any other.
        return _fetch(
            _run_location(parts, backend, label),
            dest,
            backend=backend,
            settings=settings,
            label=label,
            resume=resume,
        )
    if server is not None:
        proxied = (
            parts.path.lstrip("/")
            if scheme == "mlflow-artifacts"
            else server.artifact_proxy_path(artifact_uri)
            if scheme in {"http", "https"}
            else None
        )
        if proxied is not None:
            return server.download_artifacts(proxied, dest, label=label, resume=resume)
    if resume and os.path.lexists(dest):
        shutil.rmtree(dest)  # only the artifact proxy's downloads go on from a partial one
    local = _local_path(artifact_uri, parts)
    if local is not None:
        if server is not None:
            _check_local_allowed(artifact_uri, local, server, settings, label)
        _copy_local(artifact_uri, local, dest, label)
        return {}
    if server is not None:
        _refuse_server_location(server, scheme, artifact_uri, label)
    _download_with_mlflow(artifact_uri, dest, settings=settings, label=label)
    return {}


def _refuse_server_location(
    server: RestBackend, scheme: str, artifact_uri: str, label: str
) -> None:
    """Refuse a location a server may not answer with: a foreign http(s) URL, a reference."""
    from registry_sdk._backends.rest import ARTIFACTS_API

    if scheme in {"http", "https"} and ARTIFACTS_API not in urlsplit(artifact_uri).path:
        msg = (
            f"{label}: the server at {server.uri} gave {artifact_uri!r} as the artifact "
            "location; an http(s) location must be an MLflow artifact proxy URL "
            f"(.../{ARTIFACTS_API.lstrip('/')}/...), and storage is otherwise named by "
            "mlflow-artifacts:/..., s3://..., gs://... and the like"
        )
        raise InvalidResponseError(redact(msg))
    if scheme == "models":
        # MLflow would resolve it against its default registry (sqlite:///mlflow.db in the
        # working directory): the server is the one that resolves references.
        msg = (
            f"{label}: the server at {server.uri} gave the registry reference "
            f"{artifact_uri!r} as the artifact location; a server answers with where the "
            "files are (mlflow-artifacts:/..., s3://..., ...), never with another reference"
        )
        raise InvalidResponseError(redact(msg))


def _run_location(parts: SplitResult, backend: Backend, label: str) -> str:
    """Where ``runs:/<run id>/<path>`` points: the run's artifact root plus the path."""
    path = f"{parts.netloc}/{parts.path.lstrip('/')}" if parts.netloc else parts.path.lstrip("/")
    run_id, _, rest = path.partition("/")
    if not run_id:
        msg = f"{label}: the artifact location {parts.geturl()!r} names no run"
        raise InvalidResponseError(redact(msg))
    root = backend.run_artifact_uri(run_id).rstrip("/")
    if urlsplit(root).scheme.lower() == "runs":
        msg = f"{label}: run {run_id} names another run reference ({root!r}) as its artifact root"
        raise InvalidResponseError(redact(msg))
    return f"{root}/{rest.strip('/')}" if rest.strip("/") else root


def _download_with_mlflow(artifact_uri: str, dest: Path, *, settings: Settings, label: str) -> None:
    """Download through MLflow's artifact repositories into ``dest`` itself.

    MLflow puts a location's last path component under ``dst_path`` (``runs:/<id>/model`` lands
    in ``dst_path/model``): it downloads into a private staging folder beside ``dest``, and what
    it names as the result becomes ``dest``, after the walk that refuses links.
    """
    import tempfile

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
    except OSError as exc:
        msg = f"{label}: cannot prepare {dest.parent} for the download: {exc}"
        raise RegistryError(redact(msg)) from None
    try:
        got = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=artifact_uri, dst_path=str(staging), tracking_uri=settings.tracking_uri
            )
        )
        walk_files(staging)  # nothing MLflow wrote may be a link or a special file
        if got.is_dir():
            got.replace(dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            got.replace(dest / got.name)
    except MlflowException as exc:
        raise from_mlflow_exception(exc, action=f"download the artifacts of {label}") from None
    except RegistryError:
        raise
    except OSError as exc:  # includes requests' connection errors, a full disk, permissions
        msg = f"{label}: downloading the artifacts from {artifact_uri!r} failed: {exc}"
        raise RegistryError(redact(msg)) from None
    except Exception as exc:  # noqa: BLE001 - a store's own client (botocore, ...) or a URI MLflow cannot read
        msg = (
            f"{label}: MLflow could not download the artifacts from {artifact_uri!r}: "
            f"{type(exc).__name__}: {exc}"
        )
        raise RegistryError(redact(msg)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ============================================================================ local copies


def _check_local_allowed(
    uri: str, path: Path, server: RestBackend, settings: Settings, label: str
) -> None:
    if not path.is_absolute():
        # A relative path would name a folder of whatever directory this process runs in.
        msg = (
            f"{label}: the server at {server.uri} gave {uri!r} as the artifact location, "
            "which is not an absolute path; refused"
        )
        raise InvalidResponseError(redact(msg))
    host = urlsplit(server.uri).hostname
    if settings.allow_local_artifacts or is_loopback_host(host):
        return
    msg = (
        f"{label}: the server at {server.uri} gave {uri!r} as the artifact location, a path "
        f"on this machine's file system. A server that is not on loopback ({host!r} is not) "
        "does not share this machine's disk: copying from that path would cache, load and "
        "export whatever file of this machine the server chose. Refused; nothing was copied. "
        "If this machine does see "
        "the server's artifact store at that path (a shared mount), allow it with "
        f"{ALLOW_LOCAL_ENV}=1 or RegistryClient(..., allow_local_artifacts=True)"
    )
    raise UnsafeArtifactError(redact(msg))


def _copy_local(uri: str, src: Path, dest: Path, label: str) -> None:
    try:
        _copy_tree(src, dest, label)
    except UnsafeArtifactError as exc:
        msg = f"{label}: refusing the artifacts at {uri!r}: {exc}; nothing was copied"
        raise UnsafeArtifactError(redact(msg)) from None
    except RegistryError:
        raise
    except (OSError, ValueError) as exc:  # missing, unreadable, a full disk; a NUL in the path
        msg = f"{label}: cannot copy the artifacts from {uri!r}: {exc}"
        raise RegistryError(redact(msg)) from None


def _copy_tree(src: Path, dest: Path, label: str) -> None:
    """Copy the regular files below ``src`` (or ``src`` itself, a file) into ``dest``."""
    root = src.stat()  # the root itself may be a symlink (/data -> /mnt/data)
    files: list[tuple[tuple[str, ...] | None, tuple[str, ...], int]]
    if stat.S_ISDIR(root.st_mode):
        files = [
            (parts, parts, path.lstat().st_size)
            for path in walk_files(src)
            for parts in [path.relative_to(src).parts]
        ]
    elif stat.S_ISREG(root.st_mode):
        files = [(None, (src.name,), root.st_size)]
    else:
        msg = f"{src} is neither a folder nor a regular file (a FIFO, socket or device)"
        raise UnsafeArtifactError(msg)
    progress = Progress(label, sum(size for _, _, size in files))
    dest.mkdir(parents=True, exist_ok=True)
    for below, rel, _ in files:
        with os.fdopen(_open_file(src, below), "rb") as reader:
            if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
                msg = f"{'/'.join(rel)} under {src} changed into a special file while copied"
                raise UnsafeArtifactError(msg)
            target = dest.joinpath(*rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(target, _WRITE, 0o666), "wb") as writer:
                while chunk := reader.read(_CHUNK):
                    writer.write(chunk)
                    progress.advance(len(chunk))
    progress.close()


def _open_file(root: Path, parts: tuple[str, ...] | None) -> int:
    """Open ``root/parts`` for reading, following no symlink below ``root``.

    ``parts`` None opens ``root`` itself (a single-file artifact; it may be a symlink).
    """
    if parts is None:
        return os.open(root, READ_FLAGS & ~_NOFOLLOW)
    try:
        return open_beneath(root, parts)
    except OSError as exc:
        if exc.errno in LINK_ERRNOS:
            rel = "/".join(parts)
            msg = f"{rel} under {root} changed into a symlink while copied"
            raise UnsafeArtifactError(msg) from None
        raise

"""Fetch a model version's artifacts into a directory.

``file:`` URIs and local paths are copied; ``mlflow-artifacts:`` URIs served by an MLflow
server are streamed over the REST backend's session (same auth, retries and timeouts, no
mlflow import); anything else (``s3://``, ``gs://``, ...) goes through MLflow's own artifact
repositories.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from registry_sdk._progress import Progress
from registry_sdk.errors import RegistryError, from_mlflow_exception, redact

if TYPE_CHECKING:
    from registry_sdk._backends.base import Backend
    from registry_sdk._config import Settings

_CHUNK = 1 << 20


def _local_path(uri: str) -> Path | None:
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(url2pathname(unquote(parts.path)))
    if parts.scheme == "" or (len(parts.scheme) == 1 and uri[1:3] in {":\\", ":/"}):
        return Path(uri)
    return None


def _copy_tree(src: Path, dest: Path, label: str) -> None:
    files = [p for p in src.rglob("*") if p.is_file()] if src.is_dir() else [src]
    progress = Progress(label, sum(p.stat().st_size for p in files))
    dest.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = dest / (file.relative_to(src) if src.is_dir() else file.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
        progress.advance(file.stat().st_size)
    progress.close()


def download(
    artifact_uri: str,
    dest: Path,
    *,
    backend: Backend,
    settings: Settings,
    label: str,
) -> None:
    """Put the artifacts at ``artifact_uri`` into ``dest`` (which must not exist yet)."""
    local = _local_path(artifact_uri)
    if local is not None:
        try:
            _copy_tree(local, dest, label)
        except OSError as exc:  # missing or unreadable here: typed, like any other failure
            msg = f"{label}: cannot copy the artifacts from {artifact_uri!r}: {exc}"
            raise RegistryError(redact(msg)) from None
        return
    scheme = urlsplit(artifact_uri).scheme
    from registry_sdk._backends.rest import RestBackend

    if scheme == "mlflow-artifacts" and isinstance(backend, RestBackend):
        backend.download_artifacts(urlsplit(artifact_uri).path.lstrip("/"), dest, label=label)
        return
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    dest.mkdir(parents=True, exist_ok=True)
    try:
        mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=str(dest), tracking_uri=settings.tracking_uri
        )
    except MlflowException as exc:
        raise from_mlflow_exception(exc, action=f"download the artifacts of {label}") from None
    except OSError as exc:  # includes requests' connection errors
        msg = f"{label}: downloading the artifacts from {artifact_uri!r} failed: {exc}"
        raise RegistryError(redact(msg)) from None

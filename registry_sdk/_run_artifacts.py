"""Upload and list a run's (or a logged model's) artifacts, bound to the client's tracking URI.

MLflow 3's ``MlflowClient(tracking_uri=...)`` resolves a run's ``mlflow-artifacts:/`` location
(a server's ``--serve-artifacts`` proxy) against that URI. MLflow 2's resolves it against the
process-global tracking URI instead (``mlflow.set_tracking_uri``, ``MLFLOW_TRACKING_URI``), so
with an MLflow 2 client the upload goes to whatever server the process last pointed MLflow at,
or fails when that is a local store. Setting the global would change the caller's process;
instead such a location is resolved here against the client's URI, exactly as MLflow resolves it.

Uploads to a proxied location (``mlflow-artifacts:/``, or an http(s) URL of a server's artifact
API) go through :mod:`registry_sdk._upload`, with either MLflow: big files in parts straight to
the server's store where it takes multipart uploads, in bounded memory, and everything else as
MLflow sends it. Other locations (``s3://``, a directory, ...) are MLflow's own business.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["list_artifacts", "log_artifacts", "log_model_artifacts"]

#: The first MLflow major version whose client binds artifact locations to its own URI.
_BINDS_ITSELF = 3


def _needs_binding(artifact_uri: str) -> bool:
    """Whether the installed mlflow would resolve ``artifact_uri`` against the global URI."""
    if urlsplit(artifact_uri).scheme.lower() != "mlflow-artifacts":
        return False
    from registry_sdk._flavors import installed_mlflow

    return int(installed_mlflow().split(".", 1)[0]) < _BINDS_ITSELF


def _repository(tracking_uri: str, artifact_uri: str) -> Any:
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    resolved = MlflowArtifactsRepository.resolve_uri(artifact_uri, tracking_uri)  # type: ignore[no-untyped-call]
    return HttpArtifactRepository(resolved)  # type: ignore[no-untyped-call]


def log_artifacts(
    tracking: Any,
    tracking_uri: str,
    run_id: str,
    artifact_uri: str,
    local_dir: str,
    artifact_path: str,
) -> None:
    """Upload ``local_dir`` under ``artifact_path`` of the run whose root is ``artifact_uri``.

    Raises:
        RegistryError: a proxied upload failed (see :meth:`_upload.ProxiedUploader.log_artifact`);
            MLflow's own exceptions for other locations.
    """
    from registry_sdk import _upload

    if _upload.is_proxied(artifact_uri):
        _upload.upload_directory(artifact_uri, tracking_uri, local_dir, artifact_path)
    else:
        tracking.log_artifacts(run_id, local_dir, artifact_path)


def log_model_artifacts(
    tracking: Any, model_id: str, artifact_location: str, local_dir: str
) -> None:
    """Upload ``local_dir`` as the artifacts of the MLflow 3 logged model ``model_id``.

    ``artifact_location`` is the logged model's; ``tracking`` an ``MlflowClient`` whose tracking
    URI a proxied location is resolved against.
    """
    from registry_sdk import _upload

    if _upload.is_proxied(artifact_location):
        _upload.upload_directory(artifact_location, str(tracking.tracking_uri), local_dir, None)
    else:
        tracking.log_model_artifacts(model_id, local_dir)


def list_artifacts(tracking: Any, tracking_uri: str, run_id: str, artifact_uri: str) -> list[Any]:
    """The top-level artifacts (MLflow ``FileInfo``) of the run whose root is ``artifact_uri``."""
    if _needs_binding(artifact_uri):
        return list(_repository(tracking_uri, artifact_uri).list_artifacts())
    return list(tracking.list_artifacts(run_id))

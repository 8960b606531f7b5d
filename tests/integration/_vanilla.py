"""Vanilla MLflow calls the tests make, written once for an MLflow 2 and an MLflow 3 client.

MLflow 2's ``mlflow.artifacts.download_artifacts(artifact_uri=..., tracking_uri=...)`` ignores
``tracking_uri`` and resolves ``mlflow-artifacts:/`` and ``runs:/`` locations against the
process-global tracking URI; MLflow 3's uses the one given. The tests check stores the way a
user of either would, so under MLflow 2 the global URI is set for the call and restored.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.artifacts

MLFLOW_MAJOR = int(mlflow.__version__.split(".", 1)[0])


def download_artifacts(artifact_uri: str, dst_path: str | Path, tracking_uri: str) -> Path:
    """The local copy ``mlflow.artifacts.download_artifacts`` makes of ``artifact_uri``."""
    if MLFLOW_MAJOR >= 3:
        got = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=str(dst_path), tracking_uri=tracking_uri
        )
        return Path(got)
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        got = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst_path))
    return Path(got)


def artifact_paths(tracking_uri: str, run_id: str, path: str | None = None) -> list[str]:
    """The paths ``MlflowClient.list_artifacts`` lists for the run (under ``path``)."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if MLFLOW_MAJOR >= 3:
        return [f.path for f in client.list_artifacts(run_id, path)]
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        return [f.path for f in client.list_artifacts(run_id, path)]


def log_artifacts(tracking_uri: str, run_id: str, local_dir: str | Path, path: str) -> None:
    """``MlflowClient.log_artifacts`` of ``local_dir`` under ``path`` of the run."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if MLFLOW_MAJOR >= 3:
        client.log_artifacts(run_id, str(local_dir), path)
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        client.log_artifacts(run_id, str(local_dir), path)


def no_files_under(root: Path) -> bool:
    """True when ``root`` holds no file (MLflow 2's SQL store creates ``./mlruns`` empty)."""
    return not root.exists() or all(p.is_dir() for p in root.rglob("*"))

"""The installed MLflow client, and the tests' own set-up calls that differ between 2.x and 3.x.

registry_sdk supports MLflow >= 2.16 as the installed client; ``nox -s tests_mlflow2`` runs the
suite with MLflow 2.22 installed (and the servers the fixtures start are then 2.22 servers). A
test's own set-up, such as logging a model with vanilla MLflow, goes through these helpers so
it works under both; what a test checks stays as it is, or is asserted per version explicitly.

MLflow 2's ``download_artifacts(artifact_uri=..., tracking_uri=...)``, ``list_artifacts`` and
``log_artifacts`` resolve ``mlflow-artifacts:/`` and ``runs:/`` locations against the
process-global tracking URI (MLflow 3's use the one given): under MLflow 2 the helpers below
set it for the call and restore it.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import mlflow
import mlflow.artifacts
import pytest
from packaging.version import Version

#: The installed mlflow (the client; also the servers ``mlflow_server_sqlite`` & co. run).
INSTALLED_MLFLOW = Version(importlib.metadata.version("mlflow"))
#: Whether the installed mlflow is a 3.x (``log_model(name=...)``, logged models).
MLFLOW_3 = INSTALLED_MLFLOW.major >= 3
#: The first MLflow server with registry webhooks (``/api/2.0/mlflow/webhooks``).
WEBHOOKS_SINCE = Version("3.3")

#: For tests of registry webhooks against the fixtures' registries (their servers and the
#: embedded store), which run the installed mlflow.
needs_webhook_server = pytest.mark.skipif(
    INSTALLED_MLFLOW < WEBHOOKS_SINCE,
    reason=(
        f"registry webhooks need MLflow >= {WEBHOOKS_SINCE} in the registry, and the registries "
        f"here (the fixtures' servers, the embedded store) run the installed mlflow "
        f"{INSTALLED_MLFLOW}; the SDK's webhook calls are its own, covered by the run with "
        "MLflow 3 installed"
    ),
)

#: For tests that run the README quickstart (or examples/quickstart.py), written for MLflow 3.
needs_mlflow_3_for_the_readme = pytest.mark.skipif(
    not MLFLOW_3,
    reason=(
        "the README quickstart and examples/quickstart.py are written for MLflow 3 "
        f"(log_model(name=...)), as the README says; the installed mlflow is {INSTALLED_MLFLOW}"
    ),
)


def log_model_name(name: str = "model") -> dict[str, str]:
    """The keyword naming a model for ``mlflow.<flavor>.log_model``, as the installed mlflow has it.

    MLflow 3 takes ``name=`` (``artifact_path=`` is deprecated there); MLflow 2 only has
    ``artifact_path=``.
    """
    return {"name": name} if MLFLOW_3 else {"artifact_path": name}


def registry_uri_keyword(registry_uri: str) -> dict[str, str]:
    """``registry_uri=`` for ``mlflow.artifacts.download_artifacts``, where mlflow has it.

    MLflow 2's ``download_artifacts`` has no ``registry_uri``: it resolves a ``models:/`` URI
    through the process-wide registry URI (``MLFLOW_REGISTRY_URI``), so the caller sets that.
    """
    return {"registry_uri": registry_uri} if MLFLOW_3 else {}


def download_artifacts(artifact_uri: str, dst_path: str | Path, tracking_uri: str) -> Path:
    """The local copy ``mlflow.artifacts.download_artifacts`` makes of ``artifact_uri``."""
    if MLFLOW_3:
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
    if MLFLOW_3:
        return [f.path for f in client.list_artifacts(run_id, path)]
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        return [f.path for f in client.list_artifacts(run_id, path)]


def log_artifacts(tracking_uri: str, run_id: str, local_dir: str | Path, path: str) -> None:
    """``MlflowClient.log_artifacts`` of ``local_dir`` under ``path`` of the run."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if MLFLOW_3:
        client.log_artifacts(run_id, str(local_dir), path)
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri):
        client.log_artifacts(run_id, str(local_dir), path)


def no_files_under(root: Path) -> bool:
    """True when ``root`` holds no file (MLflow 2's SQL store creates ``./mlruns`` empty)."""
    return not root.exists() or all(p.is_dir() for p in root.rglob("*"))

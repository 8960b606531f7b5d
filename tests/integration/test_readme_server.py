"""The README's quickstart against a real MLflow 3.x *server*, not only the embedded store.

The quickstart registers ``info.model_uri`` (``models:/m-...``, a logged model) with
``create_version``; an MLflow 3 server refuses that without ``model_id``, which the client takes
from the source. The code runs verbatim, with ``MLFLOW_TRACKING_URI`` pointing at the server.
The server runs the installed mlflow: with MLflow 2 installed, the tests that need a 3.x server
or the README's MLflow 3 code are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from _client_version import INSTALLED_MLFLOW, MLFLOW_3, needs_mlflow_3_for_the_readme
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from test_readme_fresh_venv import quickstart_blocks

import registry_sdk as rs
from registry_sdk.errors import ModelNotFoundError


@pytest.fixture
def server_client(mlflow_server_sqlite, tmp_path):
    uri = mlflow_server_sqlite.uri
    with rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, max_retries=1
    ) as client:
        yield client


X, y = make_classification(n_samples=50, n_features=4, random_state=0)

needs_a_3_x_server = pytest.mark.skipif(
    not MLFLOW_3,
    reason=(
        "logged models (models:/m-...) need MLflow 3 as client and server, and the server here "
        f"runs the installed mlflow {INSTALLED_MLFLOW}"
    ),
)


def _log_sklearn_model(tracking_uri: str) -> tuple[str, str]:
    """Log a small model as MLflow 3 does (a logged model); return its URI and run id."""
    vanilla = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = vanilla.get_experiment_by_name("Default")
    assert experiment is not None
    run = vanilla.create_run(experiment.experiment_id)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run(run_id=run.info.run_id):
            info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model")
    finally:
        mlflow.set_tracking_uri(previous)
    return info.model_uri, run.info.run_id


@needs_a_3_x_server
def test_create_version_from_a_logged_model_uri_on_a_3_x_server(
    server_client, mlflow_server_sqlite
):
    model_uri, run_id = _log_sklearn_model(mlflow_server_sqlite.uri)
    assert model_uri.startswith("models:/m-")
    name = f"readme-model-id-{os.getpid()}-{id(server_client)}"
    server_client.create_model(name)

    # No model_id given: it is the source's.
    version = server_client.create_version(name, model_uri, run_id=run_id)

    assert (version.source, version.run_id) == (model_uri, run_id)
    # The server linked the logged model to the new version, as for MLflow's register_model.
    model_id = model_uri.removeprefix("models:/")
    vanilla = mlflow.MlflowClient(
        tracking_uri=mlflow_server_sqlite.uri, registry_uri=mlflow_server_sqlite.uri
    )
    linked = json.loads(vanilla.get_logged_model(model_id).tags["mlflow.modelVersions"])
    assert [(link["name"], int(link["version"])) for link in linked] == [(name, version.version)]
    server_client.set_alias(name, "prod", version.version)
    expected = LogisticRegression().fit(X, y).predict(X)
    np.testing.assert_array_equal(server_client.load_model(f"{name}@prod").predict(X), expected)


def test_a_missing_model_is_model_not_found_on_a_3_x_server(server_client):
    with pytest.raises(ModelNotFoundError):
        server_client.resolve("readme-ghost@prod")
    with pytest.raises(ModelNotFoundError):
        server_client.resolve("readme-ghost/1")


@needs_mlflow_3_for_the_readme
@pytest.mark.timeout(600)
def test_readme_quickstart_verbatim_against_a_3_x_server(mlflow_server_sqlite, tmp_path):
    _, code = quickstart_blocks()
    uri = mlflow_server_sqlite.uri
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    # The quickstart expects to make churn/1: start from a registry without "churn".
    if vanilla.search_registered_models(filter_string="name = 'churn'"):
        vanilla.delete_registered_model("churn")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")
    work = tmp_path / "work"
    work.mkdir()

    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=500,
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "churn/1 ('prod',)" in run.stdout
    # It went to the server, not to an embedded store in the working directory.
    assert not (work / "mlflow.db").exists()
    assert vanilla.get_model_version_by_alias("churn", "prod").version == "1"

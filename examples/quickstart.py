"""Quickstart: log a model with MLflow, register it, point an alias at it, and load it back.

Runs against the embedded default registry (``sqlite:///mlflow.db`` in the working directory),
or against the server in ``MLFLOW_TRACKING_URI``. Written for MLflow 3, like the README's
quickstart (``log_model(name=...)``, ``info.model_id``); with MLflow 2, log the model with
``artifact_path="model"`` and leave ``model_id`` out.
"""

import mlflow
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs

client = rs.RegistryClient()
mlflow.set_tracking_uri(client.tracking_uri)

# Train and log a model the usual MLflow way.
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
with mlflow.start_run() as run:
    model = LogisticRegression().fit(X, y)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X[:2])

# Register it, tag it, and point the `prod` alias at it (the move is logged with its reason).
client.create_model("churn", description="Customer churn classifier", exist_ok=True)
version = client.create_version(
    "churn", info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags={"team": "growth"}
)
client.set_alias("churn", "prod", version.version, reason="first release")

# Any reference form resolves to a typed ModelVersion with its aliases filled in.
prod = client.resolve("churn@prod")
print(f"churn@prod -> version {prod.version}, aliases {prod.aliases}, tags {dict(prod.tags)}")

# What registry_sdk writes is plain MLflow: vanilla MLflow loads it by alias.
loaded = mlflow.pyfunc.load_model("models:/churn@prod")
print("predictions:", loaded.predict(X[:3]))

"""Quickstart: train and register a model, promote it to ``prod`` through gates, and load it back.

Runs against the embedded default registry (``sqlite:///mlflow.db`` in the working directory),
or against the server in ``MLFLOW_TRACKING_URI``; run it again and it registers the next
version, promoted only if it is no worse than the one ``prod`` holds. Written for MLflow 3, like
the README's quickstart (``log_model(name=...)``, ``info.model_id``); with MLflow 2, log the
model with ``artifact_path="model"`` and leave ``model_id`` out.
"""

import mlflow
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs

client = rs.RegistryClient()
mlflow.set_tracking_uri(client.tracking_uri)
print(f"registry: {client.tracking_uri}")

# Train and log a model the usual MLflow way, with its accuracy on the run.
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
with mlflow.start_run() as run:
    model = LogisticRegression().fit(X, y)
    accuracy = model.score(X, y)
    mlflow.log_metric("accuracy", accuracy)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X[:2])

# Register it as a new version of `churn`, with a tag.
client.create_model("churn", description="Customer churn classifier", exist_ok=True)
version = client.create_version(
    "churn", info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags={"team": "growth"}
)
print(f"registered {version.ref} (accuracy {accuracy:.3f})")

# Promote it to `prod` if it passes the gates: good enough, and no worse than the current prod
# (the first promotion has nothing to beat). The move is logged with who, when and why.
event = client.promote(
    version.ref, to="prod", require=["accuracy >= 0.8", "accuracy >= @prod"], reason="quickstart"
)
before = "-" if event.from_version is None else event.from_version
print(f"promoted churn@prod: {before} -> {event.to_version}")

# Any reference form resolves to a typed ModelVersion with its aliases filled in.
prod = client.resolve("churn@prod")
print(f"churn@prod is {prod.ref}, aliases {prod.aliases}, team {prod.tags['team']}")

# Load it through registry_sdk's verified local cache ...
loaded = rs.load_model("churn@prod", client=client)
print(f"loaded churn@prod with registry_sdk; predictions: {loaded.predict(X[:3])}")
# ... and with vanilla MLflow: what registry_sdk writes is plain MLflow.
vanilla = mlflow.pyfunc.load_model("models:/churn@prod")
print(f"loaded models:/churn@prod with MLflow; predictions: {vanilla.predict(X[:3])}")

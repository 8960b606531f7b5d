"""The same job in idiomatic plain MLflow; report the overhead over the bare training."""

import json
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier


def train(X, y, n_estimators: int = 200):
    model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1, random_state=0).fit(X, y)
    return model, {"accuracy": model.score(X, y)}


rng = np.random.RandomState(0)
X = rng.rand(2000, 20)
y = (X[:, 0] + X[:, 1] > 1).astype(int)

started = time.perf_counter()
train(X, y)
bare = time.perf_counter() - started

started = time.perf_counter()
import mlflow  # noqa: E402 - importing MLflow is part of doing the job with it
import mlflow.sklearn  # noqa: E402

mlflow.set_tracking_uri("sqlite:///mlflow.db")
with mlflow.start_run():
    mlflow.log_params({"n_estimators": 200})
    model, metrics = train(X, y)
    mlflow.log_metrics(metrics)
    # MLflow's default (skops) format refuses a forest unless its tree type is trusted.
    info = mlflow.sklearn.log_model(
        model, name="model", skops_trusted_types=["sklearn.tree._tree.Tree"]
    )
version = mlflow.register_model(info.model_uri, "bench-rf-mlflow")
mlflow.MlflowClient().set_registered_model_alias("bench-rf-mlflow", "prod", version.version)
total = time.perf_counter() - started
print(json.dumps({"overhead": total - bare, "bare": bare, "total": total}))

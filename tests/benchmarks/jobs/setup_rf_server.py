"""Register a 200-tree forest with plain MLflow (default sklearn format) as rf@prod."""

import sys

import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.ensemble import RandomForestClassifier

mlflow.set_tracking_uri(sys.argv[1])
rng = np.random.RandomState(0)
X = rng.rand(2000, 20)
y = (X[:, 0] + X[:, 1] > 1).astype(int)
model = RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=0).fit(X, y)
with mlflow.start_run():
    info = mlflow.sklearn.log_model(
        model, name="model", skops_trusted_types=["sklearn.tree._tree.Tree"]
    )
version = mlflow.register_model(info.model_uri, "rf")
mlflow.MlflowClient().set_registered_model_alias("rf", "prod", version.version)
print(version.version)

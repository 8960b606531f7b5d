"""Train a scikit-learn model and register it with @register, then promote it behind a gate.

Runs against the embedded default registry (``sqlite:///mlflow.db`` here) or the server in
``MLFLOW_TRACKING_URI``.
"""

from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import registry_sdk as rs

X, y = make_classification(n_samples=600, n_features=10, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)


@rs.register("churn-rf", alias="staging", tags={"team": "growth"})
def train(X, y, n_estimators: int = 50, max_depth: int = 6):
    model = RandomForestClassifier(
        n_estimators=n_estimators, max_depth=max_depth, random_state=0
    ).fit(X, y)
    rs.log_metric("train_accuracy", model.score(X, y))
    return model, {"accuracy": model.score(X_test, y_test)}


model, metrics = train(X_train, y_train)
version = train.last_version
print(f"registered {version.ref} with accuracy {metrics['accuracy']:.3f}")
print("requirements:", version.tags["registry_sdk.env.packages"])

client = rs.RegistryClient()
event = client.promote(version.ref, to="prod", require=["accuracy >= 0.8", "accuracy >= @prod"])
print(f"promoted: {event.name}@{event.alias} -> {event.to_version}")
print("prod predicts:", rs.load_model("churn-rf@prod").predict(X_test[:5]))

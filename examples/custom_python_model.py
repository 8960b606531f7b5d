"""Register any Python object as a model: a class defined right here, saved by value.

The registered model loads with vanilla ``mlflow.pyfunc.load_model`` anywhere MLflow runs,
without this file and without registry_sdk installed.
"""

import numpy as np

import registry_sdk as rs


class ThresholdScorer:
    """Flags rows whose weighted sum passes a threshold."""

    def __init__(self, weights, threshold):
        self.weights = np.asarray(weights, dtype=float)
        self.threshold = threshold

    def predict(self, X):
        return (np.asarray(X, dtype=float) @ self.weights > self.threshold).astype(int)


@rs.register("threshold-scorer", alias="prod")
def build(threshold: float = 0.5):
    scorer = ThresholdScorer([0.2, 0.3, 0.5], threshold)
    rs.log_metric("threshold", threshold)
    return scorer


build(threshold=0.6)
print("registered", build.last_version.ref, "aliases", build.last_version.aliases)

loaded = rs.load_model("threshold-scorer@prod")
print("predictions:", loaded.predict(np.array([[1.0, 1.0, 1.0], [0.1, 0.1, 0.1]])))

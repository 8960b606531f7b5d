"""Train and register one version of a model built with the ``lineage_dep`` distribution.

Usage: ``python lifecycle_train_dep.py NAME ALPHA EPOCHS SEED``

Run with ``MLFLOW_TRACKING_URI`` and ``REGISTRY_SDK_CACHE_DIR`` set and ``PYTHONPATH`` holding
one install of ``lineage_dep`` (the test writes two, 1.0 and 2.0, each a package plus its
``.dist-info``). The data is the same on every run; only the arguments and the installed
``lineage_dep`` differ. Prints the registered version and its metrics as one JSON line.
"""

from __future__ import annotations

import json
import sys

import lineage_dep
import numpy as np

import registry_sdk as rs


def main() -> int:
    name, alpha, epochs, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.25

    @rs.register(name)
    def train(X, y, alpha: float, epochs: int, seed: int):
        model = lineage_dep.Linear.fit(X, y, alpha=alpha, epochs=epochs, seed=seed)
        mse = float(np.mean((model.predict(X) - y) ** 2))
        return model, {"mse": mse, "n_rows": float(len(X))}

    _, metrics = train(X, y, alpha, epochs, seed)
    registered = train.last_version
    if registered is None:
        print("the registration went to the outbox", file=sys.stderr)
        return 1
    print(json.dumps({"version": registered.version, "metrics": metrics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Register a plain function defined in this script, so in ``__main__``, as the model.

Usage: ``python train_main_function.py NAME INPUT.npy EXPECTED.npy``; the registry comes from
``MLFLOW_TRACKING_URI``. Writes the in-memory function's predictions on INPUT to EXPECTED and
prints the registered version as JSON.
"""

import json
import sys

import numpy as np

import registry_sdk as rs

NAME, INPUT, EXPECTED = sys.argv[1:4]
WEIGHTS = np.array([0.5, -1.25, 2.0, 0.0, 0.75])


def score(X):
    """The model: a function that lives in __main__ and uses NumPy and a module global."""
    return np.tanh(np.asarray(X, dtype=np.float64) @ WEIGHTS) + 1.0


@rs.register(NAME, alias="prod")
def train(offset: float = 0.0):
    rs.log_metric("offset", offset)
    return score


if __name__ == "__main__":
    model = train()
    if model is not score:
        sys.exit("the wrapper did not return the function itself")
    np.save(EXPECTED, model(np.load(INPUT)))
    mv = train.last_version
    print(json.dumps({"name": mv.name, "version": mv.version, "aliases": list(mv.aliases)}))

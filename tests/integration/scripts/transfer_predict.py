"""Load registered models the vanilla MLflow way and predict; registry_sdk is not involved.

Usage: ``python transfer_predict.py INPUT.npy OUTPUT.npz MODEL_URI...``

The registry is ``MLFLOW_TRACKING_URI``. Predictions on INPUT go to OUTPUT, one array per
model URI (``p0``, ``p1``, ...). Exits non-zero if registry_sdk got imported along the way.
"""

import sys

import mlflow.pyfunc
import numpy as np

X = np.load(sys.argv[1])
predictions = {
    f"p{i}": np.asarray(mlflow.pyfunc.load_model(uri).predict(X))
    for i, uri in enumerate(sys.argv[3:])
}
if "registry_sdk" in sys.modules:
    sys.exit("registry_sdk was imported: this was meant to be vanilla MLflow")
np.savez(sys.argv[2], **predictions)

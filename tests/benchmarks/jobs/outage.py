"""Time to fall back with the registry down (connection refused), default settings.

``outage.py MODE``, run in a directory holding ``uri`` (a server that was stopped) and
``cache`` (filled while it ran). Prints JSON; ``seconds`` is what the scenario measures:

- ``cached-alias``: ``load_model("rf@prod")`` returning the cached model (a warning says so);
- ``uncached``: ``load_model("rf/99")``, never cached, raising ``RegistryUnavailableError``;
- ``register``: an ``@register`` call, beyond its training, putting the model in the outbox.
"""

import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

import registry_sdk as rs

mode = sys.argv[1]
os.environ["MLFLOW_TRACKING_URI"] = Path("uri").read_text().strip()  # this process's own env
os.environ["REGISTRY_SDK_CACHE_DIR"] = str(Path("cache").resolve())
rng = np.random.RandomState(0)
X = rng.rand(2000, 20)
y = (X[:, 0] + X[:, 1] > 1).astype(int)

if mode == "cached-alias":
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        started = time.perf_counter()
        model = rs.load_model("rf@prod")
        seconds = time.perf_counter() - started
    assert any(issubclass(w.category, rs.StaleAliasWarning) for w in seen), seen
    model.predict(X)
elif mode == "uncached":
    started = time.perf_counter()
    try:
        rs.load_model("rf/99")
    except rs.RegistryUnavailableError:
        seconds = time.perf_counter() - started
    else:
        raise SystemExit("the load did not fail")
elif mode == "register":
    trained = {}

    def train(X, y):
        began = time.perf_counter()
        # The register benchmark's forest: saving's imports overlap training, as in real use.
        model = RandomForestClassifier(n_estimators=200, n_jobs=1, random_state=0).fit(X, y)
        trained["seconds"] = time.perf_counter() - began
        return model

    registered = rs.register("outage-model")(train)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        started = time.perf_counter()
        registered(X, y)
        total = time.perf_counter() - started
    assert registered.last_version is None  # in the outbox, not registered
    assert any(issubclass(w.category, rs.PendingRegistrationWarning) for w in seen), seen
    seconds = total - trained["seconds"]
else:
    msg = f"unknown mode {mode!r}"
    raise SystemExit(msg)
print(json.dumps({"seconds": seconds}))

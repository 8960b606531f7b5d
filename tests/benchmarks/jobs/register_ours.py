"""Train a 200-tree forest on 2000x20 and register it with @register; report the overhead."""

import json
import time

import numpy as np
from sklearn.ensemble import RandomForestClassifier

import registry_sdk as rs


def train(X, y, n_estimators: int = 200):
    model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=1, random_state=0).fit(X, y)
    return model, {"accuracy": model.score(X, y)}


rng = np.random.RandomState(0)
X = rng.rand(2000, 20)
y = (X[:, 0] + X[:, 1] > 1).astype(int)

started = time.perf_counter()
train(X, y)
bare = time.perf_counter() - started

registered = rs.register("bench-rf", alias="prod")(train)
started = time.perf_counter()
registered(X, y)
total = time.perf_counter() - started
assert registered.last_version is not None
print(json.dumps({"overhead": total - bare, "bare": bare, "total": total}))

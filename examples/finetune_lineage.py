"""Fine-tune from a registered base model: lineage records which version it came from."""

import numpy as np
from sklearn.linear_model import SGDClassifier

import registry_sdk as rs

rng = np.random.RandomState(0)
X = rng.rand(400, 4)
y = (X[:, 0] + X[:, 1] > 1).astype(int)


@rs.register("sgd-base", alias="prod")
def train_base(X, y, alpha: float = 1e-3):
    model = SGDClassifier(alpha=alpha, random_state=0).fit(X, y)
    return model, {"accuracy": model.score(X, y)}


@rs.register("sgd-tuned", alias="staging")
def fine_tune(X, y, epochs: int = 5):
    # Loading the base inside a @register function records it in the new version's lineage.
    model = rs.load_model("sgd-base@prod", flavor="native")
    for _ in range(epochs):
        model.partial_fit(X, y)
    return model, {"accuracy": model.score(X, y)}


train_base(X, y)
fine_tune(X[:200], y[:200])

client = rs.RegistryClient()
lineage = client.lineage(fine_tune.last_version.ref)
print(f"{lineage.version.ref} derived from {list(lineage.derived_from)}")
print("params:", dict(lineage.params))
print("diff base -> tuned:", client.diff("sgd-base@prod", "sgd-tuned@staging").to_dict()["metrics"])

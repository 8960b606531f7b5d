"""Train a small classifier and register it with registry_sdk: the CI example's training step.

Used by ``pipeline.sh`` and by the GitHub Actions workflow next to it. The registry is the one
in ``MLFLOW_TRACKING_URI`` (default: ``sqlite:///mlflow.db`` in the working directory). Each run
registers one new version, points ``--alias`` (default ``candidate``) at it, and prints it as one
JSON line. The version records its params (``C``, ``seed``), its holdout ``accuracy``, the data
fingerprints, the environment and the git state, so ``registry check`` can gate on the metric
and ``registry lineage`` / ``registry diff`` can explain it later.

Usage: ``python train.py [--name NAME] [--alias ALIAS] [--C 1.0] [--seed 0]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

import registry_sdk as rs

#: Exit status when the registry cannot be reached (as ``registry`` itself uses).
EXIT_UNAVAILABLE = 4


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A noisy, linearly separable-ish binary problem: train/test split, reproducible by seed."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(800, 6))
    logits = X @ np.array([1.5, -2.0, 1.0, 0.0, 0.5, 0.0])
    y = (logits + rng.normal(scale=1.0, size=len(X)) > 0).astype(int)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
    return X_train, X_test, y_train, y_test


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and register a candidate model.")
    parser.add_argument("--name", default="ci-demo", help="registered model name")
    parser.add_argument("--alias", default="candidate", help="alias to point at the new version")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--seed", type=int, default=0, help="data and split seed")
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = make_data(args.seed)

    def train(X: np.ndarray, y: np.ndarray, C: float, seed: int) -> tuple[object, dict]:
        model = LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(X, y)
        return model, {"accuracy": float(model.score(X_test, y_test))}

    # The arrays become data fingerprints, the scalars params, the dict the version's metrics.
    registered = rs.register(args.name, alias=args.alias)(train)
    # stdout carries one JSON line (CI pipes it into a file); MLflow's run links go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        registered(X_train, y_train, C=args.C, seed=args.seed)

    version = registered.last_version
    if version is None:  # the registry was unreachable: the model waits in the local outbox
        print("not registered: run `registry push` once the registry is back", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(
        json.dumps(
            {
                "ref": version.ref,
                "name": version.name,
                "version": version.version,
                "aliases": list(version.aliases),
                "metrics": dict(version.metrics),
            },
            sort_keys=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

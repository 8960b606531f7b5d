"""``examples/sweep_optuna.py`` against a real ``mlflow server``, checked with plain MLflow.

The example runs as a user runs it (a fresh interpreter and directory, ``MLFLOW_TRACKING_URI``
naming the server); its Optuna study trains four trials at a time, each through the same
``@register`` function. Then vanilla ``mlflow.MlflowClient`` must find one version per trial,
no more: each with its trial's params and accuracy, on its own run; and ``prod`` on the best
trial's version.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import mlflow
import pytest

# A fresh interpreter trains eight models and pushes them over REST: slow on a busy 2-core
# machine. Every wait is bounded (a hang fails); nothing asserts how long anything took.
pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sweep_optuna.py"
MODEL = "churn-sweep"
METRIC_TAG = "registry_sdk.metrics.accuracy"
TRIAL = re.compile(
    r"^trial (?P<number>\d+): C=(?P<C>\S+) fit_intercept=(?P<fit_intercept>True|False) "
    r"accuracy=(?P<accuracy>\S+) -> " + re.escape(MODEL) + r"/(?P<version>\d+)$",
    re.MULTILINE,
)


def run_example(uri: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    env["MLFLOW_TRACKING_URI"] = uri
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, str(EXAMPLE)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )


def test_every_trial_is_one_version_with_its_params_and_prod_is_the_best(
    mlflow_server_sqlite, tmp_path
):
    uri = mlflow_server_sqlite.uri
    proc = run_example(uri, tmp_path)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-6000:]}"
    out = proc.stdout
    assert f"registry: {uri}" in out
    assert "PendingRegistrationWarning" not in proc.stderr  # every model reached the server
    header = re.search(r"^study (\S+): (\d+) trials, 4 at a time$", out, re.MULTILINE)
    chosen = re.search(rf"^best: trial (\d+) .* is {MODEL}/(\d+)$", out, re.MULTILINE)
    assert header is not None, out
    assert chosen is not None, out
    study, n_trials = header[1], int(header[2])
    best, best_version = int(chosen[1]), int(chosen[2])
    printed = {int(m["number"]): m for m in TRIAL.finditer(out)}
    assert n_trials > 1
    assert sorted(printed) == list(range(n_trials))

    # Plain MLflow: the versions this study made, found through their runs' params.
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    made = {}
    for mv in vanilla.search_model_versions(f"name = '{MODEL}'"):
        run = vanilla.get_run(mv.run_id)
        if run.data.params.get("study") == study:
            made.setdefault(int(run.data.params["trial"]), []).append((mv, run))
    # One version per trial, none twice.
    assert sorted(made) == sorted(printed)
    assert {trial: len(found) for trial, found in made.items()} == dict.fromkeys(printed, 1)
    versions = {trial: found[0][0] for trial, found in made.items()}
    runs = {trial: found[0][1] for trial, found in made.items()}
    assert len({mv.run_id for mv in versions.values()}) == len(printed)
    keys = Counter(mv.tags["registry_sdk.idempotency_key"] for mv in versions.values())
    assert set(keys.values()) == {1}

    for trial, line in printed.items():
        mv, run = versions[trial], runs[trial]
        assert int(mv.version) == int(line["version"]), f"trial {trial}"
        # The function's arguments as the run's params; its accuracy on the run and version.
        assert run.data.params["fit_intercept"] == line["fit_intercept"]
        assert math.isclose(float(run.data.params["C"]), float(line["C"]), rel_tol=1e-3)
        accuracy = run.data.metrics["accuracy"]
        assert f"{accuracy:.3f}" == line["accuracy"]
        assert float(mv.tags[METRIC_TAG]) == accuracy
        assert "train_accuracy" in run.data.metrics
        assert mv.tags["tuned_with"] == "optuna"
        assert run.info.status == "FINISHED"

    # prod holds the best trial's version, the most accurate of the study.
    assert best_version == int(versions[best].version)
    accuracies = {trial: run.data.metrics["accuracy"] for trial, run in runs.items()}
    assert accuracies[best] == max(accuracies.values())
    prod = vanilla.get_model_version_by_alias(MODEL, "prod")
    assert int(prod.version) == best_version
    assert re.search(rf"^promoted {MODEL}@prod: \S+ -> {best_version}$", out, re.MULTILINE)

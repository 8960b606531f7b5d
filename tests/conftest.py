"""Isolation shared by every test: MLflow's process-wide tracking state is restored after each."""

from __future__ import annotations

import os
import sys

import pytest

# MLflow reports usage to the internet from every process that imports it, unless told not to;
# tests talk to loopback only. Set before mlflow is imported; inherited by every subprocess
# (servers, examples, fresh interpreters), which may drop MLFLOW_* variables but keep this one.
os.environ["DO_NOT_TRACK"] = "true"


@pytest.fixture(autouse=True)
def _restore_mlflow_globals():
    """``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into the environment; undo it."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None and getattr(utils, "_tracking_uri", None) is not None:
        utils._tracking_uri = saved.get("MLFLOW_TRACKING_URI")

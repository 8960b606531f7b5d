"""The benchmark scenarios: each one is registry_sdk beside plain MLflow doing the same job."""

from __future__ import annotations

import sys

from harness import Scenario

PY = sys.executable


def import_scenario(repeat: int) -> Scenario:
    """Whole-process ``import registry_sdk`` vs ``import mlflow`` (target: a tenth)."""
    return Scenario(
        name="import",
        description="python -c 'import registry_sdk' vs python -c 'import mlflow', fresh processes",
        ours=[PY, "-c", "import registry_sdk"],
        baseline=[PY, "-c", "import mlflow"],
        target_ratio=0.10,
        repeat=repeat,
    )


def all_scenarios(repeat: int) -> list[Scenario]:
    """Every scenario, in report order."""
    return [import_scenario(repeat)]

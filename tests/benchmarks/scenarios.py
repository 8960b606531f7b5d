"""The benchmark scenarios: each one is registry_sdk beside plain MLflow doing the same job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import Scenario

PY = sys.executable
JOBS = Path(__file__).parent / "jobs"


def _create_sqlite_registry(workdir: Path) -> None:
    """Create ./mlflow.db once, so neither side pays for the schema migration."""
    subprocess.run(
        [
            PY,
            "-c",
            "import mlflow; mlflow.MlflowClient('sqlite:///mlflow.db').search_experiments()",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
    )


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


def register_scenario(repeat: int) -> Scenario:
    """@register vs idiomatic MLflow (run, params, metrics, log_model, register, alias).

    Each side reports its own overhead: wall time of train-and-register minus the bare
    training function's, both measured in the same fresh process. Target: at most 0.4.
    """
    return Scenario(
        name="register_overhead",
        description="RandomForest(200) on 2000x20, registration overhead: @register vs MLflow",
        ours=[PY, str(JOBS / "register_ours.py")],
        baseline=[PY, str(JOBS / "register_mlflow.py")],
        target_ratio=0.4,
        repeat=max(3, repeat // 3),
        warmup=1,
        setup=_create_sqlite_registry,
        env={"REGISTRY_SDK_CACHE_DIR": ".registry-sdk-cache", "MLFLOW_TRACKING_URI": ""},
        metric="overhead",
    )


def all_scenarios(repeat: int) -> list[Scenario]:
    """Every scenario, in report order."""
    return [import_scenario(repeat), register_scenario(repeat)]

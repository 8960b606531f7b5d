"""The README's quickstart and every script in examples/ run as written, in a fresh directory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _client_version import needs_mlflow_3_for_the_readme

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: Written for MLflow 3, as the README's quickstart is (see its docstring).
FOR_MLFLOW_3 = {"quickstart.py"}


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")
    return env


def run_python(code_or_path: str | Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    args = [str(code_or_path)] if isinstance(code_or_path, Path) else ["-c", code_or_path]
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def readme_quickstart() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "the README's quickstart has no python block"
    return blocks[0]


@needs_mlflow_3_for_the_readme
def test_readme_quickstart_runs_as_written(tmp_path):
    proc = run_python(readme_quickstart(), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "churn/1 ('prod',)" in proc.stdout
    assert (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(p, marks=[needs_mlflow_3_for_the_readme] if p.name in FOR_MLFLOW_3 else [])
        for p in EXAMPLES
    ],
    ids=[p.name for p in EXAMPLES],
)
def test_example_runs(script, tmp_path):
    proc = run_python(script, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "an example should show what it did"

"""The README's quickstart, verbatim, in a fresh virtual environment with only `pip install .`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def quickstart_blocks() -> tuple[list[str], str]:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Quickstart", 1)[1]
    shell = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)[0]
    python = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    commands = [line.split("#", 1)[0].strip() for line in shell.splitlines()]
    return [c for c in commands if c], python


@pytest.mark.timeout(900)
def test_readme_quickstart_in_a_fresh_venv(tmp_path):
    commands, code = quickstart_blocks()
    assert commands == ["pip install ."], "the quickstart's install step changed: update this test"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    env.pop("PYTHONPATH", None)
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")
    # `pip install .` from the checkout, exactly as the README says (run in the checkout).
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "."],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # The quickstart needs scikit-learn, which MLflow itself depends on: nothing else installed.
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [str(python), "-c", code],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "churn/1 ('prod',)" in run.stdout
    assert sys.executable != str(python)

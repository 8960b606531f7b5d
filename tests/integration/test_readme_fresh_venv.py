"""The README's two commands: the user's one runs verbatim on a fresh copy of the checkout.

The Quickstart's command makes a fresh virtual environment, installs the package with only
``pip install .`` and runs ``examples/quickstart.py`` on the embedded registry. It runs here
exactly as written, parsed out of README.md, in a copy of the working tree without ``.venv``.
The Development command (the dev extra, then the tests) is what ``.ci/run`` runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def readme_command(title: str) -> str:
    """The first ``bash`` block of a README section, which must be one command on one line."""
    block = re.findall(r"```bash\n(.*?)```", _section(title), flags=re.DOTALL)[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 1, f"the README's {title} command should be one line: {lines}"
    return lines[0].strip()


def quickstart_blocks() -> tuple[str, str]:
    """The Quickstart's set-up command and its first Python block."""
    python = re.findall(r"```python\n(.*?)```", _section("Quickstart"), flags=re.DOTALL)[0]
    return readme_command("Quickstart"), python


def copy_of_the_working_tree(to: Path) -> Path:
    """Every file git tracks or would track (untracked, not ignored), as it is on disk now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():  # a tracked file deleted in the working tree is gone here too
            (to / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / relative)
    return to


def test_the_user_command_installs_only_the_package_and_the_contributor_one_the_dev_extra():
    user = readme_command("Quickstart")
    contributor = readme_command("Development")
    assert "pip install . " in f"{user} "
    assert "[dev]" not in user
    assert "pip install -e '.[dev]'" in contributor
    assert contributor.endswith(" && .venv/bin/nox -s tests tests_mlflow2")


def test_ci_runs_the_readme_contributor_command():
    setup, _, tests = readme_command("Development").rpartition(" && ")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert setup in [line.replace(" -q ", " ") for line in ci], ".ci/run sets up otherwise"
    assert tests in ci, ".ci/run tests otherwise"


@pytest.mark.timeout(900)
def test_readme_quickstart_command_verbatim_in_a_fresh_copy(tmp_path):
    command = readme_command("Quickstart")
    checkout = copy_of_the_working_tree(tmp_path / "checkout")
    assert not (checkout / ".venv").exists()
    assert not (checkout / "mlflow.db").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(key, None)
    # `python3` is the interpreter running the tests (a supported version, with venv and pip).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["REGISTRY_SDK_CACHE_DIR"] = str(tmp_path / "cache")

    run = subprocess.run(
        ["bash", "-c", command],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=850,
    )

    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    out = run.stdout
    # It says what it did: registered, promoted through its gates, loaded both ways.
    assert f"registry: sqlite:///{checkout / 'mlflow.db'}" in out
    assert re.search(r"^registered churn/1 \(accuracy 0\.\d+\)$", out, re.MULTILINE), out
    assert "promoted churn@prod: - -> 1" in out
    assert "churn@prod is churn/1, aliases ('prod',), team growth" in out
    assert "loaded churn@prod with registry_sdk; predictions: [" in out
    assert "loaded models:/churn@prod with MLflow; predictions: [" in out
    # On the embedded default, in the working directory, from a venv of its own without the
    # dev extra: `pip install .` is all a user needs.
    assert (checkout / "mlflow.db").is_file()
    venv_bin = checkout / ".venv" / "bin"
    assert (venv_bin / "registry").is_file()
    assert not (venv_bin / "nox").exists()
    assert not (venv_bin / "pytest").exists()

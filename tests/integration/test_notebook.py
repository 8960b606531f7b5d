"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel, and the model class it
defines registers by value: vanilla MLflow loads ``models:/nb-model@prod`` in a fresh process
that cannot import registry_sdk (nor the notebook) and predicts exactly what the notebook did.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"

# Kernel start-up, a fresh SQLite registry's migrations and the fresh loading process.
pytestmark = pytest.mark.timeout(300)

# Appended by the test only: saves the data and the notebook model's predictions for comparison.
CAPTURE_CELL = """\
np.save("X.npy", X)
np.save("expected.npy", model.predict(X))
"""

# Runs in a fresh interpreter: vanilla MLflow, and importing registry_sdk is made to fail.
LOAD_SCRIPT = """\
import sys

sys.modules["registry_sdk"] = None  # any import of registry_sdk now raises ImportError

import mlflow
import numpy as np

tracking_uri, features, out = sys.argv[1:]
mlflow.set_tracking_uri(tracking_uri)
model = mlflow.pyfunc.load_model("models:/nb-model@prod")
np.save(out, np.asarray(model.predict(np.load(features))))
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REGISTRY_SDK_"))}
    env.update(extra)
    return env


def run_notebook(workdir: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CAPTURE_CELL))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=240,
        resources={"metadata": {"path": str(workdir)}},  # the kernel's working directory
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return nb


def test_quickstart_notebook_registers_a_model_vanilla_mlflow_loads(tmp_path):
    workdir = tmp_path / "notebook"
    workdir.mkdir()
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = clean_env(
        MLFLOW_TRACKING_URI=tracking_uri, REGISTRY_SDK_CACHE_DIR=str(tmp_path / "cache")
    )

    nb = run_notebook(workdir, env)

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells), "every cell ran"
    outputs = [o for c in code_cells for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "nb-model/1 ('prod',)" in printed, printed
    assert "PendingRegistrationWarning" not in printed

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    loaded = fresh / "loaded.npy"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, tracking_uri, str(workdir / "X.npy"), str(loaded)],
        cwd=fresh,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    expected = np.load(workdir / "expected.npy")
    assert expected.shape == (50,)
    np.testing.assert_array_equal(np.load(loaded), expected)


def test_the_first_cell_says_how_to_run_the_notebook():
    first = nbformat.read(NOTEBOOK, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    for needed in (
        "python3 -m venv .venv && .venv/bin/pip install . jupyterlab ipykernel",  # which install
        ".venv/bin/jupyter lab examples/quickstart.ipynb",
        "Python 3 (ipykernel)",  # which kernel: the notebook's kernelspec
        "sqlite:///mlflow.db",  # which registry
        "MLFLOW_TRACKING_URI",
    ):
        assert needed in first.source, needed
    kernelspec = nbformat.read(NOTEBOOK, as_version=4).metadata.kernelspec
    assert kernelspec.display_name in first.source

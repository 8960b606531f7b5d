"""The check of a model's requirements against this environment, made before MLflow loads it.

It stands in for MLflow's own (``pyfunc.load_model(suppress_warnings=False)``), which maps every
installed distribution to its modules first; this one reads installed versions only.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from typing import TYPE_CHECKING

import mlflow

from registry_sdk.loading import _environment_mismatches, _warn_environment_mismatches

if TYPE_CHECKING:
    from pathlib import Path

NUMPY = importlib.metadata.version("numpy")
PYTHON = platform.python_version()


def _meta(python: str = PYTHON) -> dict:
    return {"flavors": {"python_function": {"python_version": python}}}


def _model(tmp_path: Path, *lines: str) -> Path:
    (tmp_path / "requirements.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_a_met_environment_has_no_mismatch(tmp_path):
    model = _model(
        tmp_path,
        f"numpy=={NUMPY}",
        "numpy",
        f"mlflow=={mlflow.__version__}",
        "# a comment",
        "-r other-requirements.txt",
        "git+https://example.invalid/pkg.git",
        'not-installed-anywhere==1.0; python_version < "3"',
    )
    assert _environment_mismatches(model, _meta()) == []


def test_wrong_and_missing_packages_are_named_with_what_was_required(tmp_path):
    model = _model(tmp_path, "numpy==0.0.1", "no-such-pkg-xyz>=1", "mlflow<1")
    assert _environment_mismatches(model, _meta()) == [
        f"numpy (current: {NUMPY}, required: numpy==0.0.1)",
        "no-such-pkg-xyz (current: uninstalled, required: no-such-pkg-xyz>=1)",
        f"mlflow (current: {mlflow.__version__}, required: mlflow<1)",
    ]


def test_another_python_minor_version_is_a_mismatch_and_a_patch_release_is_not(tmp_path):
    major, minor, _ = PYTHON.split(".")
    same_minor = f"{major}.{minor}.0"
    assert _environment_mismatches(tmp_path, _meta(same_minor)) == []
    assert _environment_mismatches(tmp_path, _meta("2.7.18")) == [
        f"python (current: {PYTHON}, the model was saved with: 2.7.18)"
    ]


def test_a_model_without_requirements_or_python_version_has_nothing_to_check(tmp_path):
    assert _environment_mismatches(tmp_path, {}) == []


def test_mismatches_are_logged_once_as_one_warning(tmp_path, caplog):
    from registry_sdk.entities import ModelVersion

    class Entry:
        artifacts = _model(tmp_path, "numpy==0.0.1")
        version = ModelVersion.from_json({"name": "m", "version": "3"})

    with caplog.at_level(logging.WARNING, logger="registry_sdk"):
        _warn_environment_mismatches(Entry(), _meta())  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "m/3" in warnings[0].getMessage()
    assert "numpy (current:" in warnings[0].getMessage()

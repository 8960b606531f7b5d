"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``.

Sessions run in the environment nox itself runs from (the project's ``.venv``, set up by
``pip install -e '.[dev]'``), so nothing is installed twice.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.default_venv_backend = "none"
# The one session with a virtual environment of its own (tests_mlflow2) keeps it outside the
# checkout, beside the test suite's MLflow server environments, so a fresh clone reuses it.
nox.options.envdir = str(
    Path(os.environ.get("REGISTRY_SDK_TEST_ENVS", "").strip() or "~/.cache/registry-sdk-test-envs")
    .expanduser()
    .joinpath("nox")
)

PYTHON = sys.executable
#: The MLflow 2 release ``tests_mlflow2`` installs as the client (the newest 2.x).
MLFLOW2_CLIENT = "2.22.5"
#: What ``tests_mlflow2`` runs by default: the unit tests and the integration tests of what an
#: MLflow 2 client changes (registering, loading, the lifecycle, the CLI, transfers, other
#: server versions). ``nox -s tests_mlflow2 -- tests/unit tests/integration`` runs everything.
MLFLOW2_TESTS = (
    "tests/unit",
    "tests/integration/test_client_contract.py",
    "tests/integration/test_lifecycle.py",
    "tests/integration/test_loading.py",
    "tests/integration/test_register_flavors.py",
    "tests/integration/test_register_mlflow2.py",
    "tests/integration/test_outbox.py",
    "tests/integration/test_cli_e2e.py",
    "tests/integration/test_transfer.py",
    "tests/integration/test_server_capabilities.py",
    "tests/integration/test_server_without_aliases.py",
    "tests/integration/test_support_matrix.py",
)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (the integration suite starts its own MLflow servers)."""
    session.run(PYTHON, "-m", "pytest", "tests/unit", "tests/integration", *session.posargs)


@nox.session(venv_backend="venv", reuse_venv=True)
def tests_mlflow2(session: nox.Session) -> None:
    """The tests with MLflow 2.22 as the installed client, in a virtual environment of its own.

    Training images often pin MLflow 2; the package supports ``mlflow>=2.16``. The environment
    is built once (outside the checkout, see ``nox.options.envdir``) and this checkout is
    installed into it, editable, on every run.
    """
    session.install(
        "--disable-pip-version-check",
        "-e",
        ".[dev]",
        f"mlflow[auth]=={MLFLOW2_CLIENT}",
        # MLflow 2 (client and server) needs SQLAlchemy < 2.1 and pkg_resources.
        "sqlalchemy<2.1",
        "setuptools<82",
    )
    # The server environments the tests use (here also the newest 3.x, not installed here).
    session.run("python", "tests/integration/_versions.py")
    session.run("python", "-m", "pytest", *(session.posargs or MLFLOW2_TESTS))


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.run(PYTHON, "-m", "ruff", "check", ".")
    session.run(PYTHON, "-m", "ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on the package and this noxfile."""
    session.run(PYTHON, "-m", "mypy", "--strict", "registry_sdk", "noxfile.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors (into site/)."""
    session.run(
        PYTHON,
        "-m",
        "mkdocs",
        "build",
        "--strict",
        "-f",
        "docs/mkdocs.yml",
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against plain MLflow in the same run; writes .bench/results.json."""
    session.run(PYTHON, "tests/benchmarks/run.py", *session.posargs)

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
#: What ``tests_mlflow2`` runs by default, in CI, as (paths, ``-k`` expression) pairs: the unit
#: tests and the integration tests of what the installed MLflow does for the SDK (the embedded
#: store, registering and pushing through a server with proxied artifacts, an MLflow 2 client
#: against the newest 3.x server, the support matrix of docs/guide/servers.md). What the SDK
#: sends over REST does not depend on the installed MLflow, so the contract and lifecycle suites
#: run on the embedded store only. ``nox -s tests_mlflow2 -- tests/unit tests/integration`` runs
#: every test this way.
MLFLOW2_TESTS = (
    (
        (
            "tests/unit",
            "tests/integration/test_client_contract.py",
            "tests/integration/test_lifecycle.py",
            "tests/integration/test_outbox.py",
        ),
        "not server-sqlite and not server-postgres and not server-2 and not server-3",
    ),
    (
        ("tests/integration/test_register_mlflow2.py", "tests/integration/test_support_matrix.py"),
        "test_support_matrix or (test_register_makes and not 2.22.5 and not 2.9.2)",
    ),
)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (the integration suite starts its own MLflow servers)."""
    args = session.posargs or ["--durations=30"]
    session.run(PYTHON, "-m", "pytest", "tests/unit", "tests/integration", *args)


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
        # MLflow 2 (client and server) needs SQLAlchemy < 2.1 and pkg_resources; its scoring
        # server (registry serve) uses FastAPI's app.route, which Starlette 1.0 removed.
        "sqlalchemy<2.1",
        "setuptools<82",
        "starlette<1",
    )
    # The server environments the tests use (here also the newest 3.x, not installed here).
    session.run("python", "tests/integration/_versions.py")
    if session.posargs:
        session.run("python", "-m", "pytest", *session.posargs)
        return
    for paths, selection in MLFLOW2_TESTS:
        session.run("python", "-m", "pytest", *paths, "-k", selection, "--durations=10")


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

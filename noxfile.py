"""Developer sessions: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``.

Sessions run in the environment nox itself runs from (the project's ``.venv``, set up by
``pip install -e '.[dev]'``), so nothing is installed twice.
"""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.default_venv_backend = "none"

PYTHON = sys.executable


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (the integration suite starts its own MLflow servers)."""
    session.run(PYTHON, "-m", "pytest", "tests/unit", "tests/integration", *session.posargs)


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

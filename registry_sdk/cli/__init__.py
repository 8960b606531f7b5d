"""The ``registry`` command: a root click group; each command group lives in its own module."""

from __future__ import annotations

import click

from registry_sdk._version import __version__
from registry_sdk.cli._common import run_main
from registry_sdk.cli.doctor import doctor

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="registry")
def cli() -> None:
    """Work with an MLflow Model Registry from the terminal and from CI/CD pipelines."""


cli.add_command(doctor)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``registry`` console script."""
    run_main(cli, argv)

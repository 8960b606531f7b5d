"""What every command shares: exit codes, JSON output, and turning errors into messages."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from registry_sdk.errors import (
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnavailableError,
)

#: Documented exit codes of the ``registry`` command.
EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_PERMISSION = 5
EXIT_ERROR = 6


def exit_code_for(error: RegistryError) -> int:
    """The documented exit code for a registry error."""
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, RegistryUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, PermissionDeniedError):
        return EXIT_PERMISSION
    if isinstance(error, ValueError):
        return EXIT_USAGE
    return EXIT_ERROR


def echo_json(payload: Any) -> None:
    """Print ``payload`` as indented, key-sorted JSON."""
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def run_main(group: click.Group, argv: list[str] | None) -> None:
    """Run ``group``; a ``RegistryError`` becomes a one-line message and its exit code."""
    try:
        group.main(args=argv, prog_name="registry", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RegistryError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exit_code_for(exc))

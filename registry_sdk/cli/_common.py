"""What every command shares: exit codes, JSON output, and turning errors into messages."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import TYPE_CHECKING, Any

import click

from registry_sdk.errors import (
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnavailableError,
    redact,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

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


class RegistryGroup(click.Group):
    """A click group that turns a ``RegistryError`` into a one-line message and its exit code.

    The only place errors become exit codes: commands raise, this boundary reports.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report registry errors and bad values without a traceback."""
        try:
            return super().invoke(ctx)
        except RegistryError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exit_code_for(exc))
        except ValueError as exc:  # bad gate, bad mapping, ...: a usage error
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)


class _RedactedStderr(io.TextIOBase):
    """A stdout stand-in that writes to stderr, credentials removed."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        sys.stderr.write(redact(text))
        return len(text)

    def flush(self) -> None:
        sys.stderr.flush()


@contextlib.contextmanager
def mlflow_prints_to_stderr() -> Iterator[None]:
    """Send what MLflow prints (its "View run <url>" links) to stderr, without credentials.

    stdout is for the result (JSON must parse), and MLflow's links repeat the tracking URI as
    given, ``user:password@`` included.
    """
    with contextlib.redirect_stdout(_RedactedStderr()):
        yield


def run_main(group: click.Group, argv: list[str] | None) -> None:
    """Run ``group`` as the ``registry`` program."""
    group.main(args=argv, prog_name="registry")
    sys.exit(EXIT_OK)  # pragma: no cover - main() exits itself


def make_client(ctx: click.Context) -> Any:
    """The client for this invocation (``--tracking-uri`` / ``MLFLOW_TRACKING_URI``)."""
    from registry_sdk.client import RegistryClient

    obj = ctx.ensure_object(dict)
    if "client" not in obj:
        obj["client"] = RegistryClient(obj.get("tracking_uri"))
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (a stable schema) instead of a table."
)


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print ``rows`` as a fixed-width table with ``columns``."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    click.echo("  ".join(col.upper().ljust(w) for col, w in zip(columns, widths, strict=True)))
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def version_or_dash(version: int | None) -> str:
    """A version number, or ``-`` for none (an alias set for the first time, or deleted)."""
    return "-" if version is None else str(version)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)

"""``outbox ls|push|discard`` (and ``push``): the models ``@register`` could not register yet."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from registry_sdk.cli._common import (
    EXIT_USAGE,
    echo_json,
    json_option,
    make_client,
    mlflow_prints_to_stderr,
    table,
)

if TYPE_CHECKING:
    from registry_sdk._outbox import Entry
    from registry_sdk.client import RegistryClient

#: Characters of an id, and of an error, a table row shows (``--json`` has them whole).
_SHORT_ID = 12
_SHORT_ERROR = 60
_MINUTE, _HOUR, _DAY = 60, 3600, 86400


@click.group()
def outbox() -> None:
    """List, push or discard the models waiting in the local outbox.

    @register saves every model there first; one the registry could not take (it was down)
    waits there until it is pushed.
    """


@outbox.command("ls")
@json_option
@click.pass_context
def outbox_ls(ctx: click.Context, as_json: bool) -> None:
    """List the waiting models: id, model, registry, age, pushes tried and the last error."""
    from registry_sdk._outbox import pending

    client = make_client(ctx)
    now = time.time()
    rows = [_row(entry, client, now) for entry in pending(client.settings.cache_dir)]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("nothing waiting in the outbox")
        return
    table(
        [
            {
                **row,
                "id": row["id"][:_SHORT_ID],
                "registry": row["registry_uri"],
                "age": _age(row["age_seconds"]),
                "last_error": _short(row["last_error"]),
            }
            for row in rows
        ],
        ["id", "name", "alias", "registry", "age", "pushes", "last_error"],
    )


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@json_option
@click.pass_context
def push(ctx: click.Context, ids: tuple[str, ...], as_json: bool) -> None:
    """Register the models waiting in the outbox for this registry (each exactly once).

    Without ID, every entry staged for this registry; with IDs (from `registry outbox ls`, or a
    unique prefix of one), only those. Entries staged for another registry are never pushed
    here (your credentials are never sent to a server you did not name): push them with
    --tracking-uri set to their registry.
    """
    from registry_sdk._outbox import pending, push_pending, push_selected

    client = make_client(ctx)
    # MLflow prints "View run ..." links when a push ends a run.
    with mlflow_prints_to_stderr():
        pushed = push_selected(client, ids) if ids else push_pending(client)
    if as_json:
        echo_json([v.to_dict() for v in pushed])
        return
    for version in pushed:
        click.echo(f"registered {version.ref}")
    if not pushed:
        others = len(pending(client.settings.cache_dir))
        click.echo(
            f"nothing waiting for this registry ({others} entries for other registries)"
            if others
            else "nothing waiting in the outbox"
        )


outbox.add_command(push, "push")


@outbox.command("discard")
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--yes", is_flag=True, help="Confirm: the saved models are deleted, not registered.")
@json_option
@click.pass_context
def outbox_discard(ctx: click.Context, ids: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Delete waiting models without registering them (needs --yes)."""
    from registry_sdk._outbox import discard, find

    client = make_client(ctx)
    entries = find(client.settings.cache_dir, ids)
    if not yes:
        names = ", ".join(f"{e.key[:_SHORT_ID]} ({e.name})" for e in entries)
        click.echo(
            f"Error: discarding deletes {len(entries)} saved model(s) for good, without "
            f"registering them: {names}. Add --yes to confirm.",
            err=True,
        )
        ctx.exit(EXIT_USAGE)
    for entry in entries:
        discard(entry)
        if not as_json:
            click.echo(f"discarded {entry.key[:_SHORT_ID]} ({entry.name})")
    if as_json:
        echo_json({"discarded": [e.key for e in entries]})


def _row(entry: Entry, client: RegistryClient, now: float) -> dict[str, Any]:
    """An entry as ``outbox ls --json`` shows it: never a credential."""
    from registry_sdk._outbox import same_registry
    from registry_sdk.errors import redact

    return {
        "id": entry.id,
        "name": entry.name,
        "alias": entry.alias,
        "registry_uri": redact(entry.registry_uri),
        "tracking_uri": redact(entry.tracking_uri),
        "this_registry": same_registry(entry, client),
        "created_at": _iso(entry.created_at),
        "age_seconds": max(0, round(now - entry.created_at)),
        "pushes": entry.pushes,
        "last_attempt_at": None if entry.last_attempt_at is None else _iso(entry.last_attempt_at),
        "last_error": entry.last_error,
        "path": str(entry.path),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def _age(seconds: int) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    for unit, size in (("d", _DAY), ("h", _HOUR), ("m", _MINUTE)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(text: str | None) -> str | None:
    if text is None or len(text) <= _SHORT_ERROR:
        return text
    return text[: _SHORT_ERROR - 3] + "..."

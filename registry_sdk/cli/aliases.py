"""Alias commands: ``alias set|delete``, ``promote``, ``rollback``, ``check``, stage migration."""

from __future__ import annotations

import sys

import click

from registry_sdk.cli._common import (
    EXIT_GATE_FAILED,
    echo_json,
    json_option,
    make_client,
    table,
    version_or_dash,
)
from registry_sdk.errors import PromotionRejectedError


def _event(event: object, as_json: bool) -> None:
    data = event.to_dict()  # type: ignore[attr-defined]
    if as_json:
        echo_json(data)
    else:
        before, after = (version_or_dash(data[key]) for key in ("from_version", "to_version"))
        click.echo(
            f"{data['name']}@{data['alias']}: {before} -> {after}"
            + (" (forced)" if data["forced"] else "")
        )


@click.group()
def alias() -> None:
    """Set or delete an alias (each move is logged with who, when and why)."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@click.option("--reason", help="Why; recorded in the alias history.")
@json_option
@click.pass_context
def alias_set(
    ctx: click.Context, name: str, alias_name: str, version: int, reason: str | None, as_json: bool
) -> None:
    """Point NAME@ALIAS at VERSION."""
    _event(make_client(ctx).set_alias(name, alias_name, version, reason=reason), as_json)


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.option("--reason", help="Why; recorded in the alias history.")
@json_option
@click.pass_context
def alias_delete(
    ctx: click.Context, name: str, alias_name: str, reason: str | None, as_json: bool
) -> None:
    """Remove NAME@ALIAS."""
    _event(make_client(ctx).delete_alias(name, alias_name, reason=reason), as_json)


_require = click.option(
    "--require",
    "gates",
    multiple=True,
    help="A gate such as 'accuracy >= 0.9', 'accuracy >= @prod', or 'signed' (the version "
    "carries a signature, verified against REGISTRY_SDK_VERIFY_KEY where set); repeatable.",
)
_allow_missing = click.option(
    "--allow-missing",
    is_flag=True,
    help="Let a gate against an alias no version holds pass (by default it fails, unless the "
    "alias is the one being promoted).",
)


@click.command()
@click.argument("ref")
@click.option("--to", "to", required=True, help="The alias to move, e.g. prod.")
@_require
@_allow_missing
@click.option("--reason", help="Why; recorded in the alias history.")
@click.option("--force", is_flag=True, help="Move even if gates or the promotion order fail.")
@json_option
@click.pass_context
def promote(
    ctx: click.Context,
    ref: str,
    to: str,
    gates: tuple[str, ...],
    allow_missing: bool,
    reason: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Point alias --to at REF if every gate passes (exit 1 and name each failure if not)."""
    try:
        event = make_client(ctx).promote(
            ref, to=to, require=gates, reason=reason, force=force, allow_missing=allow_missing
        )
    except PromotionRejectedError as exc:
        if as_json:
            echo_json({"promoted": False, "ref": ref, "to": to, "failures": list(exc.failures)})
        else:
            click.echo(str(exc), err=True)
        sys.exit(EXIT_GATE_FAILED)
    _event(event, as_json)


@click.command()
@click.argument("name")
@click.option("--alias", "alias_name", required=True, help="The alias to move back.")
@click.option("--reason", help="Why; recorded in the alias history.")
@json_option
@click.pass_context
def rollback(
    ctx: click.Context, name: str, alias_name: str, reason: str | None, as_json: bool
) -> None:
    """Move NAME@ALIAS back to the version it held before."""
    _event(make_client(ctx).rollback(name, alias_name, reason=reason), as_json)


@click.command()
@click.argument("ref")
@_require
@click.option(
    "--to",
    "to",
    help="The alias REF is meant for, as in `promote --to`: a gate against it passes while no "
    "version holds it.",
)
@_allow_missing
@json_option
@click.pass_context
def check(
    ctx: click.Context,
    ref: str,
    gates: tuple[str, ...],
    to: str | None,
    allow_missing: bool,
    as_json: bool,
) -> None:
    """A CI gate: evaluate each --require on REF; exit 1 if any fails."""
    if not gates:
        msg = "give at least one --require gate"
        raise click.UsageError(msg)
    results = make_client(ctx).check(ref, gates, to=to, allow_missing=allow_missing)
    rows = [{"gate": g, "passed": ok, "detail": detail} for g, ok, detail in results]
    if as_json:
        echo_json({"ref": ref, "passed": all(r["passed"] for r in rows), "gates": rows})
    else:
        for row in rows:
            mark = "PASS" if row["passed"] else "FAIL"
            click.echo(f"{mark}  {row['gate']}: {row['detail']}")
    if not all(r["passed"] for r in rows):
        sys.exit(EXIT_GATE_FAILED)


@click.command("migrate-stages")
@click.argument("name", required=False)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    help="STAGE=ALIAS (default Production=prod and Staging=staging); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@json_option
@click.pass_context
def migrate_stages(
    ctx: click.Context, name: str | None, mapping: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Give each version in a legacy stage the matching alias (safe to run twice)."""
    chosen = {}
    for item in mapping:
        stage, sep, target = item.partition("=")
        if not sep:
            msg = f"--map expects STAGE=ALIAS, got {item!r}"
            raise click.BadParameter(msg)
        chosen[stage] = target
    steps = make_client(ctx).migrate_stages(name, mapping=chosen or None, dry_run=dry_run)
    rows = [s.to_dict() for s in steps]
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["name", "stage", "alias", "version", "previous", "applied"])

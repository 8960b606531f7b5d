"""``export`` and ``import``: move models between registries, losslessly."""

from __future__ import annotations

from pathlib import Path

import click

from registry_sdk.cli._common import echo_json, json_option, make_client, mlflow_prints_to_stderr


@click.command("export")
@click.argument("names", nargs=-1)
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="Directory.")
@json_option
@click.pass_context
def export_cmd(ctx: click.Context, names: tuple[str, ...], to: str, as_json: bool) -> None:
    """Export NAMES (default: every model) with versions, tags, aliases and history."""
    path = make_client(ctx).export(list(names) or None, to=to)
    if as_json:
        echo_json({"path": str(path)})
    else:
        click.echo(f"exported to {path}")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--move-aliases",
    is_flag=True,
    help="Move aliases the target already has to the imported versions (logged in the "
    "alias history); without it such an import is refused and nothing is created.",
)
@json_option
@click.pass_context
def import_cmd(ctx: click.Context, path: str, move_aliases: bool, as_json: bool) -> None:
    """Import an export (checked first; running it again creates nothing new)."""
    # MLflow prints "View run ..." links to stdout when an import ends a run on a server:
    # stdout is for the report (JSON must parse), so they go to stderr, credentials removed.
    with mlflow_prints_to_stderr():
        report = make_client(ctx).import_(Path(path), move_aliases=move_aliases)
    if as_json:
        echo_json(report.to_dict())
        return
    for source, target in report.created.items():
        click.echo(f"created  {target} from {source}")
    for source, target in report.existing.items():
        click.echo(f"present  {target} from {source}")
    for alias, target in report.aliases.items():
        click.echo(f"alias    {alias} -> {target}")

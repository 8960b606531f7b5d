"""Read commands: ``models``, ``versions``, ``show``, ``resolve``."""

from __future__ import annotations

import click

from registry_sdk.cli._common import echo_json, json_option, make_client, table


@click.command()
@click.option("--filter", "filter_", help="MLflow filter, e.g. \"name LIKE 'churn%'\".")
@json_option
@click.pass_context
def models(ctx: click.Context, filter_: str | None, as_json: bool) -> None:
    """List registered models."""
    rows = [
        {
            "name": m.name,
            "latest_version": m.latest_version,
            "aliases": dict(sorted(m.aliases.items())),
            "description": m.description,
            "updated_at": m.updated_at.isoformat(),
        }
        for m in make_client(ctx).search_models(filter_)
    ]
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["name", "latest_version", "aliases", "updated_at"])


@click.command()
@click.argument("name")
@click.option("--filter", "filter_", help="MLflow filter on versions, e.g. 'run_id = \"abc\"'.")
@click.option("--tag", "tags", multiple=True, help="Only versions with this tag: KEY=VALUE.")
@json_option
@click.pass_context
def versions(
    ctx: click.Context, name: str, filter_: str | None, tags: tuple[str, ...], as_json: bool
) -> None:
    """List the versions of NAME, newest first, with their aliases."""
    wanted = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--tag expects KEY=VALUE, got {item!r}"
            raise click.BadParameter(msg)
        wanted[key] = value
    client = make_client(ctx)
    found = client.search_versions(
        name, filter=filter_, tags=wanted, order_by=["version_number DESC"]
    )
    rows = [v.to_dict() for v in found]
    if not rows:
        # A search finds nothing for a misspelt name too: that is "not found" (exit 3), while
        # a model without (matching) versions is an empty list.
        client.get_model(name)
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["version", "aliases", "status", "created_at", "run_id"])


@click.command()
@click.argument("ref")
@json_option
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show one version (any reference: NAME/7, NAME@alias, NAME@latest)."""
    mv = make_client(ctx).get_version(ref)
    data = mv.to_dict()
    if as_json:
        echo_json(data)
        return
    for key in ("ref", "aliases", "status", "created_at", "updated_at", "run_id", "source"):
        click.echo(f"{key:<12} {_text(data[key])}")
    for key, value in sorted(mv.metrics.items()):
        click.echo(f"{'metric':<12} {key} = {value:g}")
    for key, value in sorted(mv.tags.items()):
        click.echo(f"{'tag':<12} {key} = {value}")


@click.command()
@click.argument("ref")
@json_option
@click.pass_context
def resolve(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Print the version a reference names (NAME/VERSION), e.g. for scripts."""
    mv = make_client(ctx).resolve(ref)
    if as_json:
        echo_json(
            {"ref": mv.ref, "name": mv.name, "version": mv.version, "aliases": list(mv.aliases)}
        )
    else:
        click.echo(mv.ref)


def _text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return "-" if value is None else str(value)

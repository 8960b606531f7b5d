"""Lineage commands: ``lineage``, ``diff``, ``history``."""

from __future__ import annotations

import click

from registry_sdk.cli._common import echo_json, json_option, make_client, table, version_or_dash


@click.command()
@click.argument("ref")
@json_option
@click.pass_context
def lineage(ctx: click.Context, ref: str, as_json: bool) -> None:
    """How a version was made: creator, run, git, code, params, metrics, packages, data."""
    data = make_client(ctx).lineage(ref).to_dict()
    if as_json:
        echo_json(data)
        return
    click.echo(f"{data['ref']}  created {data['created_at']} by {data['created_by'] or '-'}")
    run = data["run"]
    if run:
        experiment = run["experiment_name"] or run["experiment_id"]
        click.echo(f"run          {run['run_id']} (experiment {experiment})")
    for section in ("git", "code", "params", "metrics"):
        for key, value in sorted(data[section].items()):
            click.echo(f"{section:<12} {key} = {value}")
    env = data["environment"]
    if env:
        click.echo(f"{'python':<12} {env['python']} on {env['platform']}")
        for key, value in sorted(env["packages"].items()):
            click.echo(f"{'package':<12} {key}=={value}")
    for key in data["data"]:
        click.echo(f"{'data':<12} {key}")
    for base in data["derived_from"]:
        click.echo(f"{'derived from':<12} {base}")
    for event in data["alias_events"]:
        move = f"{version_or_dash(event['from_version'])} -> {version_or_dash(event['to_version'])}"
        click.echo(f"{'alias':<12} {event['alias']}: {move} at {event['at']}")


@click.command()
@click.argument("ref_a")
@click.argument("ref_b")
@json_option
@click.pass_context
def diff(ctx: click.Context, ref_a: str, ref_b: str, as_json: bool) -> None:
    """What changed from REF_A to REF_B: params, metrics, packages, git, data."""
    result = make_client(ctx).diff(ref_a, ref_b)
    data = result.to_dict()
    if as_json:
        echo_json(data)
        return
    if result.is_empty:
        click.echo(f"{data['a']} and {data['b']} do not differ")
        return
    for key, value in data["params"].items():
        click.echo(f"param    {key}: {value['a']} -> {value['b']}")
    for key, value in data["metrics"].items():
        delta = f" ({value['delta']:+g})" if value["delta"] is not None else ""
        click.echo(f"metric   {key}: {value['a']} -> {value['b']}{delta}")
    packages = data["packages"]
    for key, value in packages["added"].items():
        click.echo(f"package  +{key}=={value}")
    for key, value in packages["removed"].items():
        click.echo(f"package  -{key}=={value}")
    for key, value in packages["changed"].items():
        click.echo(f"package  {key}: {value['a']} -> {value['b']}")
    for key, value in data["git"].items():
        click.echo(f"git      {key}: {value['a']} -> {value['b']}")
    for key in data["data"]:
        click.echo(f"data     {key} changed")


@click.command()
@click.argument("name")
@click.option("--alias", help="Only this alias.")
@json_option
@click.pass_context
def history(ctx: click.Context, name: str, alias: str | None, as_json: bool) -> None:
    """Alias moves of NAME, oldest first (moves by other tools are marked external)."""
    events = make_client(ctx).history(name, alias=alias).to_dict()
    if as_json:
        echo_json(events)
    else:
        table(
            events,
            ["at", "alias", "from_version", "to_version", "by", "reason", "forced", "external"],
        )

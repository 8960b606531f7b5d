"""``registry verify`` and ``registry seal``: a version's artifacts against its recorded digest."""

from __future__ import annotations

import click

from registry_sdk.cli._common import EXIT_GATE_FAILED, echo_json, json_option, make_client


def _report(result: object, as_json: bool) -> None:
    from registry_sdk.integrity import Verification

    assert isinstance(result, Verification)  # noqa: S101 - what both commands produce
    if as_json:
        echo_json(result.to_dict())
        return
    state = "ok" if result.ok else "FAILED"
    click.echo(f"{result.ref}: {state} ({result.files} files, {result.size} bytes)")
    click.echo(f"  recorded digest: {result.expected or '-'}")
    click.echo(f"  digest in store: {result.actual}")
    for problem in result.problems:
        click.echo(f"  {problem}")


@click.command()
@click.argument("ref")
@json_option
@click.pass_context
def verify(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Check REF's artifacts in the store against the digest it records, without loading it.

    Exits 1 when they differ or the version is not sealed (for CI), 0 when they match.
    """
    result = make_client(ctx).verify(ref)
    _report(result, as_json)
    if not result.ok:
        ctx.exit(EXIT_GATE_FAILED)


@click.command()
@click.argument("ref")
@click.option(
    "--force", is_flag=True, help="Re-seal a sealed version whose artifacts changed (restores)."
)
@json_option
@click.pass_context
def seal(ctx: click.Context, ref: str, force: bool, as_json: bool) -> None:
    """Record the digest of REF's artifacts as they are now, so later loads verify them.

    For versions registered by vanilla MLflow. A sealed version whose artifacts changed is
    refused (exit 6) unless --force.
    """
    _report(make_client(ctx).seal(ref, force=force), as_json)

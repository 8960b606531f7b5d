"""Local commands: ``pull`` and ``cache ls|verify|prune``."""

from __future__ import annotations

import sys

import click

from registry_sdk.cli._common import EXIT_ERROR, echo_json, json_option, make_client, table


@click.command()
@click.argument("ref")
@json_option
@click.pass_context
def pull(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Fetch REF into the local cache (e.g. at image build time) and print its path."""
    path = make_client(ctx).pull(ref)
    if as_json:
        echo_json({"ref": ref, "path": str(path)})
    else:
        click.echo(str(path))


@click.group()
def cache() -> None:
    """Inspect and manage the local model cache."""


@cache.command("ls")
@json_option
@click.pass_context
def cache_ls(ctx: click.Context, as_json: bool) -> None:
    """List cached versions."""
    rows = [
        {
            "ref": entry.version.ref,
            "aliases": list(entry.version.aliases),
            "files": len(entry.files),
            "bytes": sum(f.size for f in entry.files.values()),
            "fast_form": entry.fast is not None,
            "path": str(entry.path),
        }
        for entry in make_client(ctx).cached_versions()
    ]
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["ref", "files", "bytes", "fast_form", "path"])


@cache.command("verify")
@click.option("--repair", is_flag=True, help="Evict corrupt entries (the next load refetches).")
@json_option
@click.pass_context
def cache_verify(ctx: click.Context, repair: bool, as_json: bool) -> None:
    """Hash every cached file against its manifest; exit 6 if any is corrupt."""
    problems = make_client(ctx).verify_cache(repair=repair)
    if as_json:
        echo_json({"ok": not problems, "corrupt": problems, "repaired": repair})
    else:
        for ref, files in problems.items():
            click.echo(f"CORRUPT {ref}: {', '.join(files)}" + (" (evicted)" if repair else ""))
        if not problems:
            click.echo("all cached files match their manifests")
    if problems and not repair:
        sys.exit(EXIT_ERROR)


@cache.command("prune")
@click.option("--keep", type=int, default=3, show_default=True, help="Versions kept per model.")
@json_option
@click.pass_context
def cache_prune(ctx: click.Context, keep: int, as_json: bool) -> None:
    """Remove all but the newest --keep versions per model (never an alias target)."""
    removed = make_client(ctx).prune_cache(keep=keep)
    if as_json:
        echo_json({"removed": removed})
    else:
        for ref in removed:
            click.echo(f"removed {ref}")
        if not removed:
            click.echo("nothing to remove")

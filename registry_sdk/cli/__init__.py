"""The ``registry`` command: a root click group; each command group lives in its own module."""

from __future__ import annotations

import click

from registry_sdk._version import __version__
from registry_sdk.cli import (
    aliases,
    cache,
    integrity,
    lineage,
    models,
    outbox,
    serve,
    transfer,
    webhooks,
)
from registry_sdk.cli._common import RegistryGroup, run_main
from registry_sdk.cli.doctor import doctor

__all__ = ["cli", "main"]


@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="registry")
@click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).",
)
@click.pass_context
def cli(ctx: click.Context, tracking_uri: str | None) -> None:
    """Work with an MLflow Model Registry from the terminal and from CI/CD pipelines.

    Exit codes: 0 success, 1 a gate failed, 2 usage error, 3 not found, 4 registry
    unavailable, 5 permission denied, 6 any other error.
    """
    ctx.ensure_object(dict)["tracking_uri"] = tracking_uri


for command in (
    models.models,
    models.versions,
    models.show,
    models.resolve,
    lineage.lineage,
    lineage.diff,
    lineage.history,
    aliases.alias,
    aliases.promote,
    aliases.rollback,
    aliases.check,
    aliases.migrate_stages,
    cache.pull,
    outbox.push,
    outbox.outbox,
    cache.cache,
    integrity.verify,
    integrity.seal,
    integrity.sign,
    webhooks.webhook,
    serve.serve,
    transfer.export_cmd,
    transfer.import_cmd,
    doctor,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``registry`` console script."""
    run_main(cli, argv)

"""``webhook create|list|delete|test``: registry webhooks (MLflow 3)."""

from __future__ import annotations

import sys

import click

from registry_sdk.cli._common import EXIT_ERROR, echo_json, json_option, make_client, table


@click.group()
def webhook() -> None:
    """Manage registry webhooks (deliveries are signed; see registry_sdk.webhooks)."""


@webhook.command("create")
@click.option("--name", required=True, help="A name for the webhook.")
@click.option("--url", required=True, help="Where the server POSTs deliveries.")
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    help="ENTITY.ACTION, e.g. model_version_alias.created; repeatable.",
)
@click.option("--secret", envvar="REGISTRY_WEBHOOK_SECRET", help="HMAC secret (or env var).")
@click.option("--description", help="What the webhook is for.")
@json_option
@click.pass_context
def webhook_create(
    ctx: click.Context,
    name: str,
    url: str,
    events: tuple[str, ...],
    secret: str | None,
    description: str | None,
    as_json: bool,
) -> None:
    """Create a webhook."""
    hook = make_client(ctx).create_webhook(
        name, url, events, description=description, secret=secret
    )
    if as_json:
        echo_json(hook.to_dict())
    else:
        click.echo(f"created webhook {hook.webhook_id} ({hook.name}) -> {hook.url}")


@webhook.command("list")
@json_option
@click.pass_context
def webhook_list(ctx: click.Context, as_json: bool) -> None:
    """List webhooks."""
    rows = [h.to_dict() for h in make_client(ctx).list_webhooks()]
    if as_json:
        echo_json(rows)
    else:
        table(rows, ["webhook_id", "name", "url", "events", "status"])


@webhook.command("delete")
@click.argument("webhook_id")
@json_option
@click.pass_context
def webhook_delete(ctx: click.Context, webhook_id: str, as_json: bool) -> None:
    """Delete a webhook."""
    make_client(ctx).delete_webhook(webhook_id)
    if as_json:
        echo_json({"deleted": webhook_id})
    else:
        click.echo(f"deleted webhook {webhook_id}")


@webhook.command("test")
@click.argument("webhook_id")
@click.option("--event", help="ENTITY.ACTION to simulate (default: the webhook's first).")
@json_option
@click.pass_context
def webhook_test(ctx: click.Context, webhook_id: str, event: str | None, as_json: bool) -> None:
    """Have the registry send a test delivery; exit 6 if the receiver did not accept it."""
    result = make_client(ctx).test_webhook(webhook_id, event=event)
    if as_json:
        echo_json(result.to_dict())
    else:
        state = "delivered" if result.success else "FAILED"
        click.echo(f"{state}: status {result.status or '-'} {result.error or ''}".rstrip())
    if not result.success:
        sys.exit(EXIT_ERROR)

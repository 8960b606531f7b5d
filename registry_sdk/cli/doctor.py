"""``registry doctor``: what the SDK would talk to, and whether it answers."""

from __future__ import annotations

import platform
import sys

import click

from registry_sdk._version import __version__
from registry_sdk.cli._common import EXIT_OK, EXIT_UNAVAILABLE, echo_json
from registry_sdk.client import RegistryClient
from registry_sdk.errors import redact


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (overrides the global option).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.pass_context
def doctor(ctx: click.Context, tracking_uri: str | None, as_json: bool) -> None:
    """Report the tracking URI, backend, server reachability and version, auth and cache dir.

    Exits 0 when the registry answers, 4 when it cannot be reached. Never prints a secret.
    """
    client = RegistryClient(tracking_uri or (ctx.obj or {}).get("tracking_uri"))
    settings = client.settings
    auth = settings.auth_kind
    if auth == "basic":
        auth = f"basic (user {settings.username})"
    report: dict[str, object] = {
        "registry_sdk": __version__,
        "python": platform.python_version(),
        "tracking_uri": redact(settings.tracking_uri),
        "registry_uri": redact(settings.registry_uri),
        "backend": "rest" if settings.is_remote else "local",
        "auth": auth,
        "tls": "insecure (verification off)"
        if settings.insecure_tls
        else (settings.server_cert_path or "system trust store"),
        "cache_dir": str(settings.cache_dir),
        "offline": settings.offline,
    }
    if settings.offline:
        report.update(reachable=None, server_version=None, detail="offline: not contacted")
    else:
        info = client.server_info()
        report.update(reachable=info.reachable, server_version=info.version, detail=info.detail)
    client.close()
    if as_json:
        echo_json(report)
    else:
        width = max(len(k) for k in report)
        for key, value in report.items():
            click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")
    sys.exit(EXIT_OK if report["reachable"] is not False else EXIT_UNAVAILABLE)

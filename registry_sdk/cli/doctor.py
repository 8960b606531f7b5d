"""``registry doctor``: what the SDK would talk to, and whether it answers."""

from __future__ import annotations

import platform
import sys

import click

from registry_sdk._capabilities import FEATURES, OLDEST_SUPPORTED, Capabilities
from registry_sdk._version import __version__
from registry_sdk.cli._common import EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, echo_json
from registry_sdk.client import RegistryClient
from registry_sdk.errors import redact


@click.command()
@click.option("--tracking-uri", help="MLflow tracking URI (overrides the global option).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@click.pass_context
def doctor(ctx: click.Context, tracking_uri: str | None, as_json: bool) -> None:
    """Report the tracking URI, backend, server reachability and version, auth and cache dir.

    Also which features the server has (one line each). Exits 0 when the registry answers,
    4 when it cannot be reached, 6 when its MLflow is older than registry_sdk supports.
    Never prints a secret.
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
    caps = Capabilities(None)
    if settings.offline:
        report.update(reachable=None, server_version=None, detail="offline: not contacted")
    else:
        info = client.server_info()
        report.update(reachable=info.reachable, server_version=info.version, detail=info.detail)
        caps = Capabilities(info.version, embedded=not settings.is_remote)
    client.close()
    known = caps.server_version is not None
    report["features"] = {
        name: {"available": caps.supports(name) if known else None, "minimum": minimum}
        for name, (_, minimum) in FEATURES.items()
    }
    report["supported"] = caps.supported
    if as_json:
        echo_json(report)
    else:
        _print_text(report, caps)
    if report["reachable"] is False:
        sys.exit(EXIT_UNAVAILABLE)
    if caps.supported is False:
        where = "installed mlflow" if caps.embedded else "registry's server"
        click.echo(
            f"Warning: the {where} runs MLflow {caps.server_version}, older than "
            f"{OLDEST_SUPPORTED}, the oldest registry_sdk supports; upgrade it to "
            f"MLflow >= {OLDEST_SUPPORTED}",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)


def _print_text(report: dict[str, object], caps: Capabilities) -> None:
    """``key  value`` lines, then one line per feature."""
    plain = {k: v for k, v in report.items() if k not in {"features", "supported"}}
    labels = [f"feature {name}" for name in FEATURES]
    width = max(len(k) for k in [*plain, *labels, "supported"])
    for key, value in plain.items():
        click.echo(f"{key.ljust(width)}  {'-' if value is None else value}")
    needs = "mlflow" if caps.embedded else "server"
    for name, (what, minimum) in FEATURES.items():
        if caps.server_version is None:
            state = f"unknown (needs {needs} >= {minimum})"
        elif caps.supports(name):
            state = "available"
        else:
            state = f"needs {needs} >= {minimum}"
        click.echo(f"{f'feature {name}'.ljust(width)}  {state}: {what}")
    supported = {True: "yes", False: f"no: older than {OLDEST_SUPPORTED}", None: "unknown"}
    click.echo(f"{'supported'.ljust(width)}  {supported[caps.supported]}")

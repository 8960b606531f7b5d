"""``registry serve REF [--watch]``: MLflow's scoring server over the cached model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from registry_sdk.cli._common import make_client

if TYPE_CHECKING:
    from registry_sdk.loading import Watch


class ServedModel:
    """What MLflow's scoring server sees: the current model of a watch handle.

    The server keeps this one object for its lifetime; each request reads the handle's current
    model once, so a swap never fails a request (it finishes on the model it started with).
    """

    def __init__(self, handle: Watch) -> None:
        self._handle = handle

    @property
    def metadata(self) -> Any:
        """The MLmodel of the version being served."""
        return self._handle.model.pyfunc.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        """Predict with the version being served."""
        return self._handle.predict(data, params=params)


def build_app(handle: Watch) -> Any:
    """MLflow's scoring app (``/invocations``, ``/ping``, ``/version``) over ``handle``."""
    from mlflow.pyfunc import scoring_server

    # Duck-typed: the server only reads .metadata and calls .predict.
    return scoring_server.init(ServedModel(handle))  # type: ignore[arg-type]


@click.command()
@click.argument("ref")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5001, show_default=True, type=int, help="Port to listen on.")
@click.option("--watch", "follow", is_flag=True, help="Follow the alias; swap in new versions.")
@click.option(
    "--interval", default=30.0, show_default=True, type=float, help="Seconds between polls."
)
@click.pass_context
def serve(
    ctx: click.Context, ref: str, host: str, port: int, follow: bool, interval: float
) -> None:
    """Serve REF with MLflow's scoring server (POST /invocations), from the local cache."""
    import uvicorn

    from registry_sdk.loading import Watch

    client = make_client(ctx)
    # Without --watch the handle never polls: the version loaded at start is served.
    handle = Watch(ref, interval=interval if follow else 10**9, client=client)
    if follow:
        handle.on_change(
            lambda old, new: click.echo(f"now serving {handle.ref.name}/{new} (was {old})")
        )
    click.echo(f"serving {handle.ref.name}/{handle.version} on http://{host}:{port}")
    try:
        uvicorn.run(build_app(handle), host=host, port=port, log_level="warning")
    finally:
        handle.close()

"""MLflow tracking clients bound to one registry client's URIs, with no process-global state.

``@register`` logs runs, params, metrics and models with MLflow's own ``MlflowClient``. Two
things about MLflow's defaults do not fit a library that lives in other people's processes:

* its fluent API (``mlflow.start_run``, ``mlflow.log_params``) talks to the *process-global*
  tracking URI, so threads registering to different registries would switch it under each
  other. Every call here goes through a client made for the registry client's own tracking URI,
  with run ids passed explicitly;
* its HTTP retries are tuned by environment variables (``MLFLOW_HTTP_REQUEST_*``, by default
  minutes of retries). Setting them would change the whole process; instead, against a server
  the client's tracking store sends each request through registry_sdk's own HTTP layer, under
  the registry client's timeout, retries and deadline (see :mod:`registry_sdk._retry`).

The fluent API stays available to the user's own code: where MLflow's global tracking URI is
the client's (the usual case: ``MLFLOW_TRACKING_URI`` set, the default client), the run
``@register`` starts is made the calling thread's active run while the function trains, so
``mlflow.log_metric`` inside it lands in that run. MLflow keeps the active run per thread.
"""

from __future__ import annotations

import functools
import json
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator

    from registry_sdk._backends.rest import RestBackend
    from registry_sdk.client import RegistryClient

__all__ = ["activated", "experiment_id", "shares_fluent_uri", "tracking_client"]

_lock = threading.Lock()
#: The bounded store and service classes, made once when first needed (they subclass MLflow's).
_classes: tuple[type[Any], type[Any]] | None = None


def _is_server(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() in {"http", "https"}


def tracking_client(client: RegistryClient) -> Any:
    """An ``MlflowClient`` for ``client``'s tracking URI; its HTTP under ``client``'s settings.

    For a server, the client's tracking store is MLflow's REST store with every request sent
    through :class:`~registry_sdk._backends.rest.RestBackend` (its credentials, timeouts and
    retry budget); for a local store (``sqlite:``, a directory) MLflow's own, which makes no
    HTTP requests.
    """
    import mlflow

    tracking = mlflow.MlflowClient(tracking_uri=client.tracking_uri)
    if not _is_server(client.tracking_uri):
        return tracking
    settings = client.settings
    if settings.tracking_uri.rstrip("/") == settings.registry_uri.rstrip("/"):
        rest = client.backend
    else:
        from registry_sdk._backends.rest import RestBackend

        rest = RestBackend(attrs.evolve(settings, registry_uri=settings.tracking_uri))
    store_class, service_class = _bound_classes()
    store = store_class(rest, client.tracking_uri)
    tracking._tracking_client = service_class(client.tracking_uri, store)  # noqa: SLF001 - see module doc
    return tracking


def _bound_classes() -> tuple[type[Any], type[Any]]:
    """MLflow's REST store over a :class:`RestBackend`, and its service client over one store."""
    global _classes  # noqa: PLW0603 - made once, lazily: they subclass mlflow classes
    with _lock:
        if _classes is None:
            _classes = (_make_store_class(), _make_service_class())
        return _classes


def _make_store_class() -> type[Any]:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode
    from mlflow.store.tracking import rest_store
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.proto_json_utils import parse_dict

    from registry_sdk.errors import (
        InvalidResponseError,
        RegistryError,
        RegistryUnavailableError,
        is_missing_endpoint,
    )

    class BoundedRestStore(RestStore):
        """A REST tracking store whose requests obey registry_sdk's HTTP settings."""

        def __init__(self, rest: RestBackend, tracking_uri: str) -> None:
            self._rest = rest
            # MLflow reads the host from them (to log a run's URL); every request of this
            # store goes through _call_endpoint below, with the backend's credentials.
            super().__init__(functools.partial(get_default_host_creds, tracking_uri))  # type: ignore[no-untyped-call]

        def _call_endpoint(
            self,
            api: Any,
            json_body: str | None = None,
            endpoint: str | None = None,
            retry_timeout_seconds: float | None = None,  # noqa: ARG002 - our budget rules
            response_proto: Any = None,
        ) -> Any:
            v3 = getattr(self, "_V3_APIS", ())
            # A class attribute in MLflow 3, a module global in MLflow 2.
            table = (
                self._V3_METHOD_TO_INFO
                if api in v3
                else getattr(self, "_METHOD_TO_INFO", None)
                or getattr(rest_store, "_METHOD_TO_INFO")  # noqa: B009
            )
            path, method = table[api]
            path = endpoint or path
            body = json.loads(json_body) if json_body else None
            action = f"{method} {path.split('?', 1)[0]}"
            try:
                response = self._rest.request(
                    method,
                    path,
                    params=body if method == "GET" else None,
                    body=body if method != "GET" else None,
                    action=action,
                )
            except RegistryUnavailableError:
                raise
            except RegistryError as exc:
                # MLflow's callers look at MlflowException's error code (a missing endpoint, a
                # resource that does not exist): give them the one the server sent.
                code = "ENDPOINT_NOT_FOUND" if is_missing_endpoint(exc) else exc.error_code
                known = code in ErrorCode.keys()  # noqa: SIM118 - a protobuf enum, not a dict
                error_code = ErrorCode.Value(code if known else "INTERNAL_ERROR")
                raise MlflowException(str(exc), error_code=error_code) from None
            proto = response_proto or api.Response()
            if response.status_code == 204:  # noqa: PLR2004 - no content
                return proto
            text = response.text
            try:
                data = json.loads(text) if text.strip() else {}
            except (ValueError, RecursionError):
                msg = f"{action}: the server at {self._rest.uri} sent a reply that is not JSON"
                raise InvalidResponseError(msg, status=response.status_code) from None
            parse_dict(js_dict=data, message=proto)  # type: ignore[no-untyped-call]
            return proto

    return BoundedRestStore


def _make_service_class() -> type[Any]:
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    class BoundService(TrackingServiceClient):
        """MLflow's tracking service client over one given store (not one per URI)."""

        def __init__(self, tracking_uri: str, store: Any) -> None:
            self.tracking_uri = tracking_uri
            self._bound_store = store

        @property
        def store(self) -> Any:
            return self._bound_store

    return BoundService


def shares_fluent_uri(client: RegistryClient) -> bool:
    """Whether MLflow's global tracking URI is ``client``'s: the fluent API reaches its runs."""
    import mlflow

    try:
        fluent = str(mlflow.get_tracking_uri())
    except Exception:  # noqa: BLE001 - an unusable global URI is not ours
        return False
    return fluent.rstrip("/") == client.tracking_uri.rstrip("/")


def experiment_id(client: RegistryClient, tracking: Any) -> str:
    """The experiment a run ``@register`` starts goes to, as MLflow's fluent API would choose it.

    Where MLflow's global tracking URI is the client's, MLflow's own choice (the experiment of
    ``mlflow.set_experiment``, else the variables below). Otherwise ``MLFLOW_EXPERIMENT_NAME``
    (made if missing) or ``MLFLOW_EXPERIMENT_ID``, looked up through ``tracking``; else the
    default experiment.
    """
    import os

    if shares_fluent_uri(client):
        from mlflow.tracking import fluent

        resolve = getattr(fluent, "_get_experiment_id", None)
        if resolve is not None:
            return str(resolve())
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        found = tracking.get_experiment_by_name(name)
        return str(found.experiment_id if found is not None else tracking.create_experiment(name))
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or "0"


@contextmanager
def activated(client: RegistryClient, run: Any) -> Iterator[None]:
    """Make ``run`` the calling thread's active MLflow run, if the fluent API would reach it.

    Only where MLflow's global tracking URI is the client's (else ``mlflow.log_metric`` would
    send the run id to another server), and only with an MLflow that keeps active runs per
    thread. Nothing global changes: the run is pushed on, and popped off, this thread's stack.
    """
    from mlflow.tracking import fluent

    stack_var: Any = getattr(fluent, "_active_run_stack", None)
    per_thread = hasattr(stack_var, "get_all_thread_values")
    if not per_thread or not shares_fluent_uri(client):
        yield
        return
    stack = stack_var.get()
    active = fluent.ActiveRun(run)  # type: ignore[no-untyped-call]
    stack.append(active)
    try:
        yield
    finally:
        # Only ours: the user's code may have ended it (or started and left its own) meanwhile.
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is active:
                del stack[i]
                break

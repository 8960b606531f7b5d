"""Local backend: MLflow's own in-process client, for ``sqlite:///mlflow.db`` and other store URIs.

This is the only backend that imports mlflow, and it does so when it is constructed.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from registry_sdk._backends.base import Page, ServerInfo, model_missing_or
from registry_sdk._capabilities import Capabilities
from registry_sdk._config import no_registry_configured, sqlite_path
from registry_sdk._isolation import no_warnings
from registry_sdk.entities import ModelVersion, RegisteredModel, RunData
from registry_sdk.errors import (
    ConfigurationError,
    NotFoundError,
    RegistryError,
    Subject,
    from_mlflow_exception,
    in_registry,
    redact,
    safe_uri,
)
from registry_sdk.webhooks import Webhook, WebhookTestResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from mlflow import MlflowClient

    from registry_sdk._config import Settings

T = TypeVar("T")


def _token(token: str | bytes | None) -> str | None:
    """A page token as ``str``: MLflow's SQL stores hand out base64 ``bytes``."""
    if isinstance(token, bytes):
        token = token.decode("ascii")
    return token or None


class LocalBackend:
    """The :class:`~registry_sdk._backends.base.Backend` over ``mlflow.MlflowClient``.

    MLflow's client is made on the first call that needs the store, since making it creates
    the store (``sqlite:///mlflow.db`` is a new file). With no registry configured, a read
    finds no store to create: it raises :class:`ConfigurationError` saying how to point at a
    registry instead of leaving an empty ``mlflow.db`` behind. Writes create it, as MLflow does.
    """

    def __init__(self, settings: Settings) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.store.model_registry import (
            SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
            SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
        )

        self.settings = settings
        self.uri = settings.registry_uri
        self.max_models_page = SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD
        self.max_versions_page = SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD
        self._mlflow_exception = MlflowException
        self._mlflow_client: MlflowClient | None = None
        self._opening = threading.Lock()
        # The store runs in this process: the installed mlflow is the "server".
        self._capabilities = Capabilities(mlflow.__version__, embedded=True)

    @property
    def _client(self) -> MlflowClient:
        """MLflow's client, for a call that reads: never creates the default store."""
        return self._open(create=False)

    def _open(self, *, create: bool) -> MlflowClient:
        """MLflow's client over the store; ``create`` allows making the default store."""
        if self._mlflow_client is not None:
            return self._mlflow_client
        with self._opening:
            if self._mlflow_client is None:
                if not create and self._default_store_missing():
                    raise no_registry_configured(self.uri)
                self._mlflow_client = self._make_client()
        return self._mlflow_client

    def _default_store_missing(self) -> bool:
        """Whether no registry was configured and the default database does not exist yet."""
        if not self.settings.registry_is_default:
            return False
        path = sqlite_path(self.uri)
        return path is not None and not path.exists()

    def _make_client(self) -> MlflowClient:
        from mlflow import MlflowClient

        try:
            client = MlflowClient(
                tracking_uri=self.settings.tracking_uri, registry_uri=self.settings.registry_uri
            )
            # MLflow opens the registry's store on first use; open it now to report a URI
            # it cannot use as what it is, not as the failure of whatever call came first.
            open_registry = getattr(client, "_get_registry_client", None)
            if open_registry is not None:
                open_registry()
        except self._mlflow_exception as exc:
            # An unknown scheme, a database MLflow cannot open: MLflow's own exception.
            reason = str(exc.message).strip()
            msg = redact(
                f"cannot open the registry {safe_uri(self.uri)}: {reason}. Use an http(s):// "
                "URI for an MLflow server, or sqlite:///path/to/mlflow.db, postgresql://..., "
                "mysql://... or a folder for a local store"
            )
            raise ConfigurationError(msg) from None
        return client

    def __repr__(self) -> str:
        return f"LocalBackend({self.uri!r})"

    @contextmanager
    def _translate(self, action: str, subject: Subject | None = None) -> Iterator[None]:
        try:
            yield
        except self._mlflow_exception as exc:
            error = from_mlflow_exception(exc, subject=subject, action=action)
            if isinstance(error, NotFoundError):
                error = in_registry(error, self.uri)
            raise error from None

    def _call(self, fn: Callable[[], T], action: str, subject: Subject | None = None) -> T:
        with self._translate(action, subject):
            return fn()

    # ---------------------------------------------------------------------------- models

    def create_model(
        self, name: str, *, description: str | None, tags: Mapping[str, str]
    ) -> RegisteredModel:
        """Create a registered model (creates the default store if it does not exist yet).

        An alias move's lock is not a reason to create a store: moving an alias in a store
        that does not exist is a read of nothing.
        """
        from registry_sdk.lifecycle import LOCK_PREFIX

        self._open(create=not name.startswith(LOCK_PREFIX))
        rm = self._call(
            lambda: self._client.create_registered_model(
                name, tags=dict(tags), description=description
            ),
            f"create model {name!r}",
        )
        return RegisteredModel.from_mlflow(rm)

    def get_model(self, name: str) -> RegisteredModel:
        """Fetch a registered model."""
        rm = self._call(
            lambda: self._client.get_registered_model(name), f"get model {name!r}", "model"
        )
        return RegisteredModel.from_mlflow(rm)

    def search_models(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
        retry: bool = True,
    ) -> Page[RegisteredModel]:
        """One page of registered models (``retry`` is moot in process: one attempt)."""
        del retry
        paged = self._call(
            lambda: self._client.search_registered_models(
                filter_string=filter,
                max_results=max_results,
                order_by=list(order_by) or None,
                page_token=page_token,
            ),
            "search models",
        )
        return Page(tuple(RegisteredModel.from_mlflow(m) for m in paged), _token(paged.token))

    def update_model(self, name: str, *, description: str) -> RegisteredModel:
        """Set a registered model's description."""
        rm = self._call(
            lambda: self._client.update_registered_model(name, description=description),
            f"update model {name!r}",
            "model",
        )
        return RegisteredModel.from_mlflow(rm)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a registered model."""
        rm = self._call(
            lambda: self._client.rename_registered_model(name, new_name),
            f"rename model {name!r} to {new_name!r}",
            "model",
        )
        if rm is None:  # MlflowClient.rename_registered_model returns None despite its docs
            return self.get_model(new_name)
        return RegisteredModel.from_mlflow(rm)

    def delete_model(self, name: str) -> None:
        """Delete a registered model and its versions."""
        self._call(
            lambda: self._client.delete_registered_model(name), f"delete model {name!r}", "model"
        )

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on a registered model."""
        self._call(
            lambda: self._client.set_registered_model_tag(name, key, value),
            f"set tag {key!r} on model {name!r}",
            "model",
        )

    def delete_model_tag(self, name: str, key: str) -> None:
        """Delete a tag from a registered model."""
        self._call(
            lambda: self._client.delete_registered_model_tag(name, key),
            f"delete tag {key!r} of model {name!r}",
            "model",
        )

    # ---------------------------------------------------------------------------- versions

    def create_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None,
        tags: Mapping[str, str],
        description: str | None,
        run_link: str | None,
        model_id: str | None,
    ) -> ModelVersion:
        """Create a model version (creates the default store if it does not exist yet)."""
        self._open(create=True)
        kwargs: dict[str, Any] = {
            "run_id": run_id,
            "tags": dict(tags),
            "run_link": run_link,
            "description": description,
        }
        if model_id is not None:
            kwargs["model_id"] = model_id
        logged_id = _logged_model_id(source)
        if logged_id is None:
            mv = self._call(
                lambda: self._client.create_model_version(name, source, **kwargs),
                f"create a version of {name!r}",
                "model",
            )
            return ModelVersion.from_mlflow(mv)
        # MLflow's local registry stores look a ``models:/<model id>`` source up with a bare
        # ``MlflowClient()``, i.e. through MLflow's process-global tracking URI (a TODO in
        # MLflow): with any other store than the global one the logged model is "not found".
        # So the lookup is made here, with this backend's own client, the version created from
        # the logged model's location, and its source then set to what MLflow would record.
        logged = self._call(
            lambda: self._client.get_logged_model(logged_id),
            f"find the logged model {logged_id!r}",
            "model",
        )
        kwargs["run_id"] = run_id or logged.source_run_id
        mv = self._call(
            lambda: self._client.create_model_version(name, logged.artifact_location, **kwargs),
            f"create a version of {name!r}",
            "model",
        )
        version = ModelVersion.from_mlflow(mv)
        if self._record_source(name, version.version, source):
            version = attrs.evolve(version, source=source, model_id=model_id or logged_id)
        return version

    def _record_source(self, name: str, version: int, source: str) -> bool:
        """Set a version's ``source`` column, in a SQL store; whether that could be done."""
        store = getattr(self._client, "_get_registry_client", lambda: None)()
        store = getattr(store, "store", None)
        sessions = getattr(store, "ManagedSessionMaker", None)
        find = getattr(store, "_get_sql_model_version", None)
        if sessions is None or find is None:
            # A folder store: the version keeps the logged model's location as its source.
            return False
        try:
            opened = sessions(read_only=False)  # newer MLflow: sessions read only by default
        except TypeError:
            opened = sessions()
        with opened as session:
            find(session, name, version).source = source
        return True

    def get_version(self, name: str, version: int) -> ModelVersion:
        """Fetch one version."""
        try:
            mv = self._call(
                lambda: self._client.get_model_version(name, str(version)),
                f"get version {name}/{version}",
                "version",
            )
        except NotFoundError as missing:
            raise model_missing_or(self, name, missing) from None
        return ModelVersion.from_mlflow(mv)

    def search_versions(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[ModelVersion]:
        """One page of model versions."""
        paged = self._call(
            lambda: self._client.search_model_versions(
                filter_string=filter,
                max_results=max_results,
                order_by=list(order_by) or None,
                page_token=page_token,
            ),
            "search versions",
        )
        return Page(tuple(ModelVersion.from_mlflow(v) for v in paged), _token(paged.token))

    def update_version(self, name: str, version: int, *, description: str) -> ModelVersion:
        """Set a version's description."""
        mv = self._call(
            lambda: self._client.update_model_version(name, str(version), description),
            f"update version {name}/{version}",
            "version",
        )
        return ModelVersion.from_mlflow(mv)

    def delete_version(self, name: str, version: int) -> None:
        """Delete one version."""
        self._call(
            lambda: self._client.delete_model_version(name, str(version)),
            f"delete version {name}/{version}",
            "version",
        )

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set a tag on a version."""
        self._call(
            lambda: self._client.set_model_version_tag(name, str(version), key, value),
            f"set tag {key!r} on {name}/{version}",
            "version",
        )

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        """Delete a tag from a version."""
        self._call(
            lambda: self._client.delete_model_version_tag(name, str(version), key),
            f"delete tag {key!r} of {name}/{version}",
            "version",
        )

    def get_download_uri(self, name: str, version: int) -> str:
        """Where the version's artifacts live."""
        return str(
            self._call(
                lambda: self._client.get_model_version_download_uri(name, str(version)),
                f"get the artifact location of {name}/{version}",
                "version",
            )
        )

    # ---------------------------------------------------------------------------- aliases

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``."""
        self._call(
            lambda: self._client.set_registered_model_alias(name, alias, str(version)),
            f"set alias {name}@{alias} -> {version}",
            "version",
        )

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias``."""
        self._call(
            lambda: self._client.delete_registered_model_alias(name, alias),
            f"delete alias {name}@{alias}",
            "alias",
        )

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at."""
        try:
            mv = self._call(
                lambda: self._client.get_model_version_by_alias(name, alias),
                f"resolve {name}@{alias}",
                "alias",
            )
        except NotFoundError as missing:
            raise model_missing_or(self, name, missing, alias=alias) from None
        return ModelVersion.from_mlflow(mv)

    # ---------------------------------------------------------------------------- legacy stages

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (MLflow's deprecated stage API)."""
        # The caller issues its own, more useful DeprecationWarning.
        with no_warnings():
            versions = self._call(
                lambda: self._client.get_latest_versions(name, list(stages)),
                f"get latest versions of {name!r}",
                "model",
            )
        return [ModelVersion.from_mlflow(v) for v in versions]

    def transition_stage(
        self, name: str, version: int, stage: str, *, archive_existing: bool
    ) -> ModelVersion:
        """Move a version to a legacy stage (MLflow's deprecated stage API)."""
        with no_warnings():
            mv = self._call(
                lambda: self._client.transition_model_version_stage(
                    name, str(version), stage, archive_existing_versions=archive_existing
                ),
                f"transition {name}/{version} to {stage}",
                "version",
            )
        return ModelVersion.from_mlflow(mv)

    # ---------------------------------------------------------------------------- runs

    def run_artifact_uri(self, run_id: str) -> str:
        """The root of the run's artifacts, as the store names it."""
        run = self._call(lambda: self._client.get_run(run_id), f"get run {run_id!r}")
        return str(run.info.artifact_uri)

    def get_run(self, run_id: str) -> RunData:
        """The run (params, metrics, tags) and its experiment's name."""
        run = self._call(lambda: self._client.get_run(run_id), f"get run {run_id!r}")
        try:
            name = self._client.get_experiment(run.info.experiment_id).name
        except self._mlflow_exception:
            name = None
        return RunData.from_mlflow(run, experiment_name=name)

    # ---------------------------------------------------------------------------- webhooks

    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        *,
        description: str | None,
        secret: str | None,
        status: str | None,
    ) -> Webhook:
        """Create a webhook in the local store (delivery needs a server)."""
        self._capabilities.require("webhooks")
        self._open(create=True)
        hook = self._call(
            lambda: self._client.create_webhook(
                name,
                url,
                list(events),  # type: ignore[arg-type]  # validated strings
                description=description,
                secret=secret,
                status=status,
            ),
            f"create webhook {name!r}",
        )
        return Webhook.from_mlflow(hook)

    def list_webhooks(self, page_token: str | None) -> Page[Webhook]:
        """One page of webhooks."""
        self._capabilities.require("webhooks")
        paged = self._call(
            lambda: self._client.list_webhooks(page_token=page_token), "list webhooks"
        )
        token = paged.token.decode() if isinstance(paged.token, bytes) else paged.token
        return Page(tuple(Webhook.from_mlflow(w) for w in paged), token or None)

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook."""
        self._capabilities.require("webhooks")
        hook = self._call(
            lambda: self._client.get_webhook(webhook_id), f"get webhook {webhook_id!r}"
        )
        return Webhook.from_mlflow(hook)

    def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change a webhook."""
        self._capabilities.require("webhooks")
        hook = self._call(
            lambda: self._client.update_webhook(webhook_id, **changes),
            f"update webhook {webhook_id!r}",
        )
        return Webhook.from_mlflow(hook)

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook."""
        self._capabilities.require("webhooks")
        self._call(
            lambda: self._client.delete_webhook(webhook_id), f"delete webhook {webhook_id!r}"
        )

    def test_webhook(self, webhook_id: str, event: str | None) -> WebhookTestResult:
        """Send a test delivery from this process."""
        self._capabilities.require("webhooks")
        from mlflow.entities.webhook import WebhookEvent
        from mlflow.webhooks.delivery import test_webhook as send_test_delivery

        def send() -> Any:
            # MLflow's SQL store raises NotImplementedError for test_webhook; do what its server
            # does instead: read the webhook (with its secret) and deliver the example payload.
            store = self._client._get_registry_client().store  # type: ignore[no-untyped-call]  # noqa: SLF001
            hook = store.get_webhook(webhook_id)
            wanted = WebhookEvent.from_str(event) if event else None  # type: ignore[arg-type]
            return send_test_delivery(hook, wanted)

        result = self._call(send, f"test webhook {webhook_id!r}")
        return WebhookTestResult(
            success=bool(result.success),
            status=getattr(result, "response_status", None),
            body=getattr(result, "response_body", None),
            error=getattr(result, "error_message", None),
        )

    # ---------------------------------------------------------------------------- diagnostics

    def server_info(self) -> ServerInfo:
        """The in-process store is reachable when a trivial query succeeds."""
        import mlflow

        if self._mlflow_client is None and self._default_store_missing():
            # Reading would need the store; creating it would leave an empty database behind.
            detail = (
                f"no registry configured and no {sqlite_path(self.uri)} yet: the first "
                "registration creates it; set MLFLOW_TRACKING_URI to use another registry"
            )
            return ServerInfo(
                "local", self.uri, reachable=True, version=mlflow.__version__, detail=detail
            )
        try:
            self.search_models(filter=None, order_by=(), max_results=1, page_token=None)
        except RegistryError as exc:
            return ServerInfo(
                "local", self.uri, reachable=False, version=mlflow.__version__, detail=str(exc)
            )
        return ServerInfo("local", self.uri, reachable=True, version=mlflow.__version__)

    def capabilities(self) -> Capabilities:
        """What the installed mlflow's store supports (no request: it runs in this process)."""
        return self._capabilities

    def open_for_writes(self) -> None:
        """Open the store, creating the embedded default if it does not exist yet."""
        self._open(create=True)

    def close(self) -> None:
        """Nothing to release: MLflow owns its engines."""


def _logged_model_id(source: str) -> str | None:
    """The logged model a ``models:/<model id>`` source names; None for any other source."""
    if not source.startswith("models:/"):
        return None
    rest = source[len("models:/") :].strip("/")
    return rest if rest and "/" not in rest and "@" not in rest else None

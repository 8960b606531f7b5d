"""The protocol every backend implements; the client sees nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from registry_sdk.errors import ModelNotFoundError, NotFoundError, RegistryError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from registry_sdk._capabilities import Capabilities
    from registry_sdk.entities import ModelVersion, RegisteredModel, RunData
    from registry_sdk.webhooks import Webhook, WebhookTestResult

T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of a search and the token for the next (``None`` on the last page)."""

    items: tuple[T, ...]
    next_token: str | None


@attrs.frozen
class ServerInfo:
    """What ``doctor`` reports about the registry behind a backend."""

    kind: str
    uri: str
    reachable: bool
    version: str | None
    detail: str | None = None


class Backend(Protocol):
    """Registry operations, one call each; every error is a :class:`~registry_sdk.RegistryError`.

    ``create_model`` and ``create_version`` make a single attempt: the client owns the retry
    of calls that create something, because only it knows how to check what a lost reply did.

    Errors mean the same on every server version: a missing model is a ``ModelNotFoundError``
    (also from ``get_version`` and ``get_version_by_alias``), a missing alias of an existing model
    an ``AliasNotFoundError``, and an endpoint the server is too old to have an
    ``UnsupportedServerError``.
    """

    uri: str
    #: The largest ``max_results`` the store accepts for each search.
    max_models_page: int
    max_versions_page: int

    def create_model(
        self, name: str, *, description: str | None, tags: Mapping[str, str]
    ) -> RegisteredModel: ...
    def get_model(self, name: str) -> RegisteredModel: ...
    def search_models(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[RegisteredModel]: ...
    def update_model(self, name: str, *, description: str) -> RegisteredModel: ...
    def rename_model(self, name: str, new_name: str) -> RegisteredModel: ...
    def delete_model(self, name: str) -> None: ...
    def set_model_tag(self, name: str, key: str, value: str) -> None: ...
    def delete_model_tag(self, name: str, key: str) -> None: ...

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
    ) -> ModelVersion: ...
    def get_version(self, name: str, version: int) -> ModelVersion: ...
    def search_versions(
        self,
        *,
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[ModelVersion]: ...
    def update_version(self, name: str, version: int, *, description: str) -> ModelVersion: ...
    def delete_version(self, name: str, version: int) -> None: ...
    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None: ...
    def delete_version_tag(self, name: str, version: int, key: str) -> None: ...
    def get_download_uri(self, name: str, version: int) -> str: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]: ...
    def transition_stage(
        self, name: str, version: int, stage: str, *, archive_existing: bool
    ) -> ModelVersion: ...

    def get_run(self, run_id: str) -> RunData: ...
    def run_artifact_uri(self, run_id: str) -> str: ...

    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        *,
        description: str | None,
        secret: str | None,
        status: str | None,
    ) -> Webhook: ...
    def list_webhooks(self, page_token: str | None) -> Page[Webhook]: ...
    def get_webhook(self, webhook_id: str) -> Webhook: ...
    def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook: ...
    def delete_webhook(self, webhook_id: str) -> None: ...
    def test_webhook(self, webhook_id: str, event: str | None) -> WebhookTestResult: ...

    def server_info(self) -> ServerInfo: ...
    def capabilities(self) -> Capabilities: ...
    def close(self) -> None: ...


def model_missing_or(backend: Backend, name: str, error: NotFoundError) -> NotFoundError:
    """``ModelNotFoundError`` when the model itself is missing, else ``error``.

    MLflow 2.x answers "alias not found" (and every version answers "version not found")
    whether or not the model exists; one more request, on this error path only, tells.
    """
    try:
        backend.get_model(name)
    except ModelNotFoundError as missing:
        return missing
    except RegistryError:  # the check is a refinement: keep the first answer
        return error
    return error

"""The protocol every backend implements; the client sees nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import attrs

from registry_sdk.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    NotFoundError,
    RegistryError,
    VersionNotFoundError,
    with_aliases,
    with_suggestions,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

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
    ``search_models(retry=False)`` makes a single attempt too (an error path's bounded lookup);
    the in-process store has nothing to retry and ignores it.

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
        retry: bool = True,
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
    def open_for_writes(self) -> None:
        """Make the store ready for an operation that writes (the embedded default is created)."""
        ...

    def close(self) -> None: ...


#: Models one suggestion search may return: a bounded read, on an error path only.
SUGGESTION_SEARCH_SIZE = 50
#: Close names a not-found error suggests, best first.
MAX_SUGGESTIONS = 3
#: Costs of one edit, as Python weighs them when it suggests a name (Python/suggestions.c).
_MOVE_COST = 2
_CASE_COST = 1
#: Characters of the asked-for name the suggestion search matches as a prefix (at most).
_PREFIX = 3


def _distance(a: str, b: str, limit: int) -> int:
    """Edit distance as Python's own "did you mean" weighs it, or more than ``limit``.

    Inserting, deleting or replacing a character costs 2; changing only its case costs 1.
    """
    if abs(len(a) - len(b)) * _MOVE_COST > limit:
        return limit + 1
    previous = [i * _MOVE_COST for i in range(len(b) + 1)]
    for i, x in enumerate(a, start=1):
        current = [i * _MOVE_COST]
        for j, y in enumerate(b, start=1):
            swap = 0 if x == y else (_CASE_COST if x.lower() == y.lower() else _MOVE_COST)
            current.append(
                min(previous[j] + _MOVE_COST, current[j - 1] + _MOVE_COST, previous[j - 1] + swap)
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def close_matches(word: str, candidates: Iterable[str]) -> tuple[str, ...]:
    """The candidates most like ``word``, best first, at most three.

    Close is what Python itself suggests for a misspelt name: an edit distance within about a
    third of the two lengths (``churnn`` and ``chrun`` -> ``churn``; ``team-churnn`` is not
    close to ``team-fraud``). A candidate that starts with ``word``, in any case
    (``churn`` -> ``churn-v2``), counts as close however long it is.
    """
    scored: list[tuple[int, str]] = []
    for candidate in dict.fromkeys(candidates):
        if candidate == word:
            continue
        limit = (len(word) + len(candidate) + 3) * _MOVE_COST // 6
        distance = _distance(word, candidate, limit)
        if word and candidate.lower().startswith(word.lower()):
            distance = min(distance, limit)
        if distance <= limit:
            scored.append((distance, candidate))
    scored.sort()
    return tuple(candidate for _, candidate in scored[:MAX_SUGGESTIONS])


def _search_prefix(name: str) -> str | None:
    """The filter of the suggestion search: names that start like ``name``, any case."""
    prefix = name[: max(1, min(_PREFIX, len(name) // 2))]
    for quote in ("'", '"'):
        if quote not in prefix:
            return f"name ILIKE {quote}{prefix}%{quote}"
    return None


def suggest_models(backend: Backend, name: str, error: ModelNotFoundError) -> ModelNotFoundError:
    """``error`` with the names of existing models close to ``name``, when there are some.

    One bounded search (names starting like ``name``, at most
    :data:`SUGGESTION_SEARCH_SIZE` of them, never retried), filtered and ranked by
    :func:`close_matches`.
    Call it on an error path only. When the search fails, ``error`` comes back unchanged.
    """
    from registry_sdk.lifecycle import LOCK_PREFIX

    query = _search_prefix(name)
    if query is None or error.suggestions:
        return error
    try:
        page = backend.search_models(
            filter=query,
            order_by=(),
            max_results=SUGGESTION_SEARCH_SIZE,
            page_token=None,
            retry=False,
        )
        names = [m.name for m in page.items if not m.name.startswith(LOCK_PREFIX)]
    except Exception:  # noqa: BLE001 - a hint must never hide the error it refines
        return error
    return with_suggestions(error, close_matches(name, names))


def model_missing_or(
    backend: Backend, name: str, error: NotFoundError, *, alias: str | None = None
) -> NotFoundError:
    """``ModelNotFoundError`` when the model itself is missing, else ``error``, explained.

    MLflow 2.x answers "alias not found" (and every version answers "version not found")
    whether or not the model exists; one more request, on this error path only, tells. A
    missing model then gets close names (:func:`suggest_models`: one bounded search); a
    missing ``alias`` of a model that exists lists the model's aliases from that same reply.
    """
    if isinstance(error, ModelNotFoundError):
        return suggest_models(backend, name, error)
    if not isinstance(error, (AliasNotFoundError, VersionNotFoundError)):
        return error  # e.g. a route the server does not have: nothing to refine
    try:
        model = backend.get_model(name)
    except ModelNotFoundError as missing:
        return suggest_models(backend, name, missing)
    except RegistryError:  # the check is a refinement: keep the first answer
        return error
    if isinstance(error, AliasNotFoundError) and alias is not None:
        return with_aliases(error, name, model.aliases, close_matches(alias, model.aliases))
    return error

"""``RegistryClient``: the typed facade over the MLflow Model Registry; every feature uses it.

Feature list (one screen):

* registered models: ``create_model``, ``get_model``, ``search_models``, ``update_model``,
  ``rename_model``, ``delete_model``
* versions: ``create_version`` (exactly once), ``get_version``, ``search_versions``,
  ``update_version``, ``delete_version``
* tags: ``set_tag``, ``delete_tag`` (on a model by name, on a version by reference)
* aliases: ``set_alias``, ``delete_alias``; references: ``resolve``
* legacy stages: ``transition_stage`` (deprecated in MLflow; prefer aliases)
* integrity: ``seal`` (record a version's artifact digest), ``verify`` (check the store)
* diagnostics: ``server_info``
"""

from __future__ import annotations

import getpass
import logging
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from registry_sdk import _tags
from registry_sdk._config import Settings
from registry_sdk._retry import Failure, operation, retry_call
from registry_sdk.entities import AliasEvent, ModelVersion, RegisteredModel
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    CacheIntegrityError,
    ConfigurationError,
    InvalidReferenceError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    OfflineError,
    RegistryError,
    RegistryUnavailableError,
    UnsupportedServerError,
    VersionNotFoundError,
    in_registry,
    redact,
    with_aliases,
)
from registry_sdk.refs import (
    STAGES,
    ModelRef,
    RefKind,
    parse_ref,
    validate_alias,
    validate_model_name,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from typing_extensions import Self

    from registry_sdk._backends.base import Backend, Page, ServerInfo
    from registry_sdk._cache import CachedVersion
    from registry_sdk._capabilities import Capabilities
    from registry_sdk.entities import Lineage, VersionDiff
    from registry_sdk.integrity import Verification
    from registry_sdk.lifecycle import AliasHistory, GateLike, MigrationStep
    from registry_sdk.signing import KeyPath, SigningKey
    from registry_sdk.transfer import ImportReport
    from registry_sdk.webhooks import Webhook, WebhookTestResult

__all__ = ["RegistryClient"]

logger = logging.getLogger("registry_sdk.client")

T = TypeVar("T")
RefLike = str | ModelRef | ModelVersion


def _quote(value: str) -> str:
    """Quote a string literal for an MLflow search filter."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    msg = f"{value!r} contains both quote characters and cannot be used in a search filter"
    raise InvalidReferenceError(msg)


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry, e.g. in some containers
        return "unknown"


class RegistryClient:
    """Typed access to an MLflow Model Registry.

    Args:
        tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlflow.db``.
        registry_uri: registry URI when it differs from the tracking URI (``MLFLOW_REGISTRY_URI``).
        cache_dir: model cache directory; default ``REGISTRY_SDK_CACHE_DIR``, else the user's
            cache directory.
        offline: never touch the network (``REGISTRY_SDK_OFFLINE``).
        timeout: seconds an HTTP call may wait for the server without receiving a byte
            (``REGISTRY_SDK_TIMEOUT``, default 30): an idle timeout, so a slow but moving
            download is never cut; opening a connection may take at most
            ``min(timeout, 10)`` seconds.
        max_retries: retries of one operation, over every layer that retries
            (``REGISTRY_SDK_MAX_RETRIES``, default 5).
        deadline: seconds after which an operation starts no new retry
            (``REGISTRY_SDK_DEADLINE``, default 120); a try under way keeps its timeout.
        fallback_timeout: seconds a call may take when there is a fallback: an alias load
            with a cached resolution, ``@register`` with its outbox
            (``REGISTRY_SDK_FALLBACK_TIMEOUT``, default 10, never more than ``timeout``).
        download_workers: files of one version downloaded at once from a server's artifact
            proxy (``REGISTRY_SDK_DOWNLOAD_WORKERS``, default 8; 1 fetches them in turn).
        direct_download_min_bytes: files of this many bytes or more are fetched straight
            from the artifact store (in byte ranges where that is faster) when the server hands out
            presigned URLs (``REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES``, default every file;
            0 never does).
        require_digest: refuse to load a version that carries no artifact digest
            (``REGISTRY_SDK_REQUIRE_DIGEST``; default off: vanilla-registered versions load).
        allow_local_artifacts: let a remote server name artifact locations on this machine's
            file system (``REGISTRY_SDK_ALLOW_LOCAL_ARTIFACTS``; default off, except for a
            server on a loopback address, which shares this machine's disk).

    ``http(s)://`` URIs talk REST to an MLflow server; any other URI uses MLflow's in-process
    store. Nothing connects until the first call.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        require_digest: bool | None = None,
        allow_local_artifacts: bool | None = None,
        deadline: float | None = None,
        fallback_timeout: float | None = None,
        download_workers: int | None = None,
        direct_download_min_bytes: int | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            tracking_uri,
            registry_uri=registry_uri,
            cache_dir=cache_dir,
            offline=offline,
            timeout=timeout,
            max_retries=max_retries,
            require_digest=require_digest,
            allow_local_artifacts=allow_local_artifacts,
            deadline=deadline,
            fallback_timeout=fallback_timeout,
            download_workers=download_workers,
            direct_download_min_bytes=direct_download_min_bytes,
        )
        self._backend: Backend | None = None
        self._sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_backend(cls, backend: Backend, settings: Settings) -> RegistryClient:
        """A client over an existing backend (for tests and embedding)."""
        client = cls.__new__(cls)
        client.settings = settings
        client._backend = backend  # noqa: SLF001 - its own class
        client._sleep = time.sleep  # noqa: SLF001
        return client

    def __repr__(self) -> str:
        return f"RegistryClient({redact(self.settings.registry_uri)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections."""
        if self._backend is not None:
            self._backend.close()

    @property
    def backend(self) -> Backend:
        """The backend, created on first use."""
        if self._backend is None:
            from registry_sdk._backends import make_backend

            self._backend = make_backend(self.settings)
        return self._backend

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI this client uses."""
        return self.settings.tracking_uri

    @property
    def registry_uri(self) -> str:
        """The registry URI this client uses (credentials removed)."""
        return redact(self.settings.registry_uri)

    # ================================================================== registered models

    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        exist_ok: bool = False,
    ) -> RegisteredModel:
        """Create a registered model; with ``exist_ok=True`` return the existing one instead.

        Raises:
            AlreadyExistsError: a model of that name exists and ``exist_ok`` is false.
        """
        validate_model_name(name)
        tags = dict(tags or {})

        if exist_ok:
            # Re-training an existing model is the common case: one read instead of a failed
            # create and a read.
            try:
                return self.backend.get_model(name)
            except ModelNotFoundError:
                pass
            except ConfigurationError:
                # The embedded default store does not exist yet: no model to find in it, and
                # creating the model creates the store.
                if not self.settings.registry_is_default:
                    raise

        def attempt(state: list[int]) -> RegisteredModel:
            state[0] += 1
            try:
                return self.backend.create_model(name, description=description, tags=tags)
            except AlreadyExistsError:
                if state[0] == 1 and not exist_ok:
                    raise
                # An earlier attempt created it but its reply was lost.
                return self.backend.get_model(name)

        return self._retry_creation(attempt)

    def get_model(self, name: str) -> RegisteredModel:
        """The registered model ``name`` with its tags and aliases.

        Raises:
            ModelNotFoundError: no such model; names the registry and close model names.
        """
        validate_model_name(name)
        try:
            return self.backend.get_model(name)
        except ModelNotFoundError as missing:
            raise self._suggest(name, missing) from None

    def search_models(
        self, filter: str | None = None, *, order_by: Sequence[str] | None = None
    ) -> Iterator[RegisteredModel]:
        """Registered models matching an MLflow filter (``"name LIKE 'churn%'"``), all pages."""
        from registry_sdk.lifecycle import LOCK_PREFIX

        backend = self.backend
        pages = self._pages(
            lambda token: backend.search_models(
                filter=filter,
                order_by=tuple(order_by or ()),
                max_results=backend.max_models_page,
                page_token=token,
            )
        )
        # Move locks are registered models by necessity; they are not the user's models.
        return (m for m in pages if not m.name.startswith(LOCK_PREFIX))

    def update_model(self, name: str, *, description: str) -> RegisteredModel:
        """Set the description of a registered model."""
        return self.backend.update_model(validate_model_name(name), description=description)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a registered model (its versions and aliases follow)."""
        return self.backend.rename_model(validate_model_name(name), validate_model_name(new_name))

    def delete_model(self, name: str) -> None:
        """Delete a registered model with all its versions (and its entries in the local cache).

        MLflow numbers the versions of a model created again under the same name from 1: the
        cache must not serve the deleted ones for them.
        """
        self.backend.delete_model(validate_model_name(name))
        self._evict(name, None)

    # ================================================================== versions

    def create_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        run_link: str | None = None,
        model_id: str | None = None,
        idempotency_key: str | None = None,
        check_existing: bool | None = None,
    ) -> ModelVersion:
        """Create a version of ``name`` from artifacts at ``source``, exactly once.

        The call carries an idempotency key as the ``registry_sdk.idempotency_key`` tag. When an
        attempt fails in a way that may hide a success (lost reply, timeout, 5xx), the key is
        looked up before trying again, so a retry never makes a second version. Pass your own
        ``idempotency_key`` to make repeated calls safe: a version already created with it is
        returned instead of creating another. ``check_existing`` (default: whether a key was
        given) controls that first lookup; retries always look the key up.

        A ``models:/<model id>`` source (what ``mlflow.<flavor>.log_model(...).model_uri`` is
        in MLflow 3) names a logged model: its id is sent as ``model_id`` when none is given,
        as MLflow's own ``register_model`` does, since an MLflow 3 server requires it.

        Raises:
            ModelNotFoundError: the registered model does not exist.
            InvalidRequestError: ``model_id`` and a ``models:/<model id>`` source disagree.
            RegistryUnavailableError: the registry stayed unreachable through every retry.
        """
        validate_model_name(name)
        model_id = _model_id_of(source, model_id)
        key = idempotency_key or uuid.uuid4().hex
        look_first = idempotency_key is not None if check_existing is None else check_existing
        all_tags = {**dict(tags or {}), _tags.IDEMPOTENCY_KEY: key}

        def attempt(state: list[int]) -> ModelVersion:
            state[0] += 1
            # A caller-chosen key may have been used before (a replayed outbox entry, say).
            if state[0] > 1 or look_first:
                existing = self._versions_with_key(name, key)
                if existing:
                    return self._dedupe(existing)
            created = self.backend.create_version(
                name,
                source,
                run_id=run_id,
                tags=all_tags,
                description=description,
                run_link=run_link,
                model_id=model_id,
            )
            if state[0] > 1:
                # A request from an earlier attempt may still have landed after our lookup.
                existing = self._versions_with_key(name, key)
                if len(existing) > 1:
                    return self._dedupe(existing)
            return self._with_aliases(created)

        return self._retry_creation(attempt)

    def find_version_by_key(self, name: str, idempotency_key: str) -> ModelVersion | None:
        """The version of ``name`` created with ``idempotency_key``, if any."""
        found = self._versions_with_key(validate_model_name(name), idempotency_key)
        return self._with_aliases(min(found, key=lambda v: v.version)) if found else None

    def get_version(self, ref: RefLike, version: int | None = None) -> ModelVersion:
        """One version: ``get_version("churn/3")``, ``get_version("churn", 3)`` or any reference.

        Raises:
            VersionNotFoundError: no such version.
        """
        if version is not None:
            if not isinstance(ref, str):
                msg = "get_version(name, version) takes a model name as its first argument"
                raise InvalidReferenceError(msg)
            return self.resolve(ModelRef.of_version(ref, version))
        return self.resolve(ref)

    def search_versions(
        self,
        name: str | None = None,
        *,
        filter: str | None = None,
        tags: Mapping[str, str] | None = None,
        order_by: Sequence[str] | None = None,
    ) -> Iterator[ModelVersion]:
        """Versions matching ``name``, an MLflow ``filter`` and exact ``tags``; paged transparently.

        Every result has its ``aliases`` filled in (MLflow's search leaves them empty).
        """
        clauses: list[str] = []
        if name is not None:
            clauses.append(f"name = {_quote(validate_model_name(name))}")
        for key, value in (tags or {}).items():
            if "`" in key:
                msg = f"tag key {key!r} cannot contain a backtick in a search filter"
                raise InvalidReferenceError(msg)
            clauses.append(f"tags.`{key}` = {_quote(value)}")
        if filter:
            # MLflow's filter grammar is a flat AND of comparisons: it rejects parentheses.
            clauses.append(filter)
        combined = " AND ".join(clauses) or None
        backend = self.backend
        pages = self._pages(
            lambda token: backend.search_versions(
                filter=combined,
                order_by=tuple(order_by or ()),
                max_results=backend.max_versions_page,
                page_token=token,
            )
        )
        return self._fill_aliases(pages)

    def update_version(self, ref: RefLike, *, description: str) -> ModelVersion:
        """Set the description of a version."""
        mv = self.resolve(ref)
        return self._with_aliases(
            self.backend.update_version(mv.name, mv.version, description=description)
        )

    def delete_version(self, ref: RefLike) -> None:
        """Delete one version (give ``name/7``; aliases pointing at it are removed by MLflow)."""
        target = self._version_id(ref)
        self.backend.delete_version(target.name, target.version)
        self._evict(target.name, target.version)

    def transition_stage(
        self, ref: RefLike, stage: str, *, archive_existing: bool = False
    ) -> ModelVersion:
        """Move a version to a legacy stage through MLflow's deprecated stage API.

        Prefer aliases; this exists for registries still on stages and for migrating them.
        """
        canonical = {s.lower(): s for s in (*STAGES, "None")}.get(stage.lower())
        if canonical is None:
            msg = f"unknown stage {stage!r}; use one of {', '.join((*STAGES, 'None'))}"
            raise InvalidReferenceError(msg)
        mv = self.resolve(ref)
        return self._with_aliases(
            self.backend.transition_stage(
                mv.name, mv.version, canonical, archive_existing=archive_existing
            )
        )

    # ================================================================== tags

    def set_tag(self, ref_or_name: RefLike, key: str, value: str) -> None:
        """Set a tag on a version (``"churn/3"``, ``"churn@prod"``) or on a model (``"churn"``)."""
        target = self._tag_target(ref_or_name)
        if isinstance(target, str):
            self.backend.set_model_tag(target, key, str(value))
        else:
            self.backend.set_version_tag(target.name, target.version, key, str(value))

    def delete_tag(self, ref_or_name: RefLike, key: str) -> None:
        """Delete a tag from a version or a model (same targets as :meth:`set_tag`)."""
        target = self._tag_target(ref_or_name)
        if isinstance(target, str):
            self.backend.delete_model_tag(target, key)
        else:
            self.backend.delete_version_tag(target.name, target.version, key)

    # ================================================================== aliases and references

    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str | None = None
    ) -> AliasEvent:
        """Point ``name@alias`` at ``version`` and record the move in the model's alias log.

        Raises:
            VersionNotFoundError: the version does not exist.
            UnsupportedServerError: the server is older than MLflow 2.3 (no aliases).
        """
        from registry_sdk.lifecycle import move_alias

        validate_model_name(name)
        try:
            return move_alias(self, name, validate_alias(alias), int(version), reason=reason)
        except ModelNotFoundError as missing:
            raise self._suggest(name, missing) from None

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        """Remove ``name@alias`` and record the move in the model's alias log.

        Raises:
            AliasNotFoundError: the model has no such alias.
            UnsupportedServerError: the server is older than MLflow 2.3 (no aliases).
        """
        from registry_sdk.lifecycle import move_alias

        validate_model_name(name)
        validate_alias(alias)
        try:
            return move_alias(self, name, alias, None, reason=reason)
        except AliasNotFoundError as missing:
            raise self._aliases_missing_or(name, alias, missing) from None
        except ModelNotFoundError as missing:
            raise self._suggest(name, missing) from None

    def resolve(self, ref: RefLike) -> ModelVersion:
        """The version a reference names: ``name/7``, ``name@alias``, ``name@latest``, a stage.

        A legacy stage resolves to the alias of its lowercase name when the model has one;
        otherwise through MLflow's deprecated stage API, with a ``DeprecationWarning`` naming the
        alias to use instead.

        The error says what is missing, the same on every server version: the model
        (``ModelNotFoundError``, also for ``missing@alias`` and ``missing/1``), else the version
        or the alias; a server too old for aliases raises ``UnsupportedServerError``.

        Raises:
            InvalidReferenceError: the reference is malformed.
            ModelNotFoundError, VersionNotFoundError, AliasNotFoundError: nothing matches.
            UnsupportedServerError: ``name@alias`` on a server older than MLflow 2.3.
        """
        if isinstance(ref, ModelVersion):
            ref = ref.model_ref
        parsed = parse_ref(ref)
        backend = self.backend
        if parsed.kind is RefKind.VERSION:
            assert parsed.version is not None  # noqa: S101 - guaranteed by ModelRef
            return self._with_aliases(backend.get_version(parsed.name, parsed.version))
        if parsed.kind is RefKind.ALIAS:
            assert parsed.alias is not None  # noqa: S101 - guaranteed by ModelRef
            return self._with_aliases(backend.get_version_by_alias(parsed.name, parsed.alias))
        if parsed.kind is RefKind.LATEST:
            return self._latest(parsed.name)
        return self._resolve_stage(parsed)

    # ================================================================== lifecycle and lineage

    def promote(
        self,
        ref: RefLike,
        *,
        to: str,
        require: Sequence[GateLike] = (),
        reason: str | None = None,
        force: bool = False,
        allow_missing: bool = False,
    ) -> AliasEvent:
        """Point alias ``to`` at the version ``ref`` names, if every gate passes.

        Gates are strings (``"accuracy >= 0.9"``, ``"accuracy >= @prod"`` compares with the
        version the alias holds now, ``"latency_ms <= 50"``) or callables taking the
        :class:`ModelVersion` and returning a bool (or ``(bool, detail)``). A gate against an
        alias no version holds fails, naming the aliases the model has, unless that alias is
        ``to`` itself (the first promotion to ``prod`` passes ``"accuracy >= @prod"``) or
        ``allow_missing=True``. A promotion order (``registry_sdk.promotion_order`` model tag,
        e.g. ``staging,prod``) is enforced too. ``force=True`` overrides failures and records
        the move as forced.

        Raises:
            PromotionRejectedError: a gate failed; its message names each one with the values.
        """
        from registry_sdk import lifecycle

        validate_alias(to)  # before any request: refused alike online, offline or unreachable
        return lifecycle.promote(
            self,
            self.resolve(ref),
            to=to,
            require=tuple(require),
            reason=reason,
            force=force,
            allow_missing=allow_missing,
        )

    def check(
        self,
        ref: RefLike,
        require: Sequence[GateLike],
        *,
        to: str | None = None,
        allow_missing: bool = False,
    ) -> list[tuple[str, bool, str]]:
        """Evaluate gates without moving anything: ``[(gate, passed, detail), ...]``.

        A gate against an alias no version holds fails, as in :meth:`promote`, unless that
        alias is ``to`` (the promotion this check is for) or ``allow_missing=True``.
        """
        from registry_sdk import lifecycle

        if to is not None:
            validate_alias(to)
        return lifecycle.check_gates(
            self, self.resolve(ref), tuple(require), target=to, allow_missing=allow_missing
        )

    def rollback(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        """Move ``name@alias`` back to the version it pointed at before its current one.

        Rollbacks walk back: after 1 -> 2 -> 3, a rollback goes to 2, the next one to 1. The
        target is chosen under the alias's move lock, so a concurrent move cannot make it stale.

        Raises:
            AliasNotFoundError: the model has no such alias.
            RegistryError: the alias's history holds no earlier version to go back to.
        """
        from registry_sdk import lifecycle

        validate_model_name(name)
        validate_alias(alias)
        why = f"rollback{': ' + reason if reason else ''}"
        try:
            return lifecycle.move_alias(
                self, name, alias, lambda model: lifecycle.previous_holder(model, alias), reason=why
            )
        except AliasNotFoundError as missing:
            raise self._aliases_missing_or(name, alias, missing) from None
        except ModelNotFoundError as missing:
            raise self._suggest(name, missing) from None

    def history(self, name: str, *, alias: str | None = None) -> AliasHistory:
        """Alias moves of ``name`` oldest first, including moves inferred from other tools."""
        from registry_sdk import lifecycle

        return lifecycle.history(self.get_model(name), alias)

    def set_promotion_order(self, name: str, order: Sequence[str]) -> None:
        """Make versions of ``name`` pass through the aliases in ``order`` (staging, prod)."""
        for alias in order:
            validate_alias(alias)
        self.backend.set_model_tag(
            validate_model_name(name), _tags.PROMOTION_ORDER, ",".join(order)
        )

    def lineage(self, ref: RefLike) -> Lineage:
        """How a version was made: creator, run, git, code, params, metrics, environment, data."""
        from registry_sdk import lifecycle

        return lifecycle.lineage(self, self.resolve(ref))

    def diff(self, ref_a: RefLike, ref_b: RefLike) -> VersionDiff:
        """What changed from ``ref_a`` to ``ref_b``: params, metrics, packages, git, data."""
        from registry_sdk import lifecycle

        return lifecycle.diff(self, self.resolve(ref_a), self.resolve(ref_b))

    def migrate_stages(
        self,
        name: str | None = None,
        *,
        mapping: Mapping[str, str] | None = None,
        dry_run: bool = False,
    ) -> list[MigrationStep]:
        """Give each version in a legacy stage the matching alias (Production -> prod, ...).

        Safe to run twice; ``dry_run`` reports the steps without changing anything.

        Raises:
            UnsupportedServerError: the server has no aliases (MLflow < 2.3), dry run or not.
        """
        from registry_sdk import lifecycle

        names = [validate_model_name(name)] if name else [m.name for m in self.search_models()]
        # A dry run too: it reports steps only a server with aliases could apply.
        self.capabilities().require("aliases")
        chosen = dict(mapping) if mapping else dict(lifecycle.DEFAULT_STAGE_MAPPING)
        return lifecycle.migrate_stages(self, names, chosen, dry_run=dry_run)

    # ================================================================== webhooks

    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        *,
        description: str | None = None,
        secret: str | None = None,
        status: str | None = None,
    ) -> Webhook:
        """Create a registry webhook; ``events`` like ``"model_version_alias.created"``.

        The server signs each delivery with ``secret``; receivers check it with
        :func:`registry_sdk.webhooks.verify_signature`.
        """
        from registry_sdk.webhooks import events_to_json

        events_to_json(list(events))  # validates before anything is sent
        return self.backend.create_webhook(
            name, url, tuple(events), description=description, secret=secret, status=status
        )

    def list_webhooks(self) -> Iterator[Webhook]:
        """Every webhook, paged transparently."""
        return self._pages(self.backend.list_webhooks)

    def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook."""
        return self.backend.get_webhook(webhook_id)

    def update_webhook(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change ``name``, ``url``, ``events``, ``description``, ``secret`` or ``status``."""
        allowed = {"name", "url", "events", "description", "secret", "status"}
        unknown = set(changes) - allowed
        if unknown:
            msg = f"unknown webhook fields {sorted(unknown)}; use {sorted(allowed)}"
            raise ValueError(msg)
        return self.backend.update_webhook(webhook_id, **changes)

    def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook."""
        self.backend.delete_webhook(webhook_id)

    def test_webhook(self, webhook_id: str, *, event: str | None = None) -> WebhookTestResult:
        """Have the registry send a test delivery; returns what the receiver answered."""
        return self.backend.test_webhook(webhook_id, event)

    # ================================================================== export, import, copy

    def export(self, names: Sequence[str] | None = None, *, to: str | os.PathLike[str]) -> Path:
        """Export models (default: all) with every version, tag, alias and their history.

        The directory gets a manifest with the sha256 of every file; see
        :mod:`registry_sdk.transfer`.
        """
        from pathlib import Path

        from registry_sdk import transfer

        return transfer.export(self, names, Path(to))

    def import_(
        self,
        path: str | os.PathLike[str],
        *,
        move_aliases: bool = False,
        verify: KeyPath | Sequence[KeyPath] | None = None,
    ) -> ImportReport:
        """Recreate an export here, verifying checksums first; safe to run again.

        An alias that exists here and would move to an imported version is refused
        (:class:`~registry_sdk.transfer.ImportConflictError`, nothing created) unless
        ``move_aliases``. ``verify`` (default ``REGISTRY_SDK_VERIFY_KEY``): public keys or
        CA certificates, one of which must have signed every version of the export, checked
        before anything is created (:class:`~registry_sdk.errors.SignatureError` otherwise).
        """
        from pathlib import Path

        from registry_sdk import transfer

        return transfer.import_(self, Path(path), move_aliases=move_aliases, verify=verify)

    def copy(
        self,
        ref: RefLike,
        *,
        to_client: RegistryClient,
        name: str | None = None,
        alias: str | None = None,
    ) -> ModelVersion:
        """Copy one version into another registry (dev -> prod), keeping its lineage."""
        from registry_sdk import transfer

        return transfer.copy(self, str(_as_ref(ref)), to_client=to_client, name=name, alias=alias)

    # ================================================================== loading

    def load_model(
        self,
        ref: RefLike,
        *,
        flavor: str | None = None,
        verify: KeyPath | Sequence[KeyPath] | None = None,
        shared: bool = False,
    ) -> Any:
        """Load a version through the local cache; see :func:`registry_sdk.load_model`."""
        from registry_sdk.loading import load_into

        return load_into(self, _as_ref(ref), flavor, verify, shared=shared)

    def pull(self, ref: RefLike, *, verify: KeyPath | Sequence[KeyPath] | None = None) -> Path:
        """Fetch a version into the local cache and return its MLflow model directory.

        ``verify``: public keys or CA certificates, one of which must have signed it (see
        :func:`registry_sdk.load_model`).
        """
        from registry_sdk.loading import pull_into

        return pull_into(self, _as_ref(ref), verify)

    def cached_versions(self) -> list[CachedVersion]:
        """Every version in the local cache of this registry."""
        from registry_sdk.loading import cache_for

        return list(cache_for(self).versions())

    def verify_cache(self, *, repair: bool = False) -> dict[str, list[str]]:
        """Fully hash every cached file; ``{ref: [bad files]}`` for entries that do not match.

        A manifest this cache did not seal is reported as ``manifest.json``. With
        ``repair=True`` a bad entry is evicted, so the next load fetches it again.
        """
        from registry_sdk._cache import MANIFEST
        from registry_sdk.loading import cache_for

        cache = cache_for(self)
        problems: dict[str, list[str]] = {}
        for ref, found in cache.scan():
            forged = isinstance(found, CacheIntegrityError)
            bad = [MANIFEST] if forged else found.check(full=True)  # type: ignore[union-attr]
            if bad:
                problems[ref] = bad
                if repair:
                    name, _, number = ref.rpartition("/")
                    if number.isdigit():
                        cache.evict(name, int(number))
        return problems

    def seal(self, ref: RefLike, *, force: bool = False) -> Verification:
        """Record the digest of a version's artifacts (e.g. one vanilla MLflow registered).

        Later loads verify against it; see :func:`registry_sdk.integrity.seal`.
        """
        from registry_sdk import integrity

        return integrity.seal(self, _as_ref(ref), force=force)

    def sign(self, ref: RefLike, *, key: KeyPath | SigningKey) -> ModelVersion:
        """Sign a registered version with ``key``; the version as it is now.

        ``key``: a private key's path, or a :class:`~registry_sdk.signing.SigningKey` (a key and
        its certificate chain). See :func:`registry_sdk.signing.sign_version` (needs
        ``registry-sdk[signing]``).
        """
        from registry_sdk import signing

        return signing.sign_version(self, _as_ref(ref), key)

    def verify(
        self, ref: RefLike, *, keys: KeyPath | Sequence[KeyPath] | None = None
    ) -> Verification:
        """Check a version's artifacts in the store against its digest, without loading it.

        ``keys``: public key or CA certificate files; the artifacts must then also match the
        version's signature by one of them (see :mod:`registry_sdk.signing`). None: the
        signature is not checked.
        """
        from registry_sdk import integrity
        from registry_sdk.signing import verify_keys

        chosen = verify_keys(keys) if keys is not None else ()
        return integrity.verify(self, _as_ref(ref), keys=chosen)

    def prune_cache(self, *, keep: int = 3) -> list[str]:
        """Keep the newest ``keep`` cached versions per model (and every alias target)."""
        from registry_sdk.loading import cache_for

        return [entry.version.ref for entry in cache_for(self).prune(keep)]

    def with_offline(self, offline: bool) -> RegistryClient:
        """A client like this one with offline mode switched on or off."""
        return RegistryClient.from_backend(
            self.backend if not offline else _OfflineBackend(),
            attrs.evolve(self.settings, offline=offline),
        )

    # ================================================================== diagnostics

    def server_info(self) -> ServerInfo:
        """Reachability and MLflow version of the registry behind this client."""
        return self.backend.server_info()

    def capabilities(self) -> Capabilities:
        """What the registry's server supports; asked once per client, then remembered.

        Over REST this is one ``GET /version`` (none if a missing endpoint asked already; the
        backend remembers the answer); for the embedded store, the installed mlflow's version.
        Nothing on the hot paths calls it: features are checked when their endpoint turns out
        to be missing.
        """
        return self.backend.capabilities()

    # ================================================================== internals

    def _aliases_missing_or(
        self, name: str, alias: str, error: AliasNotFoundError
    ) -> RegistryError:
        """``UnsupportedServerError`` when "no such alias" is because the server has no aliases.

        Asked only on this error path: the server's version (once per client) or, when it does
        not say, the alias endpoint itself. Otherwise ``error``, naming the registry and
        listing the aliases the model has.
        """
        caps = self.capabilities()
        if caps.server_version is not None:
            if not caps.supports("aliases"):
                return caps.unsupported("aliases")
        else:
            try:
                self.backend.get_version_by_alias(name, alias)
            except UnsupportedServerError as unsupported:
                return unsupported
            except AliasNotFoundError:
                pass
            except RegistryError:
                return error
        return self._explain_alias(name, alias, error)

    def _explain_alias(self, name: str, alias: str, error: AliasNotFoundError) -> RegistryError:
        """``error`` naming the registry and the aliases ``name`` has (one read of the model)."""
        from registry_sdk._backends.base import close_matches

        error = in_registry(error, self.backend.uri)
        try:
            model = self.backend.get_model(name)
        except RegistryError:  # a refinement: keep the answer we have
            return error
        return with_aliases(error, name, model.aliases, close_matches(alias, model.aliases))

    def _suggest(self, name: str, error: ModelNotFoundError) -> ModelNotFoundError:
        """``error`` naming the registry and, when there are some, close model names."""
        from registry_sdk._backends.base import suggest_models

        return suggest_models(self.backend, name, in_registry(error, self.backend.uri))

    def _evict(self, name: str, version: int | None) -> None:
        """Drop a deleted model's (or version's) entries from the local cache."""
        from registry_sdk.loading import cache_for

        try:
            cache = cache_for(self)
            if version is None:
                cache.evict_model(name)
            else:
                cache.evict(name, version)
        except (OSError, RegistryError) as exc:  # deleted in the registry all the same
            logger.warning("could not remove %s from the local cache: %s", name, exc)

    def _pages(self, fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
        token: str | None = None
        while True:
            page = fetch(token)
            yield from page.items
            token = page.next_token
            if not token:
                return

    def _fill_aliases(self, versions: Iterator[ModelVersion]) -> Iterator[ModelVersion]:
        aliases_by_model: dict[str, Mapping[str, int]] = {}
        for mv in versions:
            if mv.name not in aliases_by_model:
                try:
                    aliases_by_model[mv.name] = self.backend.get_model(mv.name).aliases
                except ModelNotFoundError:  # deleted while we were paging
                    aliases_by_model[mv.name] = {}
            aliases = aliases_by_model[mv.name]
            yield mv.with_aliases(a for a, v in aliases.items() if v == mv.version)

    def _with_aliases(self, mv: ModelVersion) -> ModelVersion:
        """Fill ``aliases`` from the registered model when the store left them empty."""
        if mv.aliases:
            return mv
        try:
            model = self.backend.get_model(mv.name)
        except NotFoundError:  # deleted meanwhile, or a server that cannot say: best effort
            return mv
        return mv.with_aliases(model.aliases_of(mv.version))

    def _latest(self, name: str) -> ModelVersion:
        page = self.backend.search_versions(
            filter=f"name = {_quote(name)}",
            order_by=("version_number DESC",),
            max_results=1,
            page_token=None,
        )
        if not page.items:
            try:
                self.backend.get_model(name)
            except ModelNotFoundError as missing:
                raise self._suggest(name, missing) from None
            msg = f"model {name!r} has no versions, so {name}@latest names nothing"
            raise in_registry(VersionNotFoundError(msg), self.backend.uri)
        return self._with_aliases(page.items[0])

    def _resolve_stage(self, ref: ModelRef) -> ModelVersion:
        assert ref.stage is not None  # noqa: S101 - guaranteed by ModelRef
        alias = ref.stage.lower()
        try:
            model = self.backend.get_model(ref.name)
        except ModelNotFoundError as missing:
            raise self._suggest(ref.name, missing) from None
        if alias in model.aliases:
            return self._with_aliases(self.backend.get_version(ref.name, model.aliases[alias]))
        # Only where aliases exist (MLflow >= 2.3): on an older server stages are all there is.
        if self.capabilities().supports("aliases"):
            warnings.warn(
                f"{ref} was resolved through MLflow's deprecated model stages. Set the alias "
                f"{alias!r} (e.g. `registry migrate-stages`) and use '{ref.name}@{alias}' "
                "instead.",
                DeprecationWarning,
                stacklevel=3,
            )
        found = self.backend.get_latest_versions(ref.name, [ref.stage])
        if not found:
            msg = f"model {ref.name!r} has no version in stage {ref.stage!r} and no alias {alias!r}"
            raise in_registry(VersionNotFoundError(msg), self.backend.uri)
        newest = max(found, key=lambda v: v.version)
        return newest.with_aliases(model.aliases_of(newest.version))

    def _version_id(self, ref: RefLike) -> _VersionId:
        """A version's name and number, without a request when the reference already says it."""
        if isinstance(ref, ModelVersion):
            return _VersionId(ref.name, ref.version)
        parsed = parse_ref(ref)
        if parsed.kind is RefKind.VERSION and parsed.version is not None:
            return _VersionId(parsed.name, parsed.version)
        mv = self.resolve(parsed)
        return _VersionId(mv.name, mv.version)

    def _tag_target(self, ref_or_name: RefLike) -> str | _VersionId:
        if isinstance(ref_or_name, str) and "/" not in ref_or_name and "@" not in ref_or_name:
            return validate_model_name(ref_or_name)
        return self._version_id(ref_or_name)

    def _versions_with_key(self, name: str, key: str) -> list[ModelVersion]:
        page = self.backend.search_versions(
            filter=f"name = {_quote(name)} AND tags.`{_tags.IDEMPOTENCY_KEY}` = {_quote(key)}",
            order_by=("version_number ASC",),
            max_results=100,
            page_token=None,
        )
        return list(page.items)

    def _dedupe(self, versions: Sequence[ModelVersion]) -> ModelVersion:
        """Keep the first version created under one idempotency key; delete any later twin."""
        ordered = sorted(versions, key=lambda v: v.version)
        for extra in ordered[1:]:
            self.backend.delete_version(extra.name, extra.version)
        return self._with_aliases(ordered[0])

    def _retry_creation(self, attempt: Callable[[list[int]], T]) -> T:
        """Run ``attempt`` until it succeeds, within the operation's one retry budget.

        The lookups and creates inside each attempt spend the same budget, so an endless 5xx
        costs at most ``max_retries + 1`` requests in all.
        """

        def classify(exc: BaseException) -> tuple[Failure, float | None] | None:
            if not isinstance(exc, RegistryUnavailableError):
                return None
            return Failure(exc.failure), exc.retry_after

        state = [0]
        with operation(self.settings) as budget:
            return retry_call(
                lambda: attempt(state), budget=budget, classify=classify, sleep=self._sleep
            )


def _model_id_of(source: str, model_id: str | None) -> str | None:
    """The logged model's id in a ``models:/<model id>`` source, checked against ``model_id``.

    MLflow reads ``models:/<x>`` with one path part and no ``@`` as a logged model's id;
    ``models:/name/7`` and ``models:/name@alias`` name registered versions and carry none.
    """
    if not source.startswith("models:/"):
        return model_id
    path = source[len("models:/") :].strip("/")
    if not path or "/" in path or "@" in path:
        return model_id
    if model_id is not None and model_id != path:
        msg = (
            f"model_id {model_id!r} and the source {source!r} name different logged models; "
            "give the logged model's id, or leave model_id out to take it from the source"
        )
        raise InvalidRequestError(msg)
    return path


@attrs.frozen
class _VersionId:
    name: str
    version: int


def _as_ref(ref: RefLike) -> str | ModelRef:
    return ref.model_ref if isinstance(ref, ModelVersion) else ref


class _OfflineBackend:
    """Stands in for a backend in offline mode: any use of it is a bug, loudly reported."""

    def __getattr__(self, name: str) -> Any:
        msg = f"offline mode forbids registry calls (attempted {name})"
        raise OfflineError(msg)

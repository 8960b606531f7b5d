"""``@register``: a training function registers the model it returns, with everything about it.

::

    @rs.register("churn", alias="staging")
    def train(X, y, n_estimators: int = 100):
        model = RandomForestClassifier(n_estimators=n_estimators).fit(X, y)
        return model, {"accuracy": model.score(X, y)}

Each call runs inside an MLflow run (the active one, if any), logs the scalar arguments as
params and the metrics on the run, saves the model with its MLflow flavor and the exact
requirements it needs, and registers one version tagged with the environment, git state, code
identity and data fingerprints. If the registry cannot be reached when training ends, the
model waits in the local outbox (with a loud warning) until :func:`push_pending`.

A scikit-learn model (or a LightGBM scikit-learn API one) is saved with skops where every
consumer of the registry can read it, with cloudpickle otherwise (see :func:`register`'s
``serialization``); the ``registry_sdk.serialization`` version tag says which.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import importlib
import inspect
import json
import logging
import math
import platform
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

import attrs

from registry_sdk import _tags
from registry_sdk.errors import RegistryError, RegistryUnavailableError, redact
from registry_sdk.refs import validate_alias, validate_model_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from registry_sdk.capture import References
    from registry_sdk.client import RegistryClient
    from registry_sdk.entities import Environment, ModelVersion
    from registry_sdk.signing import KeyPath, SigningKey

__all__ = ["PendingRegistrationWarning", "Registered", "log_metric", "log_metrics", "register"]

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("registry_sdk.register")
_SCALARS = (int, float, str, bool)


class PendingRegistrationWarning(UserWarning):
    """A trained model waits in the local outbox, not registered yet.

    Emitted when the registry could not be reached, and by :func:`push_pending` for models
    staged for another registry than the pushing client's (it names how to push them).
    """


@attrs.define
class _Collector:
    metrics: dict[str, float] = attrs.Factory(dict)
    derived_from: list[str] = attrs.Factory(list)


_current: contextvars.ContextVar[_Collector | None] = contextvars.ContextVar(
    "registry_sdk_register", default=None
)


def log_metric(key: str, value: float) -> None:
    """Record a metric of the model being trained by the enclosing ``@register`` function.

    The final value is logged on the run and as the ``registry_sdk.metrics.<key>`` version tag.

    Raises:
        RuntimeError: called outside a ``@register`` function.
    """
    collector = _current.get()
    if collector is None:
        msg = "rs.log_metric() records metrics of a @register function; call it inside one"
        raise RuntimeError(msg)
    number = float(value)
    if math.isnan(number):
        msg = f"metric {key!r} is NaN; log a number"
        raise ValueError(msg)
    collector.metrics[str(key)] = number


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Record several metrics at once (see :func:`log_metric`)."""
    for key, value in metrics.items():
        log_metric(key, value)


def record_derived_from(ref: str) -> None:
    """Note that the model being trained was derived from the version ``ref`` (used by loaders)."""
    collector = _current.get()
    if collector is not None and ref not in collector.derived_from:
        collector.derived_from.append(ref)


@attrs.frozen
class _Options:
    name: str | None
    alias: str | None
    tags: Mapping[str, str]
    description: str | None
    flavor: str | None
    signature: Any
    input_example: Any
    client: RegistryClient | None
    serialization: str | None = None
    #: What to sign with (None: REGISTRY_SDK_SIGNING_KEY when the function is called).
    sign: SigningKey | None = None


class Registered(Generic[P, R]):
    """A training function wrapped by ``@register``; call it as you would the function.

    Safe to call from many threads at once (a sweep's trials, a worker pool): each call
    registers its own version.
    """

    def __init__(self, fn: Callable[P, R], options: _Options) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._fn = fn
        self._options = options
        self._name = options.name or fn.__name__
        validate_model_name(self._name)
        self._latest: ModelVersion | None = None
        self._per_thread = threading.local()
        self.__signature__ = inspect.signature(fn)

    @property
    def last_version(self) -> ModelVersion | None:
        """The version the calling thread's last call registered (None: it waits in the outbox).

        In a thread that has not called the function, the version of the last call made in
        any thread.
        """
        return getattr(self._per_thread, "version", self._latest)

    @last_version.setter
    def last_version(self, version: ModelVersion | None) -> None:
        self._per_thread.version = version
        self._latest = version

    def __repr__(self) -> str:
        return f"<registered training function {self._fn.__qualname__} -> {self._name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Train, register the returned model, and return exactly what the function returned."""
        return _run_registered(self, args, kwargs)


def _client_for(options: _Options) -> RegistryClient:
    if options.client is not None:
        return options.client
    from registry_sdk.client import RegistryClient

    return RegistryClient()


def _run_tags(provenance: Mapping[str, str]) -> dict[str, str]:
    """The context tags MLflow's own ``start_run`` would resolve, from what we captured already."""
    user, _, _ = provenance.get(_tags.CREATED_BY, "unknown").partition("@")
    tags = {
        "mlflow.user": user,
        "mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>",
        "mlflow.source.type": "LOCAL",
    }
    for ours, theirs in (
        (_tags.GIT_COMMIT, "mlflow.source.git.commit"),
        (_tags.GIT_BRANCH, "mlflow.source.git.branch"),
        (_tags.GIT_REMOTE, "mlflow.source.git.repoURL"),
    ):
        if ours in provenance:
            tags[theirs] = provenance[ours]
    return tags


@contextmanager
def _tracking(client: RegistryClient, tags: Mapping[str, str]) -> Iterator[tuple[Any, Any, bool]]:
    """An MLflow run on the client's tracking server: the user's active one, or one we start.

    Yields (tracking client, run or None, started_here). When the tracking server cannot be
    reached, yields no run: training still happens and the model goes to the outbox. The
    tracking client is bound to the client's tracking URI (see :mod:`registry_sdk._tracking`);
    nothing process-global changes.
    """
    from registry_sdk import _tracking
    from registry_sdk._outbox import tracking_unreachable
    from registry_sdk._retry import operation

    # Without mlflow imported, nobody started a run: no need to import it to ask. Imported (or
    # being imported by another thread: the import waits for it to finish), ask it.
    active = None
    if "mlflow" in sys.modules:
        import mlflow

        active = mlflow.active_run()
    if active is not None:
        yield _tracking.tracking_client(client), active, False
        return
    down = tracking_unreachable(client)
    if down is not None:
        # Not worth MLflow's minute of retries: the model will wait in the outbox.
        logger.debug("training without an MLflow run: %s", down)
        yield None, None, False
        return
    try:
        with operation(client.settings, fallback=True):
            tracking = _tracking.tracking_client(client)
            # Created with the tags we already hold: MLflow's own context resolution would
            # import GitPython and walk the repository a second time.
            experiment = _tracking.experiment_id(client, tracking)
            run = tracking.create_run(experiment, tags=dict(tags))
    except Exception as exc:  # noqa: BLE001 - any failure to start means "no server"
        logger.warning("could not start an MLflow run (%s); training without one", redact(str(exc)))
        yield None, None, False
        return
    try:
        with _tracking.activated(client, run):
            yield tracking, run, True
    except BaseException:
        _end_run(tracking, run.info.run_id, "FAILED")
        raise
    _end_run(tracking, run.info.run_id, "FINISHED")


def _end_run(tracking: Any, run_id: str, status: str) -> None:
    try:
        # Bounded like every other call: the server may have died during training.
        tracking.set_terminated(run_id, status)
    except Exception as exc:  # noqa: BLE001 - the server may be gone; the outbox has the data
        logger.warning("could not end the MLflow run: %s", redact(str(exc)))


def _split(result: object) -> tuple[object, Mapping[str, float]]:
    if (
        isinstance(result, tuple)
        and len(result) == 2  # noqa: PLR2004 - (model, metrics)
        and isinstance(result[1], Mapping)
    ):
        return result[0], result[1]
    return result, {}


def _params_and_data(
    fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    from registry_sdk.capture import fingerprint

    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError:
        return {}, {}
    bound.apply_defaults()
    params: dict[str, str] = {}
    data: dict[str, str] = {}
    for arg, value in bound.arguments.items():
        if value is None or isinstance(value, _SCALARS):
            params[arg] = str(value)
            continue
        fp = fingerprint(value)
        if fp is not None:
            data[f"{_tags.DATA_PREFIX}{arg}"] = json.dumps(
                fp, sort_keys=True, separators=(",", ":")
            )
    return params, data


def _source_dir(fn: Callable[..., Any]) -> Path:
    try:
        source = inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:
        source = None
    if source and Path(source).exists():
        return Path(source).parent
    return Path.cwd()


def _provenance_tags(fn: Callable[..., Any]) -> dict[str, str]:
    from registry_sdk.capture import code_identity, git_state

    function, sha = code_identity(fn)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tags = {
        _tags.CREATED_BY: f"{user}@{platform.node()}",
        _tags.CODE_FUNCTION: function,
        _tags.CODE_SHA256: sha,
    }
    git = git_state(_source_dir(fn))
    if git is not None:
        found = {
            _tags.GIT_COMMIT: git.commit,
            _tags.GIT_BRANCH: git.branch,
            _tags.GIT_DIRTY: None if git.dirty is None else str(git.dirty).lower(),
            _tags.GIT_REMOTE: git.remote,
        }
        tags.update({k: v for k, v in found.items() if v is not None})
    return tags


def _save_model(
    model: object,
    path: Path,
    flavor: str,
    captured: tuple[Environment, References],
    options: _Options,
    client: RegistryClient,
    *,
    server_down: bool,
) -> dict[str, str]:
    """Save ``model`` at ``path`` in its flavor's format; its tags."""
    from registry_sdk import _flavors, _outbox, capture

    env, refs = captured
    serialization = options.serialization
    if serialization is None and _flavors.has_choice(flavor, model):
        readers = _oldest_reader(client, server_down=server_down)
        serialization = _flavors.choose_serialization(flavor, requested=None, readers=readers)
    saved = _flavors.save(
        model,
        path,
        flavor=flavor,
        requirements=env.requirements(),
        serialization=serialization,
        forced=options.serialization is not None,
        signature=options.signature,
        input_example=options.input_example,
        by_value_modules=sorted(capture.local_modules(refs.modules)),
        trusted_types=refs.types,
    )
    return {_outbox.SERIALIZATION_TAG: saved.serialization}


def _run_registered(wrapper: Registered[P, R], args: Any, kwargs: Any) -> R:
    from registry_sdk import _flavors, _outbox, capture
    from registry_sdk.signing import signing_key

    options = wrapper._options  # noqa: SLF001 - the wrapper's own state
    fn = wrapper._fn  # noqa: SLF001
    client = _client_for(options)
    # Before training, not after it: an outbox others could write to is refused.
    _outbox.check_outbox(client.settings.cache_dir)
    params, data_tags = _params_and_data(fn, args, kwargs)
    provenance = _provenance_tags(fn)
    key = uuid.uuid4().hex
    collector = _Collector()

    with _tracking(client, _run_tags(provenance)) as (tracking, run, started):
        if run is not None and options.alias is not None:
            # The server answered: refuse an alias it cannot hold before training, not after.
            _require_aliases(client)
        if run is not None and params:
            _log_params(tracking, run.info.run_id, params)
        token = _current.set(collector)
        prefetch = _prefetch_saving_machinery()
        try:
            result = fn(*args, **kwargs)
        finally:
            _current.reset(token)
            prefetch.join()
        model, returned_metrics = _split(result)
        metrics = {**collector.metrics, **{k: float(v) for k, v in returned_metrics.items()}}

        flavor = _flavors.check_flavor(options.flavor) or _flavors.detect(model)
        refs = capture.references_of(model)
        env = capture.environment_from(refs)
        tags: dict[str, str] = {
            **provenance,
            _tags.ENV_PYTHON: env.python,
            _tags.ENV_PLATFORM: env.platform,
            _tags.ENV_PACKAGES: json.dumps(dict(env.packages), sort_keys=True),
            **data_tags,
            **{f"{_tags.METRICS_PREFIX}{k}": repr(v) for k, v in metrics.items()},
        }
        if collector.derived_from:
            tags[_tags.DERIVED_FROM] = json.dumps(collector.derived_from)
        tags.update({str(k): str(v) for k, v in options.tags.items()})

        signer = options.sign or signing_key()
        staging = _outbox.new_entry_dir(client.settings.cache_dir, key)
        tags.update(
            _save_model(
                model,
                staging / _outbox.MODEL_DIR,
                flavor,
                (env, refs),
                options,
                client,
                server_down=run is None,
            )
        )
        entry = _outbox.commit(
            _outbox.Entry(
                path=staging,
                key=key,
                name=wrapper._name,  # noqa: SLF001
                # Recorded without credentials (the Entry strips them).
                tracking_uri=client.settings.tracking_uri,
                registry_uri=client.settings.registry_uri,
                alias=options.alias,
                description=options.description,
                tags=tags,
                params=params,
                metrics=metrics,
                run_id=run.info.run_id if run is not None else None,
                experiment_id=run.info.experiment_id if run is not None else None,
                owns_run=started,
                alias_reason=f"registered by {tags[_tags.CODE_FUNCTION]}",
                # Signed by the push, once MLflow's metadata is in the files it uploads.
                sign_key=str(signer.private_key) if signer else None,
                sign_certificate=str(signer.certificate) if signer and signer.certificate else None,
                sign_chain=tuple(str(c) for c in signer.chain) if signer else (),
            )
        )
        try:
            wrapper.last_version = _outbox.push(entry, client)
        except RegistryUnavailableError as exc:
            wrapper.last_version = None
            message = (
                f"The registry could not be reached, so model {wrapper._name!r} was NOT "  # noqa: SLF001
                f"registered yet. It is saved in the outbox at {entry.path}; run "
                f"registry_sdk.push_pending() (or `registry push`) to register it. ({exc})"
            )
            logger.debug(message)
            warnings.warn(message, PendingRegistrationWarning, stacklevel=3)
    return result


def _require_aliases(client: RegistryClient) -> None:
    """Raise ``UnsupportedServerError`` if the registry has no aliases (an MLflow < 2.3 server).

    Costs one request per client (the capabilities are remembered); a registry that cannot
    tell now is not refused here (the push checks again).
    """
    from registry_sdk.errors import UnsupportedServerError

    try:
        capabilities = client.capabilities()
    except UnsupportedServerError:
        raise
    except RegistryError:
        return
    capabilities.require("aliases")


def _oldest_reader(client: RegistryClient, *, server_down: bool) -> str | None:
    """The oldest MLflow expected to load a model from ``client``'s registry; None if unknown.

    That is the registry server's version (its consumers run that MLflow, or a newer one),
    capped by the installed mlflow's, which writes the model; for the embedded store, the
    installed mlflow's. Asking costs one request per client, none when ``server_down`` (no run
    could be started). When the server cannot tell now (down, or a proxy hides its version),
    the version it last reported on this machine; None if it never did.
    """
    from registry_sdk._capabilities import version_tuple
    from registry_sdk._flavors import installed_mlflow
    from registry_sdk._outbox import remember_server_version, remembered_server_version

    settings = client.settings
    server: str | None = None
    if not server_down:
        try:
            capabilities = client.capabilities()
        except RegistryError:
            capabilities = None
        if capabilities is not None and capabilities.server_version is not None:
            server = capabilities.server_version
            if not capabilities.embedded:
                remember_server_version(settings.cache_dir, settings.registry_uri, server)
    if server is None:
        server = remembered_server_version(settings.cache_dir, settings.registry_uri)
    if server is None:
        return None
    return min(server, installed_mlflow(), key=version_tuple)


def _prefetch_saving_machinery() -> threading.Thread:
    """Import what saving the model will need while the model trains.

    Training in NumPy-based frameworks mostly runs without the GIL, so these imports (and the
    module -> distribution index) cost nothing extra there instead of adding to the wait after.
    """
    frameworks = {"sklearn": "mlflow.sklearn", "lightgbm": "mlflow.lightgbm"}
    frameworks |= {"xgboost": "mlflow.xgboost", "torch": "mlflow.pytorch"}
    frameworks |= {"transformers": "mlflow.transformers", "onnx": "mlflow.onnx"}
    wanted = [flavor for module, flavor in frameworks.items() if module in sys.modules]
    if "sklearn" in sys.modules:
        wanted.append("skops.io")

    def work() -> None:
        from registry_sdk.capture import prime_mlflow_package_map

        for name in [*wanted[::-1], "mlflow.models"]:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - a missing optional module is found later
                continue
        prime_mlflow_package_map()

    thread = threading.Thread(target=work, name="registry-sdk-prefetch", daemon=True)
    thread.start()
    return thread


def _log_params(tracking: Any, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    try:
        tracking.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    except Exception as exc:  # noqa: BLE001 - the outbox keeps them; push logs them later
        logger.warning(
            "could not log params now (%s); they will be logged on push", redact(str(exc))
        )


@overload
def register(name: Callable[P, R], /) -> Registered[P, R]: ...
@overload
def register(
    name: str | None = None,
    *,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    flavor: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    client: RegistryClient | None = None,
    serialization: str | None = None,
    sign: KeyPath | SigningKey | None = None,
) -> Callable[[Callable[P, R]], Registered[P, R]]: ...


def register(
    name: str | Callable[P, R] | None = None,
    *,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    flavor: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    client: RegistryClient | None = None,
    serialization: str | None = None,
    sign: KeyPath | SigningKey | None = None,
) -> Registered[P, R] | Callable[[Callable[P, R]], Registered[P, R]]:
    """Register the model a training function returns, every time it is called.

    Use bare (``@register``: the model is named after the function) or with a name and options.
    The function may return the model, or ``(model, metrics)``; it returns exactly that.

    Args:
        name: registered model name (default: the function's name).
        alias: alias to point at each new version.
        tags: extra version tags.
        description: description of each new version.
        flavor: force an MLflow flavor (``sklearn``, ``xgboost``, ``lightgbm``, ``pytorch``,
            ``transformers``, ``onnx``, ``pyfunc``); detected from the model object when None.
        signature: MLflow model signature.
        input_example: MLflow input example.
        client: the registry to use (default: ``RegistryClient()``).
        serialization: how a scikit-learn model (or a LightGBM scikit-learn API one) is saved:
            ``"skops"`` (safer: loading runs no arbitrary code; MLflow >= 3.8.1 reads it),
            ``"cloudpickle"`` or ``"pickle"`` (every MLflow reads them). By default skops when
            the registry's server, and the installed mlflow, are at least that release (3.9.0
            for LightGBM), else cloudpickle. When the server cannot tell its version as
            training ends (down, or a proxy hides it), the version it last reported on this
            machine decides, and cloudpickle if it never did. Other models have one format.
            The version's ``registry_sdk.serialization`` tag records what was used.
        sign: the path of a PEM private key (elliptic curve), or a
            :class:`~registry_sdk.signing.SigningKey` (a key and its certificate chain), to
            sign each saved model with before it is uploaded (see :mod:`registry_sdk.signing`);
            default ``REGISTRY_SDK_SIGNING_KEY`` (and ``REGISTRY_SDK_SIGNING_CERTIFICATE``,
            ``REGISTRY_SDK_SIGNING_CHAIN``), read when the function is called; unsigned if
            neither. Needs ``pip install 'registry-sdk[signing]'``.

    Raises:
        ValueError: an unknown flavor or serialization, ``serialization="skops"`` with an
            installed mlflow that cannot write it, or a serialization the given flavor does
            not have; an invalid name or alias; a ``sign`` file that does not exist
            (:class:`~registry_sdk.errors.ConfigurationError`).
    """
    from registry_sdk._flavors import check_flavor, check_serialization
    from registry_sdk.signing import signing_key

    check_flavor(flavor)
    only = {
        "pyfunc": "cloudpickle",
        "xgboost": "its own",
        "pytorch": "its own",
        "transformers": "its own",
        "onnx": "its own",
    }
    if serialization is not None and flavor in only and serialization != only[flavor]:
        msg = (
            f"a {flavor} model is saved in {only[flavor]} format only; serialization= chooses "
            "for scikit-learn and LightGBM scikit-learn API models"
        )
        raise ValueError(msg)
    check_serialization(serialization)
    if alias is not None:
        validate_alias(alias)
    if isinstance(name, str):
        validate_model_name(name)
    key = signing_key(sign) if sign is not None else None

    def decorate(fn: Callable[P, R]) -> Registered[P, R]:
        options = _Options(
            name=name if isinstance(name, str) else None,
            alias=alias,
            tags=dict(tags or {}),
            description=description,
            flavor=flavor,
            signature=signature,
            input_example=input_example,
            client=client,
            serialization=serialization,
            sign=key,
        )
        return Registered(fn, options)

    if callable(name):
        return decorate(name)
    return decorate

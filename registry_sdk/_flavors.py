"""Pick the MLflow flavor for a model object and save it in that flavor's own format.

Detected from the object's class hierarchy: scikit-learn, XGBoost, LightGBM, PyTorch, ONNX
(an ``onnx.ModelProto``) and Hugging Face transformers use their MLflow flavors; anything
else (a class or a function, including ones defined in ``__main__`` or a notebook) is saved as
a cloudpickle-backed pyfunc.
A transformers model is a ``Pipeline``, or a dict of its components (``{"model": ...,
"tokenizer": ...}``) as MLflow's transformers flavor takes them. Imports mlflow (``save``
only; choosing a format does not).

Scikit-learn models, and LightGBM's scikit-learn API models, can be saved in more than one
format (:data:`SERIALIZATIONS`). skops is the safer one (loading it builds only the types on
an allow-list, instead of running whatever the file says), but only recent MLflow releases
read it (:data:`SKOPS_READABLE_SINCE`); :func:`choose_serialization` picks skops where the
registry's consumers can read it and cloudpickle otherwise.
"""

from __future__ import annotations

import shutil
import sys
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk._capabilities import version_tuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

FLAVORS = ("sklearn", "xgboost", "lightgbm", "pytorch", "transformers", "onnx", "pyfunc")
#: The formats ``@register(serialization=...)`` accepts.
SERIALIZATIONS = ("skops", "cloudpickle", "pickle")
#: Flavor -> the first MLflow release whose flavor loads the skops format. An older mlflow (all
#: of 2.x) refuses such a model: "Unrecognized serialization format: skops" for scikit-learn,
#: an unpickling error for LightGBM. Found in MLflow's released packages: ``mlflow.sklearn``
#: gained ``serialization_format="skops"`` in 3.8.1 (not in 3.8.0), ``mlflow.lightgbm`` in 3.9.0.
SKOPS_READABLE_SINCE = {"sklearn": "3.8.1", "lightgbm": "3.9.0"}
#: What every MLflow release the SDK supports reads, for the flavors with a choice.
UNIVERSAL = "cloudpickle"
#: What models of the other flavors are saved as (the ``registry_sdk.serialization`` tag).
NATIVE = "native"
_BY_TOP_MODULE = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "pytorch",
    "transformers": "transformers",
    "onnx": "onnx",
}
#: What loading a flavor's models needs that the model object does not reference: MLflow's
#: ONNX flavor predicts with ONNX Runtime.
_FLAVOR_NEEDS = {"onnx": ("onnxruntime",)}
# Extra distributions a saved format needs at load time, beyond the model's own imports.
_FORMAT_NEEDS = {"skops": ("skops",), "cloudpickle": ("cloudpickle",)}


@attrs.frozen
class Saved:
    """How :func:`save` saved a model.

    Attributes:
        serialization: the format of the model's file: ``skops``, ``cloudpickle`` or ``pickle``,
            or ``native`` for a framework's own format (XGBoost, a LightGBM ``Booster``, PyTorch,
            ONNX, transformers).
        requirements: the pip requirements written with it.
    """

    serialization: str
    requirements: list[str]


def detect(model: object) -> str:
    """The flavor for ``model``: the first framework in its class hierarchy, else ``pyfunc``.

    A dict whose ``"model"`` is a transformers model is that model's components (model,
    tokenizer, ...): ``transformers``.
    """
    if isinstance(model, dict) and detect(model.get("model")) == "transformers":
        return "transformers"
    for cls in type(model).__mro__:
        top = cls.__module__.split(".", 1)[0]
        if top in _BY_TOP_MODULE:
            return _BY_TOP_MODULE[top]
    return "pyfunc"


def check_flavor(flavor: str | None) -> str | None:
    """Validate a user-given flavor name."""
    if flavor is not None and flavor not in FLAVORS:
        msg = f"unknown flavor {flavor!r}; use one of {', '.join(FLAVORS)} (or None to detect it)"
        raise ValueError(msg)
    return flavor


def check_serialization(serialization: str | None, *, installed: str | None = None) -> str | None:
    """Validate a user-given serialization, against the installed mlflow for ``skops``.

    ``installed`` is the installed mlflow's version (looked up when None).

    Raises:
        ValueError: not one of :data:`SERIALIZATIONS`, or ``skops`` with an mlflow that cannot
            write it.
    """
    if serialization is None:
        return None
    if serialization not in SERIALIZATIONS:
        msg = (
            f"unknown serialization {serialization!r}; use one of {', '.join(SERIALIZATIONS)} "
            "(or None to choose by what the registry's MLflow reads)"
        )
        raise ValueError(msg)
    installed = installed or installed_mlflow()
    minimum = SKOPS_READABLE_SINCE["sklearn"]
    if serialization == "skops" and version_tuple(installed) < version_tuple(minimum):
        msg = (
            f"serialization='skops' needs mlflow >= {minimum} where the model is saved; the "
            f"installed mlflow is {installed}. Upgrade it (pip install 'mlflow>={minimum}'), "
            "or use serialization='cloudpickle'"
        )
        raise ValueError(msg)
    return serialization


def installed_mlflow() -> str:
    """The installed mlflow's version (from its metadata: mlflow is not imported)."""
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("mlflow", "mlflow-skinny"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return "0"


def has_choice(flavor: str, model: object) -> bool:
    """Whether ``model``, saved with ``flavor``, can be saved in more than one format."""
    if flavor == "sklearn":
        return True
    if flavor == "lightgbm":
        return not _is_booster(model)
    return False


def choose_serialization(flavor: str, *, requested: str | None, readers: str | None) -> str:
    """The format to save a model of ``flavor`` with (for the flavors with a choice).

    Args:
        flavor: ``sklearn`` or ``lightgbm``.
        requested: what the user asked for (``@register(serialization=...)``); always wins.
        readers: the oldest MLflow release expected to load the model: the registry server's
            version, capped by the installed mlflow's (which writes it). None when unknown.

    Returns:
        ``skops`` when every such reader loads it, else :data:`UNIVERSAL` (cloudpickle, which
        every MLflow the SDK supports reads); an unknown reader gets cloudpickle too.
    """
    if requested is not None:
        return requested
    since = SKOPS_READABLE_SINCE.get(flavor)
    if since is not None and readers is not None and version_tuple(readers) >= version_tuple(since):
        return "skops"
    return UNIVERSAL


def _exact_skops_untrusted(model: object) -> list[str] | None:
    """The types skops would refuse to load; None when skops cannot serialize the object."""
    try:
        import skops.io

        return list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    except Exception:  # noqa: BLE001 - any skops failure means "use another format"
        return None


def _is_untrusted_types_error(exc: BaseException) -> bool:
    return "untrusted types" in str(exc).lower()


def save(
    model: object,
    path: Path,
    *,
    flavor: str,
    requirements: Sequence[str],
    serialization: str | None = None,
    forced: bool = False,
    signature: Any = None,
    input_example: Any = None,
    by_value_modules: Sequence[str] = (),
    trusted_types: Iterable[str] = (),
) -> Saved:
    """Save ``model`` as an MLflow model at ``path``.

    Args:
        model: the trained model object.
        path: where the MLflow model directory goes (must not exist).
        flavor: one of :data:`FLAVORS`.
        requirements: the pip requirements of what the model imports.
        serialization: for the flavors with a choice (see :func:`has_choice`), the format to
            save with (default ``skops``); the other flavors have one format. skops cannot save
            every object (a type it cannot rebuild): such a model is saved with cloudpickle.
        forced: the user asked for ``serialization``: warn when it was not used.
        signature: MLflow model signature.
        input_example: MLflow input example.
        by_value_modules: modules cloudpickle must pickle by value (the user's own code).
        trusted_types: the types the training process saw in the model (trusted by skops).

    Returns:
        The format actually used and the pip requirements written, which are ``requirements``
        plus what that format needs.
    """
    from registry_sdk._isolation import pickled_by_value

    modules = [sys.modules[name] for name in by_value_modules if name in sys.modules]
    with pickled_by_value(modules):
        return _save(
            model,
            path,
            flavor,
            requirements,
            serialization,
            forced,
            signature,
            input_example,
            trusted_types,
        )


def _save(
    model: object,
    path: Path,
    flavor: str,
    requirements: Iterable[str],
    serialization: str | None,
    forced: bool,
    signature: Any,
    input_example: Any,
    trusted_types: Iterable[str],
) -> Saved:
    def reqs(kind: str) -> list[str]:
        extra = [_pin(d) for d in _FORMAT_NEEDS.get(kind, ())]
        return sorted({*requirements, *extra}, key=str.lower)

    common: dict[str, Any] = {"signature": signature, "input_example": input_example}
    wanted = serialization or "skops"
    if flavor == "sklearn":
        return _save_sklearn(model, path, wanted, reqs, common, trusted_types, forced=forced)
    if flavor in {"xgboost", "lightgbm", "pytorch", "onnx"}:
        kind, options = _framework_format(flavor, model, wanted, forced=forced)
        written = sorted({*reqs(kind), *map(_pin, _FLAVOR_NEEDS.get(flavor, ()))}, key=str.lower)
        return _save_framework(model, path, flavor, kind, written, {**common, **options})
    if flavor == "transformers":
        return _save_transformers(model, path, reqs(NATIVE), common, forced=forced, wanted=wanted)
    if forced and wanted != UNIVERSAL:
        _warn_not_used(wanted, UNIVERSAL, "a plain Python model is saved as a pyfunc")
    return _save_pyfunc(model, path, reqs(UNIVERSAL), common)


def _save_pyfunc(model: object, path: Path, written: list[str], common: dict[str, Any]) -> Saved:
    """Any other object, as a cloudpickled pyfunc that calls its ``predict`` (or itself)."""
    import mlflow.pyfunc

    from registry_sdk import _pyfunc_model
    from registry_sdk._isolation import pickled_by_value

    # By value: the saved model must load where registry_sdk is not installed. Quiet: MLflow's
    # cloudpickle advice is about untrusted models, not ours.
    with pickled_by_value([_pyfunc_model]), _quiet("mlflow.pyfunc"):
        mlflow.pyfunc.save_model(
            str(path),
            python_model=_pyfunc_model.CallablePredictor(model),
            pip_requirements=written,
            **common,
        )
    return Saved(UNIVERSAL, written)


def _save_sklearn(
    model: object,
    path: Path,
    wanted: str,
    reqs: Callable[[str], list[str]],
    common: dict[str, Any],
    trusted_types: Iterable[str],
    *,
    forced: bool,
) -> Saved:
    """scikit-learn, with skops where ``wanted`` and possible, else ``wanted`` / cloudpickle."""
    if wanted == "skops":
        written = reqs("skops")
        if _save_sklearn_skops(model, path, sorted(trusted_types), written, common):
            return Saved("skops", written)
        wanted = UNIVERSAL
        if forced:
            _warn_not_used("skops", UNIVERSAL, "skops cannot save this model's types", depth=1)
    import mlflow.sklearn

    written = reqs(wanted)
    with _quiet("mlflow.sklearn"):  # its advice to use skops: chosen against, see above
        mlflow.sklearn.save_model(
            model, str(path), serialization_format=wanted, pip_requirements=written, **common
        )
    return Saved(wanted, written)


def _save_framework(
    model: object, path: Path, flavor: str, kind: str, written: list[str], options: dict[str, Any]
) -> Saved:
    """XGBoost, LightGBM, PyTorch or ONNX, with ``mlflow.<flavor>.save_model``."""
    module = __import__(f"mlflow.{flavor}", fromlist=["save_model"])
    save_model: Callable[..., None] = module.save_model
    with _quiet(f"mlflow.{flavor}") if kind in {"cloudpickle", "pickle"} else _noop():
        save_model(model, str(path), pip_requirements=written, **options)
    return Saved(kind, written)


def _save_transformers(
    model: object,
    path: Path,
    written: list[str],
    common: dict[str, Any],
    *,
    forced: bool,
    wanted: str,
) -> Saved:
    """A pipeline, or a dict of components, with MLflow's transformers flavor (its weights too)."""
    import mlflow.transformers

    if forced:
        _warn_not_used(wanted, NATIVE, "a transformers model has one format", depth=1)
    mlflow.transformers.save_model(
        transformers_model=model, path=str(path), pip_requirements=written, **common
    )
    return Saved(NATIVE, written)


def _framework_format(
    flavor: str, model: object, wanted: str, *, forced: bool
) -> tuple[str, dict[str, Any]]:
    """(the format, the extra ``save_model`` options) for XGBoost, LightGBM and PyTorch."""
    if not has_choice(flavor, model):
        if forced:
            _warn_not_used(wanted, NATIVE, f"a {type(model).__name__} has one format", depth=1)
        return NATIVE, _pytorch_options() if flavor == "pytorch" else {}
    # A LightGBM scikit-learn API model (LGBMClassifier, ...): the format is said explicitly,
    # as MLflow's default varies by platform. An mlflow older than the option uses cloudpickle.
    since = SKOPS_READABLE_SINCE["lightgbm"]
    if version_tuple(installed_mlflow()) >= version_tuple(since):
        return wanted, {"serialization_format": wanted}
    if forced and wanted != UNIVERSAL:
        why = f"the installed mlflow is older than {since}"
        _warn_not_used(wanted, UNIVERSAL, why, depth=1)
    return UNIVERSAL, {}


def _pytorch_options() -> dict[str, Any]:
    """The whole module, pickled (with cloudpickle) as every MLflow release loads it.

    MLflow 3's default outside Databricks is ``pt2`` (``torch.export``), which needs an input
    example to trace the model with and fails on modules ``torch.export`` cannot trace; MLflow 2
    has no such option (and always pickles).
    """
    import inspect

    import mlflow.pytorch

    if "serialization_format" in inspect.signature(mlflow.pytorch.save_model).parameters:
        return {"serialization_format": "pickle"}
    return {}


def _save_sklearn_skops(
    model: object, path: Path, trusted: list[str], written: list[str], common: dict[str, Any]
) -> bool:
    """Save with skops; False (nothing left at ``path``) when skops cannot save ``model``."""
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    # The process that just trained the model trusts every type in it. The types the pickle
    # walk saw are a superset of what skops asks about; only if that misses one do we pay for
    # skops' own (slow) analysis.
    attempt: list[str] | None = trusted
    for _ in range(2):
        if attempt is None:
            break
        try:
            mlflow.sklearn.save_model(
                model,
                str(path),
                serialization_format="skops",
                skops_trusted_types=attempt,
                pip_requirements=written,
                **common,
            )
        except MlflowException as exc:
            shutil.rmtree(path, ignore_errors=True)
            attempt = _exact_skops_untrusted(model) if _is_untrusted_types_error(exc) else None
            continue
        return True
    return False


def _warn_not_used(asked: str, used: str, why: str, *, depth: int = 0) -> None:
    """Warn the caller of ``@register``'s function (``depth``: extra frames below ``save``)."""
    message = (
        f"serialization={asked!r} was asked for, but the model was saved with {used} ({why}); "
        f"the version's registry_sdk.serialization tag says {used!r}"
    )
    # _warn_not_used, save, _run_registered, Registered.__call__, then the caller.
    warnings.warn(message, UserWarning, stacklevel=5 + depth)


def _is_booster(model: object) -> bool:
    lightgbm = sys.modules.get("lightgbm")
    return lightgbm is not None and isinstance(model, lightgbm.Booster)


@contextmanager
def _noop() -> Iterator[None]:
    yield


def _quiet(logger_name: str) -> Any:
    """MLflow's advice on ``logger_name`` dropped for this thread's call (see _isolation)."""
    from registry_sdk._isolation import quiet_logger

    return quiet_logger(logger_name)


def _pin(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:
        return distribution

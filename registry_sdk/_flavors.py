"""Pick the MLflow flavor for a model object and save it in that flavor's own format.

Detected from the object's class hierarchy: scikit-learn, XGBoost, LightGBM and PyTorch use
their MLflow flavors; anything else (a class or a function, including ones defined in
``__main__`` or a notebook) is saved as a cloudpickle-backed pyfunc. Imports mlflow.
"""

from __future__ import annotations

import logging
import shutil
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

FLAVORS = ("sklearn", "xgboost", "lightgbm", "pytorch", "pyfunc")
_BY_TOP_MODULE = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "pytorch",
}
# Extra distributions a flavor's saved format needs at load time, beyond the model's own imports.
_FORMAT_NEEDS = {
    "sklearn-skops": ("skops",),
    "sklearn-cloudpickle": ("cloudpickle",),
    "pyfunc": ("cloudpickle",),
    "lightgbm-skops": ("skops",),
}


def detect(model: object) -> str:
    """The flavor for ``model``: the first framework in its class hierarchy, else ``pyfunc``."""
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
    signature: Any = None,
    input_example: Any = None,
    by_value_modules: Sequence[str] = (),
    trusted_types: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """Save ``model`` as an MLflow model at ``path``.

    Returns:
        The serialization actually used (``sklearn-skops``, ``sklearn-cloudpickle``, ...) and the
        pip requirements written, which are ``requirements`` plus what that format needs.
    """
    import cloudpickle

    for name in by_value_modules:
        module = sys.modules.get(name)
        if module is not None:
            cloudpickle.register_pickle_by_value(module)

    def reqs(kind: str) -> list[str]:
        extra = [_pin(d) for d in _FORMAT_NEEDS.get(kind, ())]
        return sorted({*requirements, *extra}, key=str.lower)

    common: dict[str, Any] = {"signature": signature, "input_example": input_example}
    if flavor == "sklearn":
        import mlflow.sklearn
        from mlflow.exceptions import MlflowException

        # The process that just trained the model trusts every type in it. The types the
        # pickle walk saw are a superset of what skops asks about; only if that misses one do
        # we pay for skops' own (slow) analysis.
        trusted: list[str] | None = sorted(trusted_types)
        for _ in range(2):
            if trusted is None:
                break
            written = reqs("sklearn-skops")
            try:
                mlflow.sklearn.save_model(
                    model,
                    str(path),
                    serialization_format="skops",
                    skops_trusted_types=trusted,
                    pip_requirements=written,
                    **common,
                )
            except MlflowException as exc:
                shutil.rmtree(path, ignore_errors=True)
                trusted = _exact_skops_untrusted(model) if _is_untrusted_types_error(exc) else None
                continue
            return "sklearn-skops", written
        written = reqs("sklearn-cloudpickle")
        mlflow.sklearn.save_model(
            model, str(path), serialization_format="cloudpickle", pip_requirements=written, **common
        )
        return "sklearn-cloudpickle", written
    if flavor in {"xgboost", "lightgbm", "pytorch"}:
        module = __import__(f"mlflow.{flavor}", fromlist=["save_model"])
        kind, options = flavor, dict(common)
        if flavor == "lightgbm" and not isinstance(model, _module("lightgbm").Booster):
            # A scikit-learn API model (LGBMClassifier, ...) is saved with skops, so it is
            # needed to load it; said explicitly, as MLflow's default varies by platform.
            kind, options["serialization_format"] = "lightgbm-skops", "skops"
        written = reqs(kind)
        save_model: Callable[..., None] = module.save_model
        save_model(model, str(path), pip_requirements=written, **options)
        return kind, written
    import mlflow.pyfunc

    from registry_sdk import _pyfunc_model

    # By value: the saved model must load where registry_sdk is not installed.
    cloudpickle.register_pickle_by_value(_pyfunc_model)
    written = reqs("pyfunc")
    with _quiet("mlflow.pyfunc"):  # its cloudpickle advice is about untrusted models, not ours
        mlflow.pyfunc.save_model(
            str(path),
            python_model=_pyfunc_model.CallablePredictor(model),
            pip_requirements=written,
            **common,
        )
    return "pyfunc", written


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _module(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


def _pin(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{distribution}=={version(distribution)}"
    except PackageNotFoundError:
        return distribution

"""The pyfunc wrapper for any Python model; pickled by value, so loading needs no registry_sdk."""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc.model import PythonModel


class CallablePredictor(PythonModel):
    """Serves any object: calls its ``predict`` method, or the object itself if it is callable."""

    # The wrapped object accepts whatever its own code accepts: there is no input schema to
    # infer, so predict has no type hints (MLflow would read them as one) and MLflow's
    # hint-based validation, with its advice to add hints, is skipped.
    _skip_type_hint_validation = True

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202, ARG002
        """Predict with the wrapped object."""
        fn = getattr(self.obj, "predict", None)
        return fn(model_input) if callable(fn) else self.obj(model_input)

"""A PyTorch module's fast-load form predicts exactly what MLflow's pytorch pyfunc predicts."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from registry_sdk.loading import _predict_torch

torch = pytest.importorskip("torch")
pytorch_flavor = pytest.importorskip("mlflow.pytorch")


def _module():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))


def test_a_dataframe_goes_in_as_float32_and_comes_back_with_its_index():
    module = _module()
    frame = pd.DataFrame(np.arange(12, dtype=np.float64).reshape(4, 3), index=[10, 20, 30, 40])
    ours = _predict_torch(module, frame, None)  # no warning (warnings are errors here)
    with warnings.catch_warnings():  # MLflow's: torch warns of pandas' read-only array
        warnings.simplefilter("ignore", UserWarning)
        theirs = pytorch_flavor._PyTorchWrapper(module, "cpu").predict(frame)
    pd.testing.assert_frame_equal(ours, theirs)
    assert list(ours.index) == [10, 20, 30, 40]


def test_an_array_goes_in_as_it_is():
    module = _module()
    array = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    ours = _predict_torch(module, array, None)
    np.testing.assert_array_equal(
        ours, pytorch_flavor._PyTorchWrapper(module, "cpu").predict(array)
    )
    assert isinstance(ours, np.ndarray)


@pytest.mark.parametrize("data", [[[1.0, 2.0, 3.0]], {"x": [1.0]}, "text"])
def test_other_inputs_are_refused_as_mlflow_refuses_them(data):
    with pytest.raises(TypeError, match=r"DataFrame or a numpy\.ndarray"):
        _predict_torch(_module(), data, None)
    with pytest.raises(TypeError):
        pytorch_flavor._PyTorchWrapper(_module(), "cpu").predict(data)


def test_a_module_returning_several_tensors_is_refused():
    class Two(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match="one tensor"):
        _predict_torch(Two(), np.zeros((1, 2), dtype=np.float32), None)

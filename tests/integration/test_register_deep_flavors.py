"""XGBoost, PyTorch, Hugging Face transformers, ONNX and LightGBM Booster models, end to end.

Each model is tiny and built here, with no network (the transformers model from a small config
with random weights and a tokenizer over a local vocabulary). Each is registered with
``alias="prod"`` through an MLflow server (SQLite, proxied artifacts) by this process, which
has pytest, pandas, matplotlib and SciPy imported; then, in fresh processes cut down to the
model's ``requirements.txt`` (``scripts/load_flavor_model.py``), it is loaded three times: by plain
``mlflow.pyfunc.load_model``, by ``registry_sdk.load_model`` into an empty cache, and by
``registry_sdk.load_model`` again from that cache (the fast-load form where the flavor has one).
Every load must predict what the in-memory model predicted.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import uuid
from pathlib import Path

import matplotlib as mpl  # noqa: F401 - imported on purpose: no model may need it
import numpy as np
import pandas as pd  # noqa: F401 - imported on purpose, like matplotlib
import pytest
import scipy  # noqa: F401 - imported on purpose
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import registry_sdk as rs
from registry_sdk import _tags

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

LOADER = Path(__file__).parent / "scripts" / "load_flavor_model.py"
TIMEOUT = 300
RNG = np.random.default_rng(11)
X_TRAIN = RNG.normal(size=(120, 4)).astype(np.float32)
Y_TRAIN = (X_TRAIN[:, 0] - X_TRAIN[:, 2] > 0).astype(np.int64)
X_TEST = RNG.normal(size=(16, 4)).astype(np.float32)
WORDS = ["good", "bad", "great", "awful", "movie", "film", "the", "a", "is", "was", "not"]
TEXTS = ["the movie was good", "a bad film", "great", "the film is not awful"]

#: What each model's requirements.txt names: what loading it needs, nothing the training
#: process merely imported. The PyTorch module's class is defined in this test module, which
#: no distribution installs: it is pickled by value, so cloudpickle is needed to load it.
REQUIREMENTS = {
    "xgboost": {"mlflow", "xgboost"},
    "pytorch": {"mlflow", "cloudpickle", "torch"},
    "transformers": {"mlflow", "tokenizers", "torch", "transformers"},
    "lightgbm_booster": {"mlflow", "lightgbm"},
    # ONNX Runtime runs it; the model object itself references only onnx (and protobuf).
    "onnx": {"mlflow", "onnx", "onnxruntime", "protobuf"},
}
#: How registry_sdk predicts from its cache, and what ``LoadedModel.unwrap()`` returns.
FAST_KIND = {
    "xgboost": "predict",
    "pytorch": "torch",
    "transformers": None,
    "lightgbm_booster": None,
    "onnx": None,
}
UNWRAPPED = {
    "xgboost": "XGBClassifier",
    "pytorch": "TwoLayers",
    "transformers": "TextClassificationPipeline",
    "lightgbm_booster": "Booster",
    "onnx": "InferenceSession",
}
FLAVORS = list(UNWRAPPED)


class TwoLayers(torch.nn.Module):
    """A two-layer classifier defined in the test module (pickled by value)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


def _train_xgboost(X, y, n_estimators: int = 8):
    return xgboost.XGBClassifier(n_estimators=n_estimators, max_depth=2, random_state=0).fit(X, y)


def _train_lightgbm_booster(X, y, rounds: int = 8):
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 0}
    return lightgbm.train(params, lightgbm.Dataset(X, y), num_boost_round=rounds)


def _train_onnx(X, y, l2: float = 1.0):
    """A linear scorer fitted by ridge regression, exported as an ONNX graph (MatMul + Add)."""
    from onnx import TensorProto, helper, numpy_helper

    design = np.hstack([X, np.ones((len(X), 1), dtype=np.float32)])
    solved = np.linalg.solve(design.T @ design + l2 * np.eye(5), design.T @ y.astype(np.float32))
    weights, bias = solved[:4].reshape(4, 1).astype(np.float32), solved[4:].astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["score"]),
        ],
        "ridge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every ONNX Runtime release of the last years reads
    onnx.checker.check_model(model)
    return model


def _train_pytorch(X, y, epochs: int = 20):
    torch.manual_seed(0)
    net = TwoLayers()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.2)
    inputs, targets = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), targets).backward()
        optimizer.step()
    return net


def _train_transformers(vocab_dir: str, labels: int = 2):
    folder = Path(vocab_dir) / "tokenizer"
    folder.mkdir(exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # From the folder: transformers 5 ignores BertTokenizerFast(vocab_file=...) (it takes
    # vocab=), which would leave every word unknown; from_pretrained reads it in 4 and 5.
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder))
    assert tokenizer.convert_tokens_to_ids(WORDS) == list(range(5, 5 + len(WORDS)))
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=labels,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    return transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)


def _expected(flavor: str, model) -> dict[str, object]:
    """What the in-memory model predicts, as the loader writes it."""
    if flavor in {"xgboost", "lightgbm_booster"}:
        return {"array": model.predict(X_TEST).tolist()}
    if flavor == "onnx":
        session = onnxruntime.InferenceSession(model.SerializeToString())
        return {"outputs": {"score": session.run(["score"], {"x": X_TEST})[0].tolist()}}
    if flavor == "pytorch":
        with torch.no_grad():
            return {"array": model(torch.from_numpy(X_TEST)).numpy().tolist()}
    return {"records": model(TEXTS)}


def _requirement_names(path: Path) -> set[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def _load(mode: str, uri: str, name: str, workdir: Path, requirements: Path, inputs: Path):
    """One fresh, cut-down process loading ``name@prod``: (report, predictions)."""
    tag = f"{mode}-{uuid.uuid4().hex[:6]}"
    output, report = workdir / f"{tag}.json", workdir / f"{tag}-report.json"
    cwd = workdir / tag
    cwd.mkdir()
    args = [sys.executable, str(LOADER), mode, uri, f"{name}@prod", str(requirements)]
    args += [str(inputs), str(output), str(report), str(workdir / "sdk-cache")]
    # Nothing but the registry and no hub: not even PATH or HOME.
    env = {"MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert report.exists(), proc.stderr[-4000:]
    loaded = json.loads(report.read_text(encoding="utf-8"))
    assert loaded["ok"], loaded.get("error", proc.stderr[-4000:])
    return loaded, json.loads(output.read_text(encoding="utf-8"))


def _assert_same(flavor: str, got: dict[str, object], expected: dict[str, object]) -> None:
    if flavor == "transformers":
        records, wanted = got["records"], expected["records"]
        assert [r["label"] for r in records] == [w["label"] for w in wanted]
        np.testing.assert_allclose(
            [r["score"] for r in records], [w["score"] for w in wanted], rtol=1e-6
        )
    elif flavor == "onnx":
        assert got["outputs"].keys() == expected["outputs"].keys() == {"score"}
        np.testing.assert_array_equal(got["outputs"]["score"], expected["outputs"]["score"])
    else:
        np.testing.assert_array_equal(np.asarray(got["array"]), np.asarray(expected["array"]))


@pytest.fixture(scope="module")
def registered(request, tmp_path_factory):
    """Each flavor registered through the shared SQLite server (artifacts proxied).

    Returns (uri, workdir, flavor -> (name, expected predictions, artifacts, version tags)).
    """
    workdir = tmp_path_factory.mktemp("deep-flavors")
    uri = request.getfixturevalue("mlflow_server_sqlite").uri
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri=uri).create_experiment(
        f"deep-flavors-{uuid.uuid4().hex[:8]}"
    )
    trainers = {
        "xgboost": (_train_xgboost, (X_TRAIN, Y_TRAIN)),
        "pytorch": (_train_pytorch, (X_TRAIN, Y_TRAIN)),
        "transformers": (_train_transformers, (str(workdir),)),
        "lightgbm_booster": (_train_lightgbm_booster, (X_TRAIN, Y_TRAIN)),
        "onnx": (_train_onnx, (X_TRAIN, Y_TRAIN)),
    }
    out = {}
    with (
        pytest.MonkeyPatch.context() as patch,
        rs.RegistryClient(uri, cache_dir=workdir / "train-cache") as client,
    ):
        patch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
        patch.setenv("HF_HUB_OFFLINE", "1")
        for flavor, (trainer, args) in trainers.items():
            name = f"deep-{flavor.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
            model = rs.register(name, alias="prod", client=client)(trainer)(*args)
            artifacts = client.pull(f"{name}@prod")
            tags = client.get_version(f"{name}@prod").tags
            out[flavor] = (name, _expected(flavor, model), Path(artifacts), tags)
    return uri, workdir, out


@pytest.mark.parametrize("flavor", FLAVORS)
def test_vanilla_mlflow_and_load_model_predict_what_the_trained_model_did(registered, flavor):
    uri, workdir, models = registered
    name, expected, artifacts, _ = models[flavor]
    inputs = workdir / f"{flavor}-input.npy"
    np.save(inputs, np.asarray(TEXTS) if flavor == "transformers" else X_TEST)
    requirements = artifacts / "requirements.txt"

    vanilla, vanilla_out = _load("mlflow", uri, name, workdir, requirements, inputs)
    cold, cold_out = _load("sdk", uri, name, workdir, requirements, inputs)
    warm, warm_out = _load("sdk", uri, name, workdir, requirements, inputs)

    for got in (vanilla_out, cold_out, warm_out):
        _assert_same(flavor, got, expected)
    assert "registry_sdk" not in vanilla["refused_attempts"]
    assert cold["kind"] is None  # the first load goes through MLflow's own loader
    assert warm["kind"] == FAST_KIND[flavor]
    # The fast-load form needs no mlflow at all; transformers always loads through MLflow.
    assert warm["mlflow_imported"] is (FAST_KIND[flavor] is None)
    assert cold["unwrapped"] == warm["unwrapped"] == UNWRAPPED[flavor]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_requirements_name_exactly_what_loading_needs(registered, flavor):
    _, _, models = registered
    _, _, artifacts, tags = models[flavor]

    assert _requirement_names(artifacts / "requirements.txt") == REQUIREMENTS[flavor]
    lines = (artifacts / "requirements.txt").read_text(encoding="utf-8").split()
    # Pinned to what is installed, without a local version label (torch's "+cpu").
    assert sorted(lines) == sorted(
        f"{d}=={importlib.metadata.version(d).split('+', 1)[0]}" for d in REQUIREMENTS[flavor]
    )
    # Whatever the training process had imported besides.
    assert {"pandas", "matplotlib", "scipy", "pytest"} <= set(sys.modules)
    assert tags[_tags.SERIALIZATION] == "native"


@pytest.mark.parametrize(
    ("flavor", "mlflow_flavor"),
    [
        ("xgboost", "xgboost"),
        ("pytorch", "pytorch"),
        ("transformers", "transformers"),
        ("lightgbm_booster", "lightgbm"),
        ("onnx", "onnx"),
    ],
)
def test_each_is_saved_in_its_own_mlflow_flavor(registered, flavor, mlflow_flavor):
    _, _, models = registered
    artifacts = models[flavor][2]
    mlmodel = yaml.safe_load((artifacts / "MLmodel").read_text(encoding="utf-8"))
    assert {mlflow_flavor, "python_function"} <= set(mlmodel["flavors"])
    if flavor == "pytorch":  # the whole module, as every MLflow release loads it
        assert mlmodel["flavors"]["pytorch"].get("serialization_format", "pickle") == "pickle"


def test_each_flavor_is_detected_from_the_returned_object(tmp_path):
    pipeline = _train_transformers(str(tmp_path))
    components = {"model": pipeline.model, "tokenizer": pipeline.tokenizer}
    from registry_sdk import _flavors

    assert _flavors.detect(components) == "transformers"
    assert _flavors.detect(pipeline) == "transformers"
    assert _flavors.detect(TwoLayers()) == "pytorch"
    assert _flavors.detect({"model": TwoLayers()}) == "pyfunc"
    assert _flavors.detect(_train_onnx(X_TRAIN, Y_TRAIN)) == "onnx"

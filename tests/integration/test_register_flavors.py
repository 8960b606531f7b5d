"""Models registered with ``@rs.register`` load with vanilla MLflow, anywhere, and say how made.

For each flavor a model is registered with ``alias="prod"``, then loaded in a fresh process
whose environment holds only ``MLFLOW_TRACKING_URI``, with plain
``mlflow.pyfunc.load_model("models:/<name>@prod")``, and must predict exactly what the
in-memory model predicted. The loader (``scripts/load_registered.py``) makes every installed
distribution that the model's ``requirements.txt`` does not bring in unimportable, and
``registry_sdk`` always: a model that needs anything else fails to load there.

The training process (this one) has imported pytest, pandas, matplotlib and SciPy; none of them
may show up in what a model says it needs.
"""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import matplotlib as mpl  # noqa: F401 - imported on purpose: not a requirement of any model
import mlflow
import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest
import scipy  # noqa: F401 - imported on purpose, like matplotlib
import yaml
from _client_version import MLFLOW_3, registry_uri_keyword
from lightgbm import LGBMClassifier
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import registry_sdk as rs
from registry_sdk import _tags

SCRIPTS = Path(__file__).parent / "scripts"
LOADER = SCRIPTS / "load_registered.py"
MAIN_FUNCTION_TRAINER = SCRIPTS / "train_main_function.py"
SUBPROCESS_TIMEOUT = 240

RNG = np.random.default_rng(7)
X_TRAIN = RNG.normal(size=(200, 5))
Y_CLASS = (X_TRAIN[:, 0] + 0.5 * X_TRAIN[:, 1] > 0).astype(np.int64)
Y_VALUE = X_TRAIN @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + RNG.normal(scale=0.1, size=200)
X_TEST = RNG.normal(size=(40, 5))

#: The format the SDK saves scikit-learn and LightGBM models in here: skops where every MLflow
#: expected to load the model reads it (the installed 3.x, and its servers); MLflow 2 reads no
#: skops, so with MLflow 2 installed the SDK saves them with cloudpickle.
FORMAT = "skops" if MLFLOW_3 else "cloudpickle"
# What loading each model needs: its requirements.txt names exactly these distributions, and
# its `registry_sdk.env.packages` tag those the model object itself references.
REQUIREMENTS = {
    "random_forest": {"mlflow", "numpy", "scikit-learn", FORMAT},
    "pipeline": {"mlflow", "numpy", "scikit-learn", FORMAT},
    "lightgbm": {"mlflow", "lightgbm", "numpy", "scikit-learn", FORMAT},
    "plain_class": {"mlflow", "cloudpickle", "numpy"},
    "main_function": {"mlflow", "cloudpickle", "numpy"},
}
ENV_PACKAGES = {
    "random_forest": {"numpy", "scikit-learn"},
    "pipeline": {"numpy", "scikit-learn"},
    "lightgbm": {"lightgbm", "numpy", "scikit-learn"},
    "plain_class": {"cloudpickle", "numpy"},
    "main_function": {"cloudpickle", "numpy"},
}
MLFLOW_FLAVOR = {
    "random_forest": "sklearn",
    "pipeline": "sklearn",
    "lightgbm": "lightgbm",
    "plain_class": "python_function",
    "main_function": "python_function",
}
FLAVORS_BY_BACKEND = {
    "embedded-sqlite": tuple(REQUIREMENTS),
    "server-sqlite": ("random_forest", "plain_class"),
}
CASES = [
    pytest.param(backend, flavor, id=f"{backend}-{flavor}")
    for backend, flavors in FLAVORS_BY_BACKEND.items()
    for flavor in flavors
]


class Affine:
    """A plain Python model defined in this test module, which no distribution installs."""

    def __init__(self, weights: list[float], bias: float) -> None:
        self.weights = weights
        self.bias = bias

    def predict(self, X):
        return np.asarray(X, dtype=np.float64) @ np.asarray(self.weights) + self.bias


# ============================================================================ helpers


def unique(label: str) -> str:
    return f"flavors-{label}-{uuid.uuid4().hex[:10]}"


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment without MLflow/registry_sdk/git settings, plus ``extra``."""
    prefixes = ("MLFLOW_", "REGISTRY_SDK_", "GIT_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env.update(extra)
    return env


def run(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def requirement_names(path: Path) -> set[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def version_tags(tags) -> dict[str, str]:
    return {k: v for k, v in tags.items() if k.startswith(_tags.PREFIX)}


@attrs.define
class Registry:
    backend: str
    uri: str
    experiment_id: str
    workdir: Path


@attrs.define
class Outcome:
    """One registered model: what training saw, what the registry holds, what loading gave."""

    flavor: str
    name: str = ""
    error: str | None = None
    expected: np.ndarray | None = None
    predicted: np.ndarray | None = None
    artifacts: Path | None = None
    tags: dict[str, str] = attrs.Factory(dict)
    report: dict[str, object] = attrs.Factory(dict)
    loader_log: str = ""


def make_registry(request: pytest.FixtureRequest, backend: str, workdir: Path) -> Registry:
    """A fresh experiment on the shared embedded store or the shared server-sqlite server."""
    if backend == "embedded-sqlite":
        uri = request.getfixturevalue("embedded_sqlite_uri")
        # Artifacts in a temp dir, not ./mlruns of whatever directory pytest runs in.
        location: str | None = (workdir / "artifacts").as_uri()
    else:
        uri = request.getfixturevalue("mlflow_server_sqlite").uri
        location = None  # the server's own (proxied) artifact store
    experiment_id = mlflow.MlflowClient(tracking_uri=uri).create_experiment(
        unique("experiment"), artifact_location=location
    )
    return Registry(backend, uri, experiment_id, workdir)


# ============================================================================ training


def _random_forest(frame: pd.DataFrame, n_estimators: int = 10):
    return RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(
        frame.to_numpy(), Y_CLASS
    )


def _pipeline(X, y, alpha: float = 0.5):
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X, y)


def _lightgbm(X, y, n_estimators: int = 10):
    model = LGBMClassifier(n_estimators=n_estimators, num_leaves=7, random_state=0, verbose=-1)
    return model.fit(X, y)


def _plain_class(weights: np.ndarray, bias: float = 0.5):
    return Affine([float(w) for w in weights], bias)


TRAINERS = {
    "random_forest": (_random_forest, lambda: (pd.DataFrame(X_TRAIN),)),
    "pipeline": (_pipeline, lambda: (X_TRAIN, Y_VALUE)),
    "lightgbm": (_lightgbm, lambda: (X_TRAIN, Y_CLASS)),
    "plain_class": (_plain_class, lambda: (np.array([1.0, -2.0, 0.5, 0.0, 3.0]),)),
}


def train_in_process(flavor: str, client: rs.RegistryClient) -> Outcome:
    outcome = Outcome(flavor, name=unique(flavor.replace("_", "-")))
    trainer, arguments = TRAINERS[flavor]
    train = rs.register(outcome.name, alias="prod", client=client)(trainer)
    model = train(*arguments())
    outcome.expected = np.asarray(model.predict(X_TEST))
    return outcome


def train_in_main(registry: Registry, input_path: Path) -> Outcome:
    outcome = Outcome("main_function", name=unique("main-function"))
    expected = registry.workdir / "main_function-expected.npy"
    proc = run(
        [sys.executable, str(MAIN_FUNCTION_TRAINER), outcome.name, str(input_path), str(expected)],
        cwd=registry.workdir,
        env=child_env(
            MLFLOW_TRACKING_URI=registry.uri,
            MLFLOW_EXPERIMENT_ID=registry.experiment_id,
            REGISTRY_SDK_CACHE_DIR=str(registry.workdir / "main-cache"),
        ),
    )
    if proc.returncode != 0:
        outcome.error = f"training script failed:\n{proc.stderr[-4000:]}"
        return outcome
    assert json.loads(proc.stdout.strip().splitlines()[-1])["aliases"] == ["prod"]
    outcome.expected = np.load(expected)
    return outcome


def fetch(registry: Registry, outcome: Outcome) -> None:
    """Download the version's artifacts and read its tags, as vanilla MLflow sees them.

    Call with ``MLFLOW_TRACKING_URI``/``MLFLOW_REGISTRY_URI`` set: MLflow resolves the
    ``models:/`` URI through the process-wide registry URI, whatever ``registry_uri`` says
    (and MLflow 2's ``download_artifacts`` has no ``registry_uri``).
    """
    try:
        outcome.artifacts = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{outcome.name}@prod",
                dst_path=str(registry.workdir / "downloads" / outcome.flavor),
                tracking_uri=registry.uri,
                **registry_uri_keyword(registry.uri),
            )
        )
        outcome.tags = dict(
            mlflow.MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
            .get_model_version_by_alias(outcome.name, "prod")
            .tags
        )
    except Exception:  # noqa: BLE001 - reported by this flavor's tests
        outcome.error = traceback.format_exc()


def load_in_fresh_process(registry: Registry, outcome: Outcome, input_path: Path) -> None:
    """Load the model by its alias and predict, in a fresh, cut-down process."""
    assert outcome.artifacts is not None
    output = registry.workdir / f"{outcome.flavor}-predicted.npy"
    report = registry.workdir / f"{outcome.flavor}-report.json"
    loader_cwd = registry.workdir / f"{outcome.flavor}-loader"
    loader_cwd.mkdir()
    proc = run(
        [
            sys.executable,
            str(LOADER),
            f"models:/{outcome.name}@prod",
            str(outcome.artifacts / "requirements.txt"),
            str(input_path),
            str(output),
            str(report),
        ],
        cwd=loader_cwd,
        env={"MLFLOW_TRACKING_URI": registry.uri},  # nothing else: not even PATH or HOME
    )
    outcome.loader_log = f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    if report.exists():
        outcome.report = json.loads(report.read_text(encoding="utf-8"))
    if output.exists():
        outcome.predicted = np.load(output)


@pytest.fixture(scope="module")
def _outcomes_by_backend() -> dict[str, dict[str, Outcome]]:
    return {}


@pytest.fixture
def outcomes(request, tmp_path_factory, _outcomes_by_backend) -> dict[str, Outcome]:
    """Every flavor registered on the backend ``request.param``, and loaded; once per module.

    (A module-scoped fixture would be rebuilt for each case: pytest keys its cache by the
    index of the parameter set, and every (backend, flavor) case has its own.)
    """
    backend = request.param
    if backend not in _outcomes_by_backend:
        _outcomes_by_backend[backend] = register_and_load(request, backend, tmp_path_factory)
    return _outcomes_by_backend[backend]


def register_and_load(
    request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Register every flavor on one backend, then load each in its own fresh process."""
    registry = make_registry(request, backend, tmp_path_factory.mktemp(f"flavors-{backend}"))
    input_path = registry.workdir / "x_test.npy"
    np.save(input_path, X_TEST)
    flavors = FLAVORS_BY_BACKEND[backend]
    # The training process has these imported; none of them may be taken for a requirement.
    assert {"pytest", "pandas", "matplotlib", "scipy"} <= set(sys.modules)

    results: dict[str, Outcome] = {}
    with (
        pytest.MonkeyPatch.context() as patch,
        rs.RegistryClient(
            registry.uri,
            registry_uri=registry.uri,
            cache_dir=registry.workdir / "cache",
            offline=False,
            timeout=30,
            max_retries=1,
        ) as client,
    ):
        patch.setenv("MLFLOW_EXPERIMENT_ID", registry.experiment_id)
        for flavor in flavors:
            if flavor == "main_function":
                continue
            try:
                results[flavor] = train_in_process(flavor, client)
            except Exception:  # noqa: BLE001 - reported by this flavor's tests
                results[flavor] = Outcome(flavor, error=traceback.format_exc())
        if "main_function" in flavors:
            results["main_function"] = train_in_main(registry, input_path)
        patch.setenv("MLFLOW_TRACKING_URI", registry.uri)
        patch.setenv("MLFLOW_REGISTRY_URI", registry.uri)
        for outcome in results.values():
            if outcome.error is None:
                fetch(registry, outcome)

    ready = [o for o in results.values() if o.error is None]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda o: load_in_fresh_process(registry, o, input_path), ready))
    return results


def outcome_of(outcomes: dict[str, Outcome], flavor: str) -> Outcome:
    outcome = outcomes[flavor]
    assert outcome.error is None, outcome.error
    return outcome


# ============================================================================ 1. loading


@pytest.mark.parametrize(("outcomes", "flavor"), CASES, indirect=["outcomes"])
def test_loads_with_vanilla_mlflow_in_a_fresh_process_and_predicts_the_same(outcomes, flavor):
    outcome = outcome_of(outcomes, flavor)

    assert outcome.report.get("ok") is True, outcome.report.get("error", outcome.loader_log)
    assert outcome.predicted is not None
    assert outcome.expected is not None
    assert outcome.predicted.shape == outcome.expected.shape == (len(X_TEST),)
    np.testing.assert_array_equal(outcome.predicted, outcome.expected)


@pytest.mark.parametrize(("outcomes", "flavor"), CASES, indirect=["outcomes"])
def test_loading_needs_no_registry_sdk(outcomes, flavor):
    outcome = outcome_of(outcomes, flavor)

    assert outcome.report.get("ok") is True, outcome.report.get("error", outcome.loader_log)
    assert outcome.report["registry_sdk_loaded"] == []
    assert "registry_sdk" not in outcome.report["refused_attempts"]
    assert outcome.artifacts is not None
    assert "registry" not in (outcome.artifacts / "requirements.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(("outcomes", "flavor"), CASES, indirect=["outcomes"])
def test_is_saved_in_its_own_mlflow_flavor(outcomes, flavor):
    outcome = outcome_of(outcomes, flavor)
    assert outcome.artifacts is not None

    mlmodel = yaml.safe_load((outcome.artifacts / "MLmodel").read_text(encoding="utf-8"))

    assert MLFLOW_FLAVOR[flavor] in mlmodel["flavors"]
    assert "python_function" in mlmodel["flavors"]
    if MLFLOW_FLAVOR[flavor] in {"sklearn", "lightgbm"}:
        conf = mlmodel["flavors"][MLFLOW_FLAVOR[flavor]]
        if MLFLOW_FLAVOR[flavor] == "lightgbm" and not MLFLOW_3:
            # MLflow 2's LightGBM flavor has one format for a scikit-learn-API model, cloudpickle,
            # and records none.
            assert "serialization_format" not in conf
            assert conf["data"] == "model.pkl"
        else:
            assert conf["serialization_format"] == FORMAT
        assert outcome.tags[_tags.SERIALIZATION] == FORMAT
    else:
        assert set(mlmodel["flavors"]) == {"python_function"}


# ============================================================================ 2. requirements


@pytest.mark.parametrize(("outcomes", "flavor"), CASES, indirect=["outcomes"])
def test_requirements_are_exactly_what_loading_needs(outcomes, flavor):
    outcome = outcome_of(outcomes, flavor)
    assert outcome.artifacts is not None

    lines = (outcome.artifacts / "requirements.txt").read_text(encoding="utf-8").split()

    assert requirement_names(outcome.artifacts / "requirements.txt") == REQUIREMENTS[flavor]
    assert sorted(lines, key=str.lower) == sorted(
        (f"{d}=={importlib.metadata.version(d)}" for d in REQUIREMENTS[flavor]), key=str.lower
    )
    packages = json.loads(outcome.tags[_tags.ENV_PACKAGES])
    assert packages == {d: importlib.metadata.version(d) for d in ENV_PACKAGES[flavor]}


@pytest.mark.parametrize("outcomes", ["embedded-sqlite"], indirect=True)
def test_a_random_forest_needs_numpy_and_scikit_learn_only_whatever_else_was_imported(outcomes):
    outcome = outcome_of(outcomes, "random_forest")
    assert outcome.artifacts is not None

    assert set(json.loads(outcome.tags[_tags.ENV_PACKAGES])) == {"numpy", "scikit-learn"}
    assert requirement_names(outcome.artifacts / "requirements.txt") == {
        "mlflow",
        "numpy",
        "scikit-learn",
        FORMAT,
    }
    # ...although the training process used pandas (the training frame) and had these loaded:
    assert json.loads(outcome.tags[f"{_tags.DATA_PREFIX}frame"])["shape"] == [200, 5]
    assert {"pandas", "matplotlib", "scipy", "pytest", "lightgbm"} <= set(sys.modules)


# ============================================================================ 3. version tags

TRAIN_BLOCK = textwrap.dedent(
    """\
    @rs.register(sys.argv[1], alias="prod")
    def train(X, y, frame, n_estimators: int = 10):
        model = RandomForestClassifier(n_estimators=n_estimators, random_state=0).fit(X, y)
        rs.log_metric("oob_proxy", 0.25)
        return model, {"accuracy": model.score(X, y)}
    """
)
REPO_SCRIPT = (
    textwrap.dedent(
        """\
        import json
        import sys

        import numpy as np
        import pandas as pd
        from sklearn.ensemble import RandomForestClassifier

        import registry_sdk as rs


        """
    )
    + TRAIN_BLOCK
    + textwrap.dedent(
        """\


        if __name__ == "__main__":
            X, y = np.load(sys.argv[2]), np.load(sys.argv[3])
            frame = pd.DataFrame({"age": X[:, 0], "income": X[:, 1]})
            _, metrics = train(X, y, frame)
            print(json.dumps({"version": train.last_version.version, **metrics}))
        """
    )
)
REMOTE_WITH_CREDENTIALS = "https://alice:s3cret-pw@git.example.com/team/churn.git"


def git(repo: Path, *args: str) -> str:
    env = child_env(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.com",
    )
    proc = run(["git", *args], cwd=repo, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_generated_tags(tags: dict[str, str]) -> None:
    """The idempotency key, the artifact digest and its per-file listing (see register.md)."""
    assert re.fullmatch(r"[0-9a-f]{32}", tags[f"{_tags.PREFIX}idempotency_key"])
    assert re.fullmatch(r"[0-9a-f]{64}", tags[f"{_tags.PREFIX}artifacts.sha256"])
    assert "MLmodel" in json.loads(tags[f"{_tags.PREFIX}artifacts.files"])


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")
def test_a_version_carries_exactly_the_documented_tags(request, tmp_path):
    registry = make_registry(request, "embedded-sqlite", tmp_path)
    uri = registry.uri
    repo = tmp_path / "churn-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", REMOTE_WITH_CREDENTIALS)
    (repo / "train.py").write_text(REPO_SCRIPT, encoding="utf-8")
    (repo / "README.md").write_text("# churn\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train script")
    git(repo, "checkout", "-q", "-b", "experiment/tags")
    X = np.random.default_rng(3).normal(size=(120, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    name = unique("tags")

    proc = run(
        [sys.executable, "train.py", name, str(tmp_path / "X.npy"), str(tmp_path / "y.npy")],
        cwd=repo,
        env=child_env(
            MLFLOW_TRACKING_URI=uri,
            MLFLOW_EXPERIMENT_ID=registry.experiment_id,
            REGISTRY_SDK_CACHE_DIR=str(tmp_path / "cache"),
        ),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = json.loads(proc.stdout.strip().splitlines()[-1])

    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = vanilla.get_model_version(name, str(printed["version"]))
    tags = version_tags(mv.tags)
    frame = pd.DataFrame({"age": X[:, 0], "income": X[:, 1]})
    frame_rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    P = _tags.PREFIX

    assert set(tags) == {
        f"{P}created_by",
        f"{P}git.commit",
        f"{P}git.branch",
        f"{P}git.dirty",
        f"{P}git.remote",
        f"{P}code.function",
        f"{P}code.sha256",
        f"{P}env.python",
        f"{P}env.platform",
        f"{P}env.packages",
        f"{P}metrics.accuracy",
        f"{P}metrics.oob_proxy",
        f"{P}data.X",
        f"{P}data.y",
        f"{P}data.frame",
        f"{P}idempotency_key",
        f"{P}artifacts.sha256",
        f"{P}artifacts.files",
        f"{P}serialization",
    }
    assert tags[f"{P}created_by"] == f"{getpass.getuser()}@{platform.node()}"
    assert tags[f"{P}git.commit"] == git(repo, "rev-parse", "HEAD")
    assert tags[f"{P}git.branch"] == "experiment/tags"
    assert tags[f"{P}git.dirty"] == "false"
    assert tags[f"{P}git.remote"] == "https://git.example.com/team/churn.git"
    assert tags[f"{P}code.function"] == "__main__.train"
    assert tags[f"{P}code.sha256"] == sha256_hex(TRAIN_BLOCK.encode())
    assert tags[f"{P}env.python"] == platform.python_version()
    assert tags[f"{P}env.platform"] == f"{platform.system()}-{platform.machine()}"
    assert json.loads(tags[f"{P}env.packages"]) == {
        "numpy": importlib.metadata.version("numpy"),
        "scikit-learn": importlib.metadata.version("scikit-learn"),
    }
    assert float(tags[f"{P}metrics.accuracy"]) == printed["accuracy"]
    assert float(tags[f"{P}metrics.oob_proxy"]) == 0.25
    assert json.loads(tags[f"{P}data.X"]) == {
        "shape": [120, 4],
        "dtype": "float64",
        "sha256": sha256_hex(X.tobytes()),
        "sampled": False,
    }
    assert json.loads(tags[f"{P}data.y"]) == {
        "shape": [120],
        "dtype": "int64",
        "sha256": sha256_hex(y.tobytes()),
        "sampled": False,
    }
    assert json.loads(tags[f"{P}data.frame"]) == {
        "shape": [120, 2],
        "columns": ["age", "income"],
        "dtype": {"age": "float64", "income": "float64"},
        "sha256": sha256_hex(frame_rows.tobytes()),
        "sampled": False,
    }
    assert_generated_tags(tags)
    assert vanilla.get_model_version_by_alias(name, "prod").version == mv.version

    # The run has the params and metrics; no credential is anywhere MLflow stores text.
    training_run = vanilla.get_run(mv.run_id)
    assert training_run.data.params == {"n_estimators": "10"}
    assert training_run.data.metrics == {"accuracy": printed["accuracy"], "oob_proxy": 0.25}
    assert training_run.data.tags["mlflow.source.git.commit"] == tags[f"{P}git.commit"]
    stored_text = json.dumps([dict(mv.tags), training_run.data.tags, training_run.data.params])
    assert "s3cret" not in stored_text
    assert "alice" not in stored_text

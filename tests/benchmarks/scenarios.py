"""The benchmark scenarios: each one is registry_sdk beside plain MLflow doing the same job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import Scenario

PY = sys.executable
JOBS = Path(__file__).parent / "jobs"
sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

from _servers import MlflowServer  # noqa: E402 - the integration suite's server fixture code


def _create_sqlite_registry(workdir: Path) -> None:
    """Create ./mlflow.db once, so neither side pays for the schema migration."""
    subprocess.run(
        [
            PY,
            "-c",
            "import mlflow; mlflow.MlflowClient('sqlite:///mlflow.db').search_experiments()",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
    )


def import_scenario(repeat: int) -> Scenario:
    """Whole-process ``import registry_sdk`` vs ``import mlflow`` (target: a tenth)."""
    return Scenario(
        name="import",
        description="python -c 'import registry_sdk' vs python -c 'import mlflow', fresh processes",
        ours=[PY, "-c", "import registry_sdk"],
        baseline=[PY, "-c", "import mlflow"],
        target_ratio=0.10,
        repeat=repeat,
    )


def register_scenario(repeat: int) -> Scenario:
    """@register vs idiomatic MLflow (run, params, metrics, log_model, register, alias).

    Each side reports its own overhead: wall time of train-and-register minus the bare
    training function's, both measured in the same fresh process. Target: at most 0.4.
    """
    return Scenario(
        name="register_overhead",
        description="RandomForest(200) on 2000x20, registration overhead: @register vs MLflow",
        ours=[PY, str(JOBS / "register_ours.py")],
        baseline=[PY, str(JOBS / "register_mlflow.py")],
        target_ratio=0.4,
        repeat=max(5, repeat // 2),
        warmup=1,
        setup=_create_sqlite_registry,
        env={"REGISTRY_SDK_CACHE_DIR": ".registry-sdk-cache", "MLFLOW_TRACKING_URI": ""},
        metric="overhead",
    )


class _RfServer:
    """An mlflow server on loopback with rf@prod registered by plain MLflow; one per run."""

    server: MlflowServer | None = None

    @classmethod
    def uri(cls, workdir: Path) -> str:
        if cls.server is None:
            root = workdir.parent / "rf-server"
            root.mkdir(parents=True, exist_ok=True)
            server = MlflowServer("rf", f"sqlite:///{root / 'mlflow.db'}", root)
            cls.server = server.start()
            subprocess.run(
                [PY, str(JOBS / "setup_rf_server.py"), server.uri],
                check=True,
                capture_output=True,
                cwd=root,
            )
        return cls.server.uri

    @classmethod
    def stop(cls, _workdir: Path) -> None:
        if cls.server is not None:
            cls.server.stop()
            cls.server = None


_X = "import numpy as np; X = np.random.RandomState(1).rand(5, 20)"


def _load_scenarios(repeat: int) -> list[Scenario]:
    """load_model from a warm cache vs MLflow, and native load vs the unpickling limit."""

    def setup(workdir: Path) -> None:
        uri = _RfServer.uri(workdir)
        (workdir / "uri").write_text(uri)

    def cmd(code: str) -> list[str]:
        # The URI is only known once the server runs: read it in the timed process.
        prelude = (
            "import os; os.environ['MLFLOW_TRACKING_URI'] = open('uri').read(); "
            "os.environ['REGISTRY_SDK_CACHE_DIR'] = os.path.abspath('cache'); "
        )
        return [PY, "-c", prelude + code]

    pyfunc = Scenario(
        name="load_alias_warm",
        description="fresh process, warm cache: load_model('rf@prod') + predict vs MLflow",
        ours=cmd(f"import registry_sdk as rs; {_X}; rs.load_model('rf@prod').predict(X)"),
        baseline=cmd(
            f"import mlflow.pyfunc; {_X}; mlflow.pyfunc.load_model('models:/rf@prod').predict(X)"
        ),
        target_ratio=0.5,
        repeat=repeat,
        warmup=1,
        setup=setup,
    )
    # An empty cache every time: ours removes its cache first; MLflow downloads to a fresh
    # temporary directory on every load anyway.
    cold = Scenario(
        name="load_alias_cold",
        description="fresh process, empty cache: load_model('rf@prod') + predict vs MLflow",
        ours=cmd(
            "import shutil; shutil.rmtree('cold-cache', ignore_errors=True); "
            "os.environ['REGISTRY_SDK_CACHE_DIR'] = os.path.abspath('cold-cache'); "
            f"import registry_sdk as rs; {_X}; rs.load_model('rf@prod').predict(X)"
        ),
        baseline=cmd(
            f"import mlflow.pyfunc; {_X}; mlflow.pyfunc.load_model('models:/rf@prod').predict(X)"
        ),
        target_ratio=0.9,
        repeat=max(3, repeat // 3),
        warmup=1,
        setup=setup,
    )
    native = Scenario(
        name="load_native_vs_unpickle",
        description="load_model('rf@prod', flavor='native') + predict vs bare unpickle + predict",
        ours=cmd(
            f"import registry_sdk as rs; {_X}; rs.load_model('rf@prod', flavor='native').predict(X)"
        ),
        baseline=cmd(
            f"import pickle, glob; {_X}; "
            "f = glob.glob('cache/*/rf/versions/*/fast/native.pkl')[0]; "
            "pickle.load(open(f, 'rb')).predict(X)"
        ),
        target_ratio=1.3,
        repeat=repeat,
        warmup=1,
        setup=setup,
    )
    registry_bin = str(Path(PY).parent / "registry")
    cli = Scenario(
        name="cli_versions_json",
        description="`registry versions rf --json` vs a python -c listing them with MlflowClient",
        ours=[
            "sh",
            "-c",
            f'MLFLOW_TRACKING_URI="$(cat uri)" exec {registry_bin} versions rf --json',
        ],
        baseline=cmd(
            "import json; from mlflow import MlflowClient; "
            "print(json.dumps([dict(v) for v in "
            "MlflowClient().search_model_versions(\"name = 'rf'\")], default=str))"
        ),
        target_ratio=0.2,
        repeat=repeat,
        warmup=1,
        setup=setup,
        teardown=_RfServer.stop,
    )
    return [pyfunc, cold, native, cli]


def _outage_setup(workdir: Path) -> None:
    """A server with rf@prod, a cache filled from it, then the server stopped: refused."""
    root = workdir / "server"
    root.mkdir(parents=True, exist_ok=True)
    server = MlflowServer("outage", f"sqlite:///{root / 'mlflow.db'}", root).start()
    try:
        subprocess.run(
            [PY, str(JOBS / "setup_rf_server.py"), server.uri],
            check=True,
            capture_output=True,
            cwd=root,
        )
        (workdir / "uri").write_text(server.uri)
        subprocess.run(
            [
                PY,
                "-c",
                (
                    "import os, registry_sdk as rs; "
                    "os.environ['MLFLOW_TRACKING_URI'] = open('uri').read(); "
                    "os.environ['REGISTRY_SDK_CACHE_DIR'] = os.path.abspath('cache'); "
                    "rs.load_model('rf@prod')"
                ),
            ],
            check=True,
            capture_output=True,
            cwd=workdir,
        )
    finally:
        server.stop()


def _outage_scenarios(repeat: int) -> list[Scenario]:
    """Time to fall back with the server stopped, default settings (absolute targets)."""
    job = str(JOBS / "outage.py")
    first = True

    def scenario(name: str, description: str, mode: str, target: float) -> Scenario:
        nonlocal first
        setup, first = (_outage_setup if first else _reuse_outage_setup), False
        return Scenario(
            name=name,
            description=description,
            ours=[PY, job, mode],
            baseline=None,
            target_seconds=target,
            repeat=max(3, repeat // 3),
            warmup=0,
            setup=setup,
            env={"MLFLOW_TRACKING_URI": "", "REGISTRY_SDK_CACHE_DIR": ""},
            metric="seconds",
        )

    return [
        scenario(
            "outage_cached_alias",
            "server down: load_model('rf@prod') falls back to the cached resolution (s)",
            "cached-alias",
            1.0,
        ),
        scenario(
            "outage_uncached_load",
            "server down: load_model of an uncached version raises RegistryUnavailableError (s)",
            "uncached",
            2.0,
        ),
        scenario(
            "outage_register",
            "server down: @register puts the model in the outbox, beyond training (s)",
            "register",
            2.0,
        ),
    ]


def _reuse_outage_setup(workdir: Path) -> None:
    """Share the first outage scenario's stopped server (the others need no cached model)."""
    source = workdir.parent / "outage_cached_alias"
    (workdir / "uri").write_text((source / "uri").read_text())


def cleanup() -> None:
    """Stop what scenarios started and left running (``--only`` may skip their teardown)."""
    _RfServer.stop(Path())


def all_scenarios(repeat: int) -> list[Scenario]:
    """Every scenario, in report order."""
    return [
        import_scenario(repeat),
        register_scenario(repeat),
        *_load_scenarios(repeat),
        *_outage_scenarios(repeat),
    ]

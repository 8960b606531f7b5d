"""The benchmark scenarios: each one is registry_sdk beside plain MLflow doing the same job.

Every process a scenario starts imports ``registry_sdk`` from this source tree (``SOURCE`` first
on ``PYTHONPATH``), whatever copy the interpreter has installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness import Scenario

if TYPE_CHECKING:
    from collections.abc import Callable

PY = sys.executable
JOBS = Path(__file__).parent / "jobs"
#: The source tree under test: its ``registry_sdk`` is the one every timed process imports.
SOURCE = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

# The integration suite's server fixture code.
from _production import ProductionStack, production_stack  # noqa: E402
from _proxy import CountingProxy  # noqa: E402
from _servers import MlflowServer  # noqa: E402


def source_env() -> dict[str, str]:
    """``PYTHONPATH`` with :data:`SOURCE` first, for every process the benchmarks start."""
    rest = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join([str(SOURCE), rest] if rest else [str(SOURCE)])}


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


class _LazyServer:
    """An mlflow server on loopback over SQLite, started when first needed; one per run.

    ``seed``: a job run once against it (with its URI) when it starts.
    """

    name = "server"
    seed: str | None = None
    server: MlflowServer | None = None

    @classmethod
    def uri(cls, workdir: Path) -> str:
        if cls.server is None:
            root = workdir.parent / f"{cls.name}-server"
            root.mkdir(parents=True, exist_ok=True)
            server = MlflowServer(cls.name, f"sqlite:///{root / 'mlflow.db'}", root)
            cls.server = server.start()
            if cls.seed is not None:
                subprocess.run(
                    [PY, str(JOBS / cls.seed), server.uri],
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


class _RfServer(_LazyServer):
    """The load scenarios' server, with rf@prod registered by plain MLflow."""

    name = "rf"
    seed = "setup_rf_server.py"


class _RfProxy:
    """A :class:`CountingProxy` in front of :class:`_RfServer`; its URI is the scenario's."""

    proxy: CountingProxy | None = None

    @classmethod
    def setup(cls, workdir: Path) -> None:
        upstream = _RfServer.uri(workdir)
        if cls.proxy is None:
            cls.proxy = CountingProxy(upstream).start()
        (workdir / "uri").write_text(cls.proxy.uri)

    @classmethod
    def drain(cls) -> int:
        """Requests seen since the previous call (the process that sent them has exited)."""
        assert cls.proxy is not None
        count = len(cls.proxy.seen)
        cls.proxy.clear()
        return count

    @classmethod
    def stop(cls, _workdir: Path) -> None:
        if cls.proxy is not None:
            cls.proxy.stop()
            cls.proxy = None


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
    # The same cold load, both sides through a counting proxy in front of the same server: how
    # many HTTP requests each process sends (the proxy reads each reply whole before passing it
    # on, so these times are not those of load_alias_cold).
    cold_requests = dataclasses.replace(
        cold,
        name="load_alias_cold_requests",
        description=(
            "load_alias_cold through a counting proxy: HTTP requests per process, ours < MLflow"
        ),
        setup=_RfProxy.setup,
        teardown=_RfProxy.stop,
        count_requests=_RfProxy.drain,
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
    return [pyfunc, cold, cold_requests, native, cli]


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
            env={**os.environ, **source_env()},
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


# ------------------------------------------------------------------------------ flavors


class _FlavorServer(_LazyServer):
    """The flavor scenarios' server; each registers its own model (``setup_flavor_models.py``)."""

    name = "flavors"


#: No Hugging Face hub: the pipeline is built from a local vocabulary and random weights.
_OFFLINE_HUB = {"HF_HUB_OFFLINE": "1"}
_TORCH_X = "import numpy as np; X = np.random.RandomState(1).rand(8, 4).astype(np.float32)"
_TEXTS = "X = ['good movie', 'bad plot', 'great actor', 'boring story']"


def _flavor_scenarios(repeat: int) -> list[Scenario]:
    """load_model from a warm cache vs MLflow, for a PyTorch module and a transformers pipeline.

    Each model is registered once with ``@register`` and loaded once by ``load_model`` in
    setup, which fills the cache (and, for PyTorch, writes the fast-load form the timed loads
    use; a transformers pipeline has none: MLflow's own loader runs on the cached files).
    """

    def setup(kind: str, env: dict[str, str]) -> Callable[[Path], None]:
        def run(workdir: Path) -> None:
            uri = _FlavorServer.uri(workdir)
            (workdir / "uri").write_text(uri)
            subprocess.run(
                [PY, str(JOBS / "setup_flavor_models.py"), kind, uri, str(workdir / "cache")],
                check=True,
                capture_output=True,
                text=True,
                cwd=workdir,
                env={**os.environ, **source_env(), **env},
            )

        return run

    def cmd(code: str) -> list[str]:
        # As load_alias_warm's: the URI is only known once the server runs.
        prelude = (
            "import os; os.environ['MLFLOW_TRACKING_URI'] = open('uri').read(); "
            "os.environ['REGISTRY_SDK_CACHE_DIR'] = os.path.abspath('cache'); "
        )
        return [PY, "-c", prelude + code]

    def scenario(
        name: str,
        model: str,
        data: str,
        what: str,
        setup: Callable[[Path], None],
        teardown: Callable[[Path], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> Scenario:
        load = f"load_model('{model}@prod')"
        return Scenario(
            name=name,
            description=f"fresh process, warm cache: {load} + predict vs MLflow, {what}",
            ours=cmd(f"import registry_sdk as rs; {data}; rs.{load}.predict(X)"),
            baseline=cmd(
                f"import mlflow.pyfunc; {data}; "
                f"mlflow.pyfunc.load_model('models:/{model}@prod').predict(X)"
            ),
            target_ratio=1.0,
            repeat=repeat,
            warmup=1,
            setup=setup,
            teardown=teardown,
            env=env or {},
        )

    return [
        scenario(
            "load_torch_warm",
            "torchnet",
            _TORCH_X,
            "torch.nn.Module 4->8->2 on 8x4 float32",
            setup=setup("torch", {}),
        ),
        scenario(
            "load_transformers_warm",
            "textclf",
            _TEXTS,
            "text-classification pipeline (1-layer BERT) on 4 sentences",
            setup=setup("transformers", _OFFLINE_HUB),
            teardown=_FlavorServer.stop,
            env=_OFFLINE_HUB,
        ),
    ]


# ------------------------------------------------------------------------------ signing


def _signing_scenarios(repeat: int) -> list[Scenario]:
    """The cost of verifying a signature: cold (first load) and warm, vs the same load unverified.

    ``signedrf@prod``, a RandomForest(200) signed at registration on the load scenarios'
    server (``jobs/setup_signed_model.py``). Both sides are registry_sdk: with
    ``verify=signing.pub`` and without.
    """

    def setup(workdir: Path) -> None:
        uri = _RfServer.uri(workdir)
        (workdir / "uri").write_text(uri)
        subprocess.run(
            [PY, str(JOBS / "setup_signed_model.py"), uri],
            check=True,
            capture_output=True,
            text=True,
            cwd=workdir,
            env={**os.environ, **source_env()},
        )

    def load(cache: str, verify: str | None, *, fresh: bool) -> list[str]:
        clear = f"import shutil; shutil.rmtree({cache!r}, ignore_errors=True); " if fresh else ""
        key = repr(verify)
        code = (
            f"{clear}import os, registry_sdk as rs; {_X}; "
            f"folder = os.path.abspath({cache!r}); "
            "client = rs.RegistryClient(open('uri').read(), cache_dir=folder); "
            f"rs.load_model('signedrf@prod', client=client, verify={key}).predict(X)"
        )
        return [PY, "-c", code]

    return [
        Scenario(
            name="verify_signature_cold",
            description="fresh process, empty cache: load_model('signedrf@prod', "
            "verify=signing.pub) + predict vs the same load without verify",
            ours=load("cold-verified", "signing.pub", fresh=True),
            baseline=load("cold-plain", None, fresh=True),
            target_ratio=1.5,
            repeat=max(3, repeat // 3),
            warmup=1,
            setup=setup,
        ),
        Scenario(
            name="verify_signature_warm",
            description="fresh process, warm cache (verified once): load_model('signedrf@prod', "
            "verify=signing.pub) + predict vs the same load without verify",
            ours=load("warm-verified", "signing.pub", fresh=False),
            baseline=load("warm-plain", None, fresh=False),
            target_ratio=1.05,
            repeat=repeat,
            warmup=1,
            setup=setup,
        ),
    ]


# ------------------------------------------------------------------------------ big transfers

Store = Literal["local", "s3"]


class _BigStores:
    """The two servers of the big-transfer scenarios, each started once per run when first needed.

    ``local``: ``mlflow server`` over SQLite, artifacts proxied to a local directory.
    Both servers run MLflow's default four workers.
    ``s3``: the production shape, PostgreSQL and artifacts proxied to S3 on a moto server.
    Both get ``big`` (one 1 GiB file) and ``many`` (300 x 100 KiB), alias ``prod``, registered
    by plain MLflow (``jobs/setup_big_models.py``).
    """

    uris: dict[str, str] = {}  # noqa: RUF012 - one registry of servers per run
    models: dict[str, str] = {}  # noqa: RUF012 - what setup_big_models.py printed, per store
    local: MlflowServer | None = None
    s3: contextlib.ExitStack | None = None

    @classmethod
    def prepare(cls, store: Store, workdir: Path) -> None:
        """Start ``store``'s server if needed; write its ``uri`` and ``models.json`` in workdir."""
        if store not in cls.uris:
            root = workdir.parent / f"big-{store}-server"
            root.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, **source_env()}
            if store == "local":
                # MLflow's default --workers (4), as the S3 stack has.
                cls.local = MlflowServer(
                    "big-local", f"sqlite:///{root / 'mlflow.db'}", root, workers=4
                ).start()
                uri = cls.local.uri
            else:
                cls.s3 = contextlib.ExitStack()
                stack: ProductionStack = cls.s3.enter_context(production_stack(root))
                uri = stack.uri
                # Uploads straight to the store: the setup is not what is measured.
                env["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] = "true"
            done = subprocess.run(
                [PY, str(JOBS / "setup_big_models.py"), uri, str(root / "scratch")],
                check=True,
                capture_output=True,
                text=True,
                cwd=root,
                env=env,
            )
            cls.models[store] = done.stdout.strip().splitlines()[-1]
            cls.uris[store] = uri
        (workdir / "uri").write_text(cls.uris[store])
        (workdir / "models.json").write_text(cls.models[store])

    @classmethod
    def stop(cls, store: Store) -> None:
        """Stop ``store``'s server (and drop its database and bucket); idempotent."""
        cls.uris.pop(store, None)
        cls.models.pop(store, None)
        if store == "local" and cls.local is not None:
            cls.local.stop()
            cls.local = None
        if store == "s3" and cls.s3 is not None:
            cls.s3.close()
            cls.s3 = None


def _empty_out(workdir: Path) -> None:
    """Remove the previous download, so that no 1 GiB copy piles up and each starts empty."""
    shutil.rmtree(workdir / "out", ignore_errors=True)


def _big_scenarios(repeat: int) -> list[Scenario]:
    """1 GiB and 300 x 100 KiB downloads on a local artifact directory and on S3."""
    job = str(JOBS / "transfer.py")
    big_repeat = min(repeat, 3)

    def scenario(
        name: str,
        description: str,
        store: Store,
        ours: list[str],
        baseline: list[str],
        target: float,
        *,
        last_on_store: bool = False,
        repeat: int = big_repeat,
        warmup: int = 1,
        max_rss_mb: float | None = None,
        env: dict[str, str] | None = None,
    ) -> Scenario:
        def setup(workdir: Path) -> None:
            _BigStores.prepare(store, workdir)

        def teardown(workdir: Path) -> None:
            _empty_out(workdir)
            if last_on_store:
                _BigStores.stop(store)

        return Scenario(
            name=name,
            description=description,
            ours=[PY, job, *ours],
            baseline=[PY, job, *baseline],
            target_ratio=target,
            setup=setup,
            teardown=teardown,
            before_each=_empty_out,
            repeat=repeat,
            warmup=warmup,
            max_rss_mb=max_rss_mb,
            env=env or {},
        )

    pull = "RegistryClient.pull('{m}@prod') into an empty cache"
    mlflow_dl = "mlflow.artifacts.download_artifacts('models:/{m}@prod')"
    default_local = (
        "MLflow's default: MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD unset, so it asks the "
        "server's /server-info, and a local directory offers no presigned URLs: proxied"
    )
    default_s3 = (
        "MLflow's default: MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD unset, so it asks the "
        "server's /server-info, which offers presigned URLs over S3: every file comes "
        "straight from the store, those of 500 MiB or more in 100 MiB ranges"
    )
    return [
        scenario(
            "big_file_local_vs_mlflow",
            f"1 GiB file, local artifact dir: {pull.format(m='big')} vs "
            f"{mlflow_dl.format(m='big')} ({default_local})",
            "local",
            ["ours", "big"],
            ["mlflow", "big"],
            1.0,
        ),
        scenario(
            "big_file_local_vs_raw_get",
            f"1 GiB file, local artifact dir: {pull.format(m='big')} vs one streamed GET of "
            "the file through the server's artifact proxy (requests, 1 MiB chunks)",
            "local",
            ["ours", "big"],
            ["raw-get", "big"],
            1.2,
        ),
        scenario(
            "many_files_local",
            f"300 x 100 KiB, local artifact dir: {pull.format(m='many')} vs "
            f"{mlflow_dl.format(m='many')} ({default_local})",
            "local",
            ["ours", "many"],
            ["mlflow", "many"],
            0.5,
            last_on_store=True,
        ),
        scenario(
            "big_file_s3_vs_mlflow",
            f"1 GiB file, S3 (moto) behind PostgreSQL server: {pull.format(m='big')} vs "
            f"{mlflow_dl.format(m='big')} ({default_s3})",
            "s3",
            ["ours", "big"],
            ["mlflow", "big"],
            1.0,
        ),
        scenario(
            "big_file_s3_vs_presigned",
            f"1 GiB file, S3 (moto): {pull.format(m='big')} vs the limit, one streamed GET of "
            "the presigned URL the server hands out, straight from the store (1 MiB chunks)",
            "s3",
            ["ours", "big"],
            ["presigned", "big"],
            2.0,
            max_rss_mb=150.0,
        ),
        scenario(
            "many_files_s3",
            f"300 x 100 KiB, S3 (moto): {pull.format(m='many')} vs "
            f"{mlflow_dl.format(m='many')} ({default_s3})",
            "s3",
            ["ours", "many"],
            ["mlflow", "many"],
            0.5,
        ),
        # Last: each side takes minutes (the server copies the whole object from the store
        # before it answers; moto reads the whole object for every ranged GET), so one sample.
        scenario(
            "big_file_s3_proxied",
            "1 GiB file, S3 (moto), direct path off (REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES=0): "
            f"{pull.format(m='big')} through the server, default timeouts, vs one streamed GET "
            "of the file through the server's artifact proxy",
            "s3",
            ["ours", "big"],
            ["raw-get", "big"],
            1.2,
            last_on_store=True,
            repeat=1,
            warmup=0,
            env={"REGISTRY_SDK_DIRECT_DOWNLOAD_MIN_BYTES": "0"},
        ),
    ]


def cleanup() -> None:
    """Stop what scenarios started and left running (``--only`` may skip their teardown)."""
    _RfProxy.stop(Path())
    _RfServer.stop(Path())
    _FlavorServer.stop(Path())
    _BigStores.stop("local")
    _BigStores.stop("s3")


def all_scenarios(repeat: int) -> list[Scenario]:
    """Every scenario, in report order, each process importing registry_sdk from SOURCE."""
    scenarios = [
        import_scenario(repeat),
        register_scenario(repeat),
        *_load_scenarios(repeat),
        *_flavor_scenarios(repeat),
        *_signing_scenarios(repeat),
        *_outage_scenarios(repeat),
        *_big_scenarios(repeat),
    ]
    return [dataclasses.replace(s, env={**source_env(), **s.env}) for s in scenarios]

"""Load on the production shape: concurrent ``@register`` writers and ``load_model`` readers.

The server is what DESIGN.md calls production: ``mlflow server`` over PostgreSQL, artifacts
proxied to an S3-compatible store (moto), ``--workers 4`` (see ``_production.py``).

8 writer processes each register 20 versions of one model with ``@rs.register`` (a tiny
scikit-learn model that predicts its own ``ident`` everywhere; every registration moves the
``prod`` alias), while 8 reader processes each load ``<model>@prod`` 200 times with
``rs.load_model`` through one shared cache directory and predict with it. Each loaded model
must predict exactly the ``ident`` its version's metrics name: a model that is partial, or
another version's, fails.

The counts come from environment variables (defaults are what CI runs)::

    REGISTRY_SDK_LOAD_WRITERS=8  REGISTRY_SDK_LOAD_REGISTRATIONS=20
    REGISTRY_SDK_LOAD_READERS=8  REGISTRY_SDK_LOAD_LOADS=200
    REGISTRY_SDK_LOAD_TIMEOUT=2400   (pytest-timeout for the test, seconds)

The test prints its figures (counts, errors, durations); set ``REGISTRY_SDK_LOAD_REPORT`` to a
path to also get them as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import registry_sdk as rs
from registry_sdk import _tags

if TYPE_CHECKING:
    from _production import ProductionStack

#: Fixtures ``production`` and ``auth_server``; helpers are imported from it inside the tests
#: (a module that is a plugin must not be imported before pytest loads it).
pytest_plugins = ["_production"]

WRITERS = int(os.environ.get("REGISTRY_SDK_LOAD_WRITERS", "8"))
REGISTRATIONS = int(os.environ.get("REGISTRY_SDK_LOAD_REGISTRATIONS", "20"))
READERS = int(os.environ.get("REGISTRY_SDK_LOAD_READERS", "8"))
LOADS = int(os.environ.get("REGISTRY_SDK_LOAD_LOADS", "200"))
TIMEOUT = int(os.environ.get("REGISTRY_SDK_LOAD_TIMEOUT", "2400"))

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(TIMEOUT)]


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 3),
        "max_s": round(ordered[-1], 3),
    }


def _seed(production: ProductionStack, name: str, cache: Path) -> rs.ModelVersion:
    """The first version, so that ``name@prod`` exists before any reader starts."""
    from _production import make_trainer, training_data

    X, y = training_data()
    with rs.RegistryClient(production.uri, cache_dir=cache, timeout=60, max_retries=3) as client:
        train = make_trainer(name, client)
        train(X, y, -1)
    assert train.last_version is not None
    return train.last_version


def _run_workers(production: ProductionStack, name: str, tmp_path: Path) -> dict[str, Any]:
    """Start every writer and reader at once; wait for all; always stop all."""
    from _production import spawn_worker, stop_workers, wait_all, worker_env

    reader_env = worker_env(
        MLFLOW_TRACKING_URI=production.uri,
        REGISTRY_SDK_CACHE_DIR=str(tmp_path / "reader-cache"),
        REGISTRY_SDK_TIMEOUT="60",
        REGISTRY_SDK_MAX_RETRIES="5",
    )
    workers = []
    started = time.perf_counter()
    try:
        for i in range(WRITERS):
            cache = str(tmp_path / f"writer-cache-{i}")
            args = [production.uri, cache, name, str(REGISTRATIONS), str(i + 1)]
            workers.append(spawn_worker("writer", i, args, tmp_path, worker_env()))
        workers.extend(
            spawn_worker("reader", i, [f"{name}@prod", str(LOADS)], tmp_path, reader_env)
            for i in range(READERS)
        )
        wait_all(workers)
    finally:
        stop_workers(workers)
    wall = time.perf_counter() - started
    reports = {(w.role, w.index): w.result() for w in workers}
    fatal = [r["fatal"] for r in reports.values() if "fatal" in r]
    assert not fatal, "\n".join(fatal)
    assert all(w.process.returncode == 0 for w in workers)
    return {
        "wall": wall,
        "writes": [
            r for (role, _), rep in reports.items() if role == "writer" for r in rep["results"]
        ],
        "loads": [
            r for (role, _), rep in reports.items() if role == "reader" for r in rep["results"]
        ],
    }


def test_writers_and_readers_on_the_production_shape(production, tmp_path):
    name = f"load-{uuid.uuid4().hex[:8]}"
    seed = _seed(production, name, tmp_path / "seed-cache")
    run = _run_workers(production, name, tmp_path)
    wall, writes, loads = run["wall"], run["writes"], run["loads"]

    with rs.RegistryClient(
        production.uri, cache_dir=tmp_path / "check-cache", timeout=60, max_retries=3
    ) as client:
        versions = list(client.search_versions(name))
        events = [e for e in client.history(name, alias="prod") if not e.external]
        final = client.get_model(name).aliases.get("prod")

    write_errors = [w["error"] for w in writes if "error" in w]
    load_errors = [r["error"] for r in loads if "error" in r]
    incomplete = [r["detail"] for r in loads if "error" not in r and not r["ok"]]
    figures = {
        "shape": {
            "backend": "PostgreSQL",
            "artifacts": "S3 (moto)",
            "workers": production.server.workers,
        },
        "writers": WRITERS,
        "registrations_per_writer": REGISTRATIONS,
        "readers": READERS,
        "loads_per_reader": LOADS,
        "registrations": len(writes),
        "registration_errors": len(write_errors),
        "loads": len(loads),
        "load_errors": len(load_errors),
        "incomplete_or_wrong_models": len(incomplete),
        "versions_on_server": len(versions),
        "distinct_idempotency_keys": len({v.tags.get(_tags.IDEMPOTENCY_KEY) for v in versions}),
        "alias_moves_logged": len(events),
        "distinct_versions_loaded": len({r["version"] for r in loads if "version" in r}),
        "registration": _quantiles([w["seconds"] for w in writes if "seconds" in w]),
        "load": _quantiles([r["seconds"] for r in loads if "seconds" in r]),
        "wall_s": round(wall, 1),
        "s3_objects": len(production.s3_keys()),
    }
    print(f"\nproduction load figures: {json.dumps(figures, indent=1)}")
    if os.environ.get("REGISTRY_SDK_LOAD_REPORT"):
        Path(os.environ["REGISTRY_SDK_LOAD_REPORT"]).write_text(
            json.dumps(figures, indent=1), encoding="utf-8"
        )

    # Zero errors, every load a whole model of the version the registry named.
    assert not write_errors, write_errors[:5]
    assert not load_errors, load_errors[:5]
    assert not incomplete, incomplete[:5]
    assert len(loads) == READERS * LOADS

    # One distinct version per registration (plus the seed), each key once.
    expected = WRITERS * REGISTRATIONS
    registered = [w["version"] for w in writes]
    assert len(registered) == expected
    assert len(set(registered)) == expected
    assert seed.version not in registered
    assert sorted(v.version for v in versions) == sorted([*registered, seed.version])
    keys = [v.tags.get(_tags.IDEMPOTENCY_KEY) for v in versions]
    assert None not in keys
    assert len(set(keys)) == len(keys) == expected + 1
    assert {w["key"] for w in writes} <= set(keys)
    idents = sorted(v.metrics["ident"] for v in versions)
    wanted = [-1.0] + [
        float(w * 1000 + i) for w in range(1, WRITERS + 1) for i in range(REGISTRATIONS)
    ]
    assert idents == sorted(wanted)

    # Every alias move is in the log, none overwritten; the alias ends on a registered version.
    assert len(events) == expected + 1
    assert final in registered

    # The artifacts went to the S3-compatible store, through the server.
    assert figures["s3_objects"] >= expected + 1

"""Export, import and copy between real registries: lossless, verified, exactly once.

One source registry (embedded SQLite) is built once for the module with ``@rs.register``, so
its versions have real artifacts, runs, params, metrics and lineage tags; its aliases have a
history (registrations, a promotion, a manual move, a rollback, an alias set then deleted).
The tests move it to ``mlflow server`` over PostgreSQL and over SQLite, and to fresh embedded
registries, and compare what each registry holds through vanilla MLflow, never registry_sdk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import mlflow
import mlflow.artifacts
import numpy as np
import pytest
from _client_version import artifact_paths, download_artifacts, no_files_under
from _servers import migrated_sqlite_db
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.tracking import fluent
from sklearn.linear_model import LogisticRegression, Ridge

import registry_sdk as rs
from registry_sdk import _tags, lifecycle
from registry_sdk.cli import cli
from registry_sdk.errors import RegistryError
from registry_sdk.transfer import ExportIntegrityError, ImportReport

# Only so that a hung server or child fails the test instead of hanging it: the first test also
# trains the source registry and starts the PostgreSQL-backed server. Nothing is timed.
pytestmark = pytest.mark.timeout(600)

SCRIPTS = Path(__file__).parent / "scripts"
IMPORT_UNTIL = SCRIPTS / "transfer_import_until.py"
PREDICT = SCRIPTS / "transfer_predict.py"
REGISTRY_CLI = Path(sys.executable).parent / "registry"
#: Only so that a hung child fails the test instead of hanging it; nothing is timed.
SUBPROCESS_TIMEOUT = 300

IMPORTED_FROM = _tags.PREFIX + "imported_from"
ALIAS_LOG = _tags.ALIAS_LOG_PREFIX
LINEAGE_PREFIXES = ("registry_sdk.git.", "registry_sdk.code.", "registry_sdk.env.")

RNG = np.random.default_rng(7)
X_TRAIN = RNG.normal(size=(40, 3))
Y_VALUE = X_TRAIN @ np.array([1.5, -2.0, 0.5]) + 0.1 * RNG.normal(size=40)
Y_CLASS = (X_TRAIN[:, 0] + X_TRAIN[:, 1] > 0).astype(int)
X_TEST = RNG.normal(size=(8, 3))


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No MLFLOW_* / REGISTRY_SDK_* variable leaks in; ./mlruns lands in tmp; MLflow restored."""
    clean_environment(monkeypatch)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    yield
    mlflow.set_tracking_uri(previous)


def clean_environment(patch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            patch.delenv(key)


def unique(label: str) -> str:
    return f"xf-{label}-{uuid.uuid4().hex[:8]}"


def make_client(uri: str, cache_dir: Path) -> rs.RegistryClient:
    return rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=cache_dir, offline=False, timeout=30, max_retries=1
    )


# ============================================================================ training


def train_ridge(X, y, alpha: float = 1.0):
    model = Ridge(alpha=alpha).fit(X, y)
    rs.log_metric("r2", model.score(X, y))
    return model, {"alpha_metric": alpha}


def train_classifier(X, y, C: float = 1.0):
    model = LogisticRegression(C=C).fit(X, y)
    return model, {"accuracy": model.score(X, y)}


@attrs.define
class Source:
    """The source registry and what was trained into it."""

    client: rs.RegistryClient
    uri: str
    ridge: str  # three versions, aliases with a history, a stage, descriptions, tags
    classifier: str  # one version, alias prod
    empty: str  # no versions: description and tags only
    copied: str  # not exported: two versions, staging -> 2; for copy
    export: Path
    trained: dict[tuple[str, int], Any]  # (name, version) -> the model object training returned

    @property
    def exported(self) -> list[str]:
        return [self.ridge, self.classifier, self.empty]

    def predictions(self, name: str, alias: str) -> np.ndarray:
        version = self.client.get_model(name).aliases[alias]
        return np.asarray(self.trained[name, version].predict(X_TEST))


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store with MLflow's schema; copied for each fresh embedded registry."""
    return migrated_sqlite_db(tmp_path_factory.mktemp("template") / "template.db")


@pytest.fixture
def fresh_registry(tmp_path: Path, template_db: Path):
    """``fresh_registry(label)``: the URI of a new, empty embedded SQLite registry in tmp."""

    def make(label: str) -> str:
        path = tmp_path / f"{label}.db"
        shutil.copyfile(template_db, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, template_db: Path):
    workdir = tmp_path_factory.mktemp("source")
    shutil.copyfile(template_db, workdir / "source.db")
    uri = f"sqlite:///{workdir / 'source.db'}"
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    with pytest.MonkeyPatch.context() as patch:
        clean_environment(patch)
        patch.chdir(workdir)
        patch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
        experiment_id = mlflow.MlflowClient(tracking_uri=uri).create_experiment(
            unique("training"), artifact_location=(workdir / "artifacts").as_uri()
        )
        patch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        client = make_client(uri, workdir / "cache")
        built = build_source(client, uri, workdir)
    mlflow.set_tracking_uri(previous)
    try:
        yield built
    finally:
        client.close()


def build_source(client: rs.RegistryClient, uri: str, workdir: Path) -> Source:
    ridge, classifier, empty, copied = (
        unique(label) for label in ("ridge", "classifier", "empty", "copied")
    )
    trained: dict[tuple[str, int], Any] = {}

    train = rs.register(
        ridge, alias="staging", client=client, description="ridge", tags={"team": "search"}
    )(train_ridge)
    for alpha in (0.1, 1.0, 10.0):
        model, _ = train(X_TRAIN, Y_VALUE, alpha=alpha)
        assert train.last_version is not None
        trained[ridge, train.last_version.version] = model
    client.promote(f"{ridge}/2", to="prod", reason="passed review")
    client.set_alias(ridge, "prod", 3, reason="hotfix")
    client.rollback(ridge, "prod", reason="latency regression")
    client.set_alias(ridge, "canary", 1, reason="shadow traffic")
    client.delete_alias(ridge, "canary", reason="shadow done")
    client.update_model(ridge, description="Ridge regression on a toy problem")
    client.set_tag(ridge, "owner", "search-team")
    client.update_version(f"{ridge}/1", description="the baseline")
    client.set_tag(f"{ridge}/2", "reviewed", "yes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow deprecates stages; exports still carry them
        client.transition_stage(f"{ridge}/1", "Archived")

    train = rs.register(classifier, alias="prod", client=client)(train_classifier)
    model, _ = train(X_TRAIN, Y_CLASS, C=0.5)
    assert train.last_version is not None
    trained[classifier, train.last_version.version] = model
    client.set_tag(classifier, "kind", "classifier")

    client.create_model(empty, description="nothing trained yet", tags={"status": "planned"})

    train = rs.register(copied, alias="staging", client=client)(train_ridge)
    for alpha in (0.5, 5.0):
        model, _ = train(X_TRAIN, Y_VALUE, alpha=alpha)
        assert train.last_version is not None
        trained[copied, train.last_version.version] = model

    model = client.get_model(ridge)
    assert dict(model.aliases) == {"staging": 3, "prod": 2}
    assert len([k for k in model.tags if k.startswith(ALIAS_LOG)]) == 8
    export = client.export([ridge, classifier, empty], to=workdir / "export")
    return Source(client, uri, ridge, classifier, empty, copied, export, trained)


@pytest.fixture(scope="module")
def on_postgres(source: Source, mlflow_server_postgres, tmp_path_factory):
    """The source's export imported into ``mlflow server`` over PostgreSQL: (client, report)."""
    cache = tmp_path_factory.mktemp("postgres-client")
    with make_client(mlflow_server_postgres.uri, cache) as client:
        report = client.import_(source.export)
        yield client, report


# ============================================================================ snapshots


def sha256_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def artifact_hashes(vanilla: mlflow.MlflowClient, uri: str, name: str, version: str) -> dict:
    """sha256 of every file of a version, downloaded the vanilla MLflow way."""
    location = vanilla.get_model_version_download_uri(name, version)
    dest = Path.cwd() / "downloads" / uuid.uuid4().hex
    dest.mkdir(parents=True)
    local = download_artifacts(location, dest, uri)
    hashes = sha256_tree(local)
    assert "MLmodel" in hashes, (name, version, location, hashes)
    return hashes


def snapshot(uri: str, names: list[str]) -> dict[str, Any]:
    """What a registry holds of ``names``, as vanilla MLflow sees it, in a comparable dict.

    Provenance (``registry_sdk.imported_from``) is left out; alias log entries are parsed. An
    unset description reads as ``""`` through a server and as None from an embedded store: both
    become None.
    """
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    out: dict[str, Any] = {}
    for name in names:
        model = vanilla.get_registered_model(name)
        versions = {}
        for found in vanilla.search_model_versions(f"name = '{name}'"):
            mv = vanilla.get_model_version(name, found.version)
            run = vanilla.get_run(mv.run_id) if mv.run_id else None
            versions[int(mv.version)] = {
                "tags": {k: v for k, v in mv.tags.items() if k != IMPORTED_FROM},
                "description": mv.description or None,
                "stage": mv.current_stage,
                "metrics": {
                    k.removeprefix(_tags.METRICS_PREFIX): float(v)
                    for k, v in mv.tags.items()
                    if k.startswith(_tags.METRICS_PREFIX)
                },
                "run_params": None if run is None else dict(run.data.params),
                "run_metrics": None if run is None else dict(run.data.metrics),
                "artifacts": artifact_hashes(vanilla, uri, name, mv.version),
            }
        out[name] = {
            "description": model.description or None,
            "tags": {
                k: json.loads(v) if k.startswith(ALIAS_LOG) else v for k, v in model.tags.items()
            },
            "aliases": {alias: int(v) for alias, v in model.aliases.items()},
            "versions": versions,
        }
    return out


def mapping_of(report: ImportReport) -> dict[str, dict[int, int]]:
    """``{model: {source version: target version}}`` from an import report."""
    mapping: dict[str, dict[int, int]] = {}
    for source_ref, target_ref in {**report.created, **report.existing}.items():
        name, _, old = source_ref.rpartition("/")
        target_name, _, new = target_ref.rpartition("/")
        assert target_name == name
        mapping.setdefault(name, {})[int(old)] = int(new)
    return mapping


def translate(snap: dict[str, Any], mapping: dict[str, dict[int, int]]) -> dict[str, Any]:
    """``snap`` with each version number replaced by the one it was imported as."""
    out = {}
    for name, model in snap.items():
        numbers = mapping.get(name, {})

        def new(version, numbers=numbers):
            return None if version is None else numbers[version]

        tags = {}
        for key, value in model["tags"].items():
            if key.startswith(ALIAS_LOG):
                tags[key] = value | {"from": new(value["from"]), "to": new(value["to"])}
            else:
                tags[key] = value
        out[name] = model | {
            "tags": tags,
            "aliases": {alias: new(v) for alias, v in model["aliases"].items()},
            "versions": {new(n): data for n, data in model["versions"].items()},
        }
    return out


def provenance(uri: str, name: str) -> list[dict[str, Any]]:
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = vanilla.search_model_versions(f"name = '{name}'")
    return [
        json.loads(vanilla.get_model_version(name, mv.version).tags[IMPORTED_FROM]) for mv in found
    ]


def raw_model_tags(uri: str, name: str) -> dict[str, str]:
    return dict(
        mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(name).tags
    )


def moves(client: rs.RegistryClient, name: str) -> list[dict[str, Any]]:
    return [event.to_dict() for event in client.history(name)]


def rollback_target(client: rs.RegistryClient, name: str, alias: str) -> int | str:
    """Where a rollback of ``name@alias`` would go, or the error it would raise."""
    try:
        return lifecycle.previous_holder(client.get_model(name), alias)
    except RegistryError as exc:
        return type(exc).__name__


def assert_imported_exactly_once(uri: str, source: Source) -> None:
    """Every exported version is in the target once, each with its own provenance."""
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name in source.exported:
        found = vanilla.search_model_versions(f"name = '{name}'")
        expected = len(list(source.client.search_versions(name)))
        assert len(found) == expected, name
        origins = Counter(json.dumps(p, sort_keys=True) for p in provenance(uri, name))
        assert all(count == 1 for count in origins.values()), origins
        assert sorted(json.loads(o)["version"] for o in origins) == list(range(1, expected + 1))


# ============================================================================ round trip


def test_round_trip_sqlite_to_postgres_server_to_fresh_sqlite_loses_nothing(
    source, on_postgres, fresh_registry, tmp_path
):
    names = source.exported
    original = snapshot(source.uri, names)
    assert original[source.ridge]["versions"][1]["stage"] == "Archived"
    first = original[source.ridge]["versions"][1]
    assert first["run_params"] == {"alpha": "0.1"}
    assert set(first["run_metrics"]) == {"r2", "alpha_metric"}
    assert set(first["metrics"]) == {"r2", "alpha_metric"}
    assert original[source.classifier]["versions"][1]["run_params"] == {"C": "0.5"}
    assert original[source.empty]["versions"] == {}

    # Hop 1: embedded SQLite -> mlflow server over PostgreSQL.
    postgres, report = on_postgres
    identity = {
        source.ridge: {1: 1, 2: 2, 3: 3},
        source.classifier: {1: 1},
    }
    assert mapping_of(report) == identity
    assert report.existing == {}
    assert report.aliases == {
        f"{source.ridge}@prod": f"{source.ridge}/2",
        f"{source.ridge}@staging": f"{source.ridge}/3",
        f"{source.classifier}@prod": f"{source.classifier}/1",
    }
    on_server = snapshot(postgres.tracking_uri, names)
    assert on_server == translate(original, mapping_of(report))
    assert on_server == original  # same numbering: identical, alias log entries included
    for name in names:
        assert raw_model_tags(postgres.tracking_uri, name) == raw_model_tags(source.uri, name)
        assert moves(postgres, name) == moves(source.client, name)
    for name in (source.ridge, source.classifier):
        assert sorted(provenance(postgres.tracking_uri, name), key=lambda p: p["version"]) == [
            {"registry": source.client.registry_uri, "name": name, "version": n}
            for n in identity[name]
        ]

    # Hop 2: export from the server, import into a fresh embedded SQLite registry.
    second_export = postgres.export(names, to=tmp_path / "from-postgres")
    with make_client(fresh_registry("final"), tmp_path / "final-cache") as final:
        second = final.import_(second_export)
        assert mapping_of(second) == identity
        assert snapshot(final.tracking_uri, names) == original
        for name in names:
            assert raw_model_tags(final.tracking_uri, name) == raw_model_tags(source.uri, name)
            assert moves(final, name) == moves(source.client, name)
        for name in (source.ridge, source.classifier):
            for origin in provenance(final.tracking_uri, name):
                assert origin["registry"] == postgres.registry_uri
                assert origin["name"] == name
        # Rollback walks the imported history as it would in the source: staging went
        # 1 -> 2 -> 3, so back to 2; prod went 2 -> 3 and was rolled back, so nowhere.
        for alias in ("staging", "prod"):
            assert rollback_target(final, source.ridge, alias) == rollback_target(
                source.client, source.ridge, alias
            )
        assert rollback_target(final, source.ridge, "staging") == 2
        assert final.rollback(source.ridge, "staging").to_version == 2


def test_importing_the_same_export_again_creates_nothing(source, on_postgres):
    postgres, first = on_postgres
    again = postgres.import_(source.export)
    assert again.created == {}
    assert again.existing == {**first.created, **first.existing}
    assert again.aliases == first.aliases
    assert_imported_exactly_once(postgres.tracking_uri, source)
    assert snapshot(postgres.tracking_uri, source.exported) == snapshot(source.uri, source.exported)


# ============================================================================ interrupted imports


def run_until_frozen(point: str, target_uri: str, export: Path, workdir: Path) -> str:
    """Run ``registry import`` until it freezes at ``point``, SIGKILL it; return its marker."""
    marker = workdir / f"{point}.marker"
    log = workdir / f"{point}.log"
    command = [
        sys.executable,
        str(IMPORT_UNTIL),
        point,
        str(marker),
        "--tracking-uri",
        target_uri,
        "import",
        str(export),
        "--json",
    ]
    env = dict(os.environ) | {"REGISTRY_SDK_CACHE_DIR": str(workdir / f"{point}-cache")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT  # a guard against hanging, not a check
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(
                    f"import ended (status {proc.returncode}) before {point}:\n"
                    f"{log.read_text(errors='replace')[-4000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"import never reached {point}:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text(encoding="utf-8")


def registry_import(target_uri: str, export: Path, workdir: Path) -> dict[str, Any]:
    """``registry --tracking-uri URI import EXPORT --json`` in a fresh process: its report."""
    proc = subprocess.run(
        [str(REGISTRY_CLI), "--tracking-uri", target_uri, "import", str(export), "--json"],
        cwd=workdir,
        env=dict(os.environ) | {"REGISTRY_SDK_CACHE_DIR": str(workdir / "rerun-cache")},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)  # stdout holds the report and nothing else


def all_versions(uri: str, names: list[str]) -> list[str]:
    vanilla = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = []
    for name in names:
        found += [
            f"{mv.name}/{mv.version}" for mv in vanilla.search_model_versions(f"name = '{name}'")
        ]
    return sorted(found)


def test_an_import_killed_after_its_first_version_completes_exactly_once_when_run_again(
    source, mlflow_server_sqlite, tmp_path
):
    target = mlflow_server_sqlite.uri
    assert all_versions(target, source.exported) == []

    frozen_at = run_until_frozen("after-first-version", target, source.export, tmp_path)

    assert all_versions(target, source.exported) == [frozen_at]  # killed right after it
    report = registry_import(target, source.export, tmp_path)
    assert list(report["existing"].values()) == [frozen_at]
    assert sorted({**report["created"], **report["existing"]}.values()) == sorted(
        f"{name}/{n}"
        for name in source.exported
        for n in range(1, len(list(source.client.search_versions(name))) + 1)
    )
    assert_imported_exactly_once(target, source)
    assert snapshot(target, source.exported) == snapshot(source.uri, source.exported)
    again = registry_import(target, source.export, tmp_path)
    assert again["created"] == {}
    assert_imported_exactly_once(target, source)


def test_an_import_killed_in_the_middle_of_an_upload_uploads_everything_when_run_again(
    source, fresh_registry, tmp_path
):
    target = fresh_registry("target")

    frozen_at = run_until_frozen("mid-upload", target, source.export, tmp_path)

    # The kill left a run with part of the artifacts, and no version yet.
    assert all_versions(target, source.exported) == []
    run_id, uploaded = frozen_at.split()
    vanilla = mlflow.MlflowClient(tracking_uri=target)
    assert vanilla.get_run(run_id).info.status == "RUNNING"
    assert artifact_paths(target, run_id, "model") == [f"model/{uploaded}"]

    registry_import(target, source.export, tmp_path)

    assert_imported_exactly_once(target, source)
    assert snapshot(target, source.exported) == snapshot(source.uri, source.exported)


# ============================================================================ vanilla MLflow


def test_vanilla_mlflow_loads_an_imported_model_by_alias_and_predicts_as_the_source_did(
    source, on_postgres, tmp_path
):
    postgres, _ = on_postgres
    refs = [
        (source.ridge, "prod"),
        (source.ridge, "staging"),
        (source.classifier, "prod"),
    ]
    np.save(tmp_path / "x.npy", X_TEST)
    proc = subprocess.run(
        [
            sys.executable,
            str(PREDICT),
            str(tmp_path / "x.npy"),
            str(tmp_path / "predicted.npz"),
            *(f"models:/{name}@{alias}" for name, alias in refs),
        ],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": postgres.tracking_uri},  # nothing else
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    predicted = np.load(tmp_path / "predicted.npz")
    for i, (name, alias) in enumerate(refs):
        expected = source.predictions(name, alias)
        assert predicted[f"p{i}"].shape == expected.shape
        assert np.array_equal(predicted[f"p{i}"], expected), (name, alias)
    # Not trivially equal: the two ridge versions behind the aliases predict differently.
    assert not np.array_equal(predicted["p0"], predicted["p1"])


# ============================================================================ integrity


def exported_version_dir(export: Path, name: str, version: int) -> Path:
    for model_json in export.glob("models/*/model.json"):
        if json.loads(model_json.read_text(encoding="utf-8"))["name"] == name:
            return model_json.parent / "versions" / str(version)
    msg = f"{name} is not in {export}"
    raise AssertionError(msg)


@pytest.mark.parametrize("damage", ["one-byte-changed", "file-added", "file-deleted"])
def test_a_damaged_export_is_refused_before_anything_is_written(
    source, fresh_registry, tmp_path, damage
):
    export = Path(shutil.copytree(source.export, tmp_path / "export"))
    if damage == "one-byte-changed":
        artifacts = exported_version_dir(export, source.ridge, 3) / "artifacts"
        victim = max(
            (p for p in artifacts.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
        )
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    elif damage == "file-added":
        victim = exported_version_dir(export, source.classifier, 1) / "artifacts" / "extra.pkl"
        victim.write_bytes(b"not part of the export")
    else:
        victim = exported_version_dir(export, source.ridge, 1) / "artifacts" / "requirements.txt"
        victim.unlink()
    named = victim.relative_to(export).as_posix()
    target_uri = fresh_registry("target")

    with make_client(target_uri, tmp_path / "target-cache") as target:
        with pytest.raises(ExportIntegrityError) as caught:
            target.import_(export)
        assert named in str(caught.value)

        result = CliRunner().invoke(cli, ["--tracking-uri", target_uri, "import", str(export)])
        assert result.exit_code == 6, result.output
        assert named in result.output

        assert list(target.search_models()) == []
    vanilla = mlflow.MlflowClient(tracking_uri=target_uri)
    assert [e.name for e in vanilla.search_experiments()] == ["Default"]
    assert vanilla.search_runs(["0"]) == []
    assert no_files_under(tmp_path / "mlruns")


def reseal(export: Path) -> None:
    """Make the manifest match the export as it now is: what the author of a crafted one does."""
    manifest = json.loads((export / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = {
        rel: digest for rel, digest in sha256_tree(export).items() if rel != "manifest.json"
    }
    (export / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_an_export_whose_artifacts_are_a_symlink_is_refused_and_uploads_nothing(
    source, fresh_registry, tmp_path
):
    secret = b"importer's private key: never to leave this machine"
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    (home / "id_ed25519").write_bytes(secret)
    export = Path(shutil.copytree(source.export, tmp_path / "export"))
    artifacts = exported_version_dir(export, source.ridge, 3) / "artifacts"
    shutil.rmtree(artifacts)
    artifacts.symlink_to(home, target_is_directory=True)
    reseal(export)  # the manifest lists nothing below the link: it looks complete
    named = artifacts.relative_to(export).as_posix()
    target_uri = fresh_registry("target")

    with make_client(target_uri, tmp_path / "target-cache") as target:
        with pytest.raises(ExportIntegrityError, match=f"{named} is a symlink"):
            target.import_(export)
        result = CliRunner().invoke(cli, ["--tracking-uri", target_uri, "import", str(export)])
        assert result.exit_code == 6, result.output
        assert named in result.output
        assert list(target.search_models()) == []
    vanilla = mlflow.MlflowClient(tracking_uri=target_uri)
    assert [e.name for e in vanilla.search_experiments()] == ["Default"]
    holders = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.is_symlink() and secret in p.read_bytes()
    ]
    assert holders == [home / "id_ed25519"]


def test_an_import_that_would_move_prod_back_is_refused_until_move_aliases(
    source, fresh_registry, tmp_path
):
    target_uri = fresh_registry("target")
    runner = CliRunner()
    with make_client(target_uri, tmp_path / "target-cache") as target:
        first = target.import_(source.export)
        assert first.aliases[f"{source.ridge}@prod"] == f"{source.ridge}/2"
        target.set_alias(source.ridge, "prod", 3, reason="the target's own rollout")
        tags_before = raw_model_tags(target_uri, source.ridge)

        refused = runner.invoke(cli, ["--tracking-uri", target_uri, "import", str(source.export)])

        assert refused.exit_code == 6, refused.output
        assert f"{source.ridge}@prod holds {source.ridge}/3" in refused.output
        assert "--move-aliases" in refused.output
        assert dict(target.get_model(source.ridge).aliases)["prod"] == 3
        assert raw_model_tags(target_uri, source.ridge) == tags_before
        assert_imported_exactly_once(target_uri, source)

        moved = runner.invoke(
            cli,
            [
                "--tracking-uri",
                target_uri,
                "import",
                str(source.export),
                "--move-aliases",
                "--json",
            ],
        )

        assert moved.exit_code == 0, moved.output
        assert json.loads(moved.stdout)["created"] == {}
        assert dict(target.get_model(source.ridge).aliases)["prod"] == 2
        last = target.history(source.ridge, alias="prod")[-1]
        assert (last.from_version, last.to_version, last.external) == (3, 2, False)
        assert_imported_exactly_once(target_uri, source)


# ============================================================================ copy


def test_copy_promotes_one_version_into_another_registry_with_its_lineage_exactly_once(
    source, mlflow_server_sqlite, tmp_path
):
    name = source.copied
    original = source.client.get_version(f"{name}@staging")
    assert original.version == 2
    for prefix in (*LINEAGE_PREFIXES, _tags.METRICS_PREFIX):
        assert any(k.startswith(prefix) for k in original.tags), prefix  # nothing vacuous

    with make_client(mlflow_server_sqlite.uri, tmp_path / "prod-cache") as prod:
        copied = source.client.copy(f"{name}@staging", to_client=prod, alias="prod")

        assert (copied.name, copied.version, copied.aliases) == (name, 1, ("prod",))
        assert {k: v for k, v in copied.tags.items() if k != IMPORTED_FROM} == dict(original.tags)
        assert json.loads(copied.tags[IMPORTED_FROM]) == {
            "registry": source.client.registry_uri,
            "name": name,
            "version": 2,
        }
        assert dict(prod.get_model(name).aliases) == {"prod": 1}  # staging stays behind
        [event] = prod.history(name)
        assert (event.alias, event.from_version, event.to_version, event.external) == (
            "prod",
            None,
            1,
            False,
        )
        assert "copied from" in (event.reason or "")
        here, there = snapshot(source.uri, [name]), snapshot(prod.tracking_uri, [name])
        copied_data = there[name]["versions"][1]
        assert copied_data == here[name]["versions"][2]
        assert copied_data["run_params"] == {"alpha": "5.0"}
        lineage = prod.lineage(f"{name}@prod")
        assert lineage.params == {"alpha": "5.0"}

        again = source.client.copy(f"{name}@staging", to_client=prod, alias="prod")

        assert again.version == 1
        assert all_versions(prod.tracking_uri, [name]) == [f"{name}/1"]
        assert len(provenance(prod.tracking_uri, name)) == 1
        assert dict(prod.get_model(name).aliases) == {"prod": 1}


# ============================================================================ CLI


def test_the_cli_exports_named_models_and_imports_them_with_a_json_report(
    source, fresh_registry, tmp_path
):
    runner = CliRunner()
    to = tmp_path / "cli-export"
    names = [source.ridge, source.classifier]

    result = runner.invoke(cli, ["--tracking-uri", source.uri, "export", *names, "--to", str(to)])
    assert result.exit_code == 0, result.output
    assert f"exported to {to}" in result.stdout
    manifest = json.loads((to / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["models"] == names

    target = fresh_registry("target")
    result = runner.invoke(cli, ["--tracking-uri", target, "import", str(to), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == {
        "created": {
            f"{source.ridge}/1": f"{source.ridge}/1",
            f"{source.ridge}/2": f"{source.ridge}/2",
            f"{source.ridge}/3": f"{source.ridge}/3",
            f"{source.classifier}/1": f"{source.classifier}/1",
        },
        "existing": {},
        "aliases": {
            f"{source.ridge}@prod": f"{source.ridge}/2",
            f"{source.ridge}@staging": f"{source.ridge}/3",
            f"{source.classifier}@prod": f"{source.classifier}/1",
        },
    }
    assert snapshot(target, names) == snapshot(source.uri, names)
    with pytest.raises(MlflowException):
        mlflow.MlflowClient(tracking_uri=target).get_registered_model(source.empty)

    result = runner.invoke(cli, ["--tracking-uri", target, "import", str(to)])
    assert result.exit_code == 0, result.output
    assert f"present  {source.classifier}/1 from {source.classifier}/1" in result.stdout
    assert f"alias    {source.ridge}@prod -> {source.ridge}/2" in result.stdout
    assert "created" not in result.stdout

"""Servers of every MLflow version the SDK supports, started by the suite's one server builder.

MLflow 2.9.2 and the newest 2.22 run from their own environments, built once per machine and
cached outside the checkout (``_versions.ensure_mlflow_env``); the installed 3.x runs from the
project's. Each is started with proxied and with direct artifacts, and answers the plain
registry calls every supported version has.

The environment cache itself is tested offline, with ``pip`` as the only requirement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import filelock
import pytest
from _servers import ARTIFACT_MODES, HOST, ServerCommand
from _versions import (
    ENVS_VAR,
    INSTALLED,
    MARKER,
    NEW_2X,
    NEWEST_3X,
    OLD_2X,
    SERVER_VERSIONS,
    EnvBuildError,
    ensure_env,
    ensure_mlflow_env,
    lock_path,
    read_marker,
)

from registry_sdk import RegistryClient

pytestmark = pytest.mark.versions

_HERE = Path(__file__).parent.resolve()
POSTGRES = pytest.mark.postgres

#: Every version with both artifact modes on SQLite; the 2.x versions on PostgreSQL too (the
#: installed 3.x runs on PostgreSQL throughout the contract suite).
KINDS = [
    pytest.param(version, "sqlite", artifacts, id=f"{version}-sqlite-{artifacts}")
    for version in SERVER_VERSIONS
    for artifacts in ARTIFACT_MODES
] + [
    pytest.param(version, "postgres", "proxied", id=f"{version}-postgres-proxied", marks=POSTGRES)
    for version in (OLD_2X, NEW_2X)
]


def make_client(uri: str, tmp_path: Path) -> RegistryClient:
    return RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=30,
        max_retries=1,
    )


def test_the_suite_targets_two_2x_releases_and_the_newest_3x():
    assert OLD_2X.startswith("2.9.")
    assert NEW_2X.startswith("2.22.")
    assert NEWEST_3X.split(".")[0] == "3"
    # The installed MLflow is the newest 3.x, unless it is a 2.x (nox -s tests_mlflow2).
    assert NEWEST_3X == INSTALLED or INSTALLED.split(".")[0] == "2"
    assert SERVER_VERSIONS == (OLD_2X, NEW_2X, NEWEST_3X)


def test_one_builder_gives_each_server_its_flags_and_an_isolated_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere.example")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-callers-own")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site-packages"))
    mlflow = tmp_path / "mlflow-2.9.2" / "bin" / "mlflow"
    proxied = ServerCommand(
        "sqlite:///store.db", "/srv/artifacts", 5000, mlflow=mlflow, extra_env={"AWS_X": "dummy"}
    )
    direct = ServerCommand(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/db",
        "file:///srv/artifacts",
        5001,
        artifacts="direct",
        mlflow=mlflow,
        workers=4,
    )

    assert proxied.argv() == [
        str(mlflow), "server", "--backend-store-uri", "sqlite:///store.db",
        "--serve-artifacts", "--artifacts-destination", "/srv/artifacts",
        "--host", HOST, "--port", "5000", "--workers", "1",
    ]  # fmt: skip
    assert direct.argv()[4:] == [
        "--no-serve-artifacts", "--default-artifact-root", "file:///srv/artifacts",
        "--host", HOST, "--port", "5001", "--workers", "4",
    ]  # fmt: skip
    env = proxied.env()
    for leaked in ("MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY", "PYTHONPATH"):
        assert leaked not in env
    assert env["AWS_X"] == "dummy"
    assert env["PATH"].split(os.pathsep)[0] == str(mlflow.parent)
    assert env["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] == "NullPool"
    assert "MLFLOW_SQLALCHEMYSTORE_POOLCLASS" not in direct.env()


@pytest.mark.parametrize(("version", "store", "artifacts"), KINDS)
def test_each_version_answers_the_registry_api(
    versioned_server, version, store, artifacts, tmp_path
):
    server = versioned_server(version, store=store, artifacts=artifacts)
    name = f"versions-{uuid.uuid4().hex[:8]}"
    with make_client(server.uri, tmp_path) as client:
        info = client.server_info()
        assert info.reachable, info.detail
        assert info.version == version
        assert client.capabilities().server_version == version

        client.create_model(name, description="smoke")
        client.set_tag(name, "suite", "versions")
        found = list(client.search_models(f"name = '{name}'"))

    assert [m.name for m in found] == [name]
    assert found[0].tags.get("suite") == "versions"


@pytest.mark.parametrize(("version", "store", "artifacts"), KINDS)
def test_each_version_runs_in_the_artifact_mode_asked_for(
    versioned_server, version, store, artifacts
):
    server = versioned_server(version, store=store, artifacts=artifacts)
    assert server.backend_store_uri.startswith(store)
    url = f"{server.uri}/api/2.0/mlflow/experiments/get?experiment_id=0"
    with urllib.request.urlopen(url, timeout=30) as reply:  # noqa: S310 - loopback server
        location = json.loads(reply.read())["experiment"]["artifact_location"]

    if artifacts == "proxied":
        assert location == "mlflow-artifacts:/0"
    else:
        assert location == f"{server.artifacts_dir.as_uri()}/0"


@pytest.mark.parametrize("version", [OLD_2X, NEW_2X])
def test_2x_environments_pin_what_their_servers_need(version):
    env = ensure_mlflow_env(version)  # built by the servers above, or now
    marker = read_marker(env)

    assert marker is not None
    freeze = {line.split("==")[0].lower(): line.split("==")[1] for line in marker["freeze"]}
    assert freeze["mlflow"] == version
    sqlalchemy = tuple(int(part) for part in freeze["sqlalchemy"].split(".")[:2])
    assert sqlalchemy < (2, 1)
    assert {"psycopg2-binary", "boto3", "setuptools"} <= freeze.keys()
    assert (env / "bin" / "mlflow").exists()


# ------------------------------------------------------------------ the environment cache


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees no index at all; environments go to ``<tmp>/envs`` (returned)."""
    links = tmp_path / "no-wheels"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    root = tmp_path / "envs"
    monkeypatch.setenv(ENVS_VAR, str(root))
    return root


def test_an_env_is_built_once_then_reused(offline):
    first = ensure_env("probe", ["pip"], root=offline)
    built = first.resolve()
    again = ensure_env("probe", ["pip"], root=offline)

    assert first == again == offline / "probe"
    assert first.is_symlink()
    assert again.resolve() == built
    marker = read_marker(first)
    assert marker is not None
    assert marker["requirements"] == ["pip"]
    assert any(line.startswith("pip==") for line in marker["freeze"])
    assert [p.name for p in (offline / ".envs").iterdir()] == [built.name]


def test_concurrent_callers_build_one_env(offline):
    code = (
        "import pathlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import _versions\n"
        "print(_versions.ensure_env('probe', ['pip'], root=pathlib.Path(sys.argv[2])).resolve())\n"
    )
    command = [sys.executable, "-c", code, str(_HERE), str(offline)]
    lock = lock_path(offline, "probe")
    lock.parent.mkdir(parents=True)
    # Both callers start while the build lock is taken, then race for it.
    with filelock.FileLock(lock):
        callers = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
    outputs = [caller.communicate(timeout=600) for caller in callers]

    assert [caller.returncode for caller in callers] == [0, 0], outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert [p.name for p in (offline / ".envs").iterdir()] == [Path(paths.pop()).name]


def test_a_killed_build_is_never_used_and_is_cleaned_up(offline):
    # What a build killed half-way leaves: a venv directory without a marker, unpublished;
    # and an env someone made by hand at the published path, without a marker either.
    killed = offline / ".envs" / "probe-0badc0de"
    (killed / "bin").mkdir(parents=True)
    by_hand = offline / "probe"
    (by_hand / "bin").mkdir(parents=True)

    env = ensure_env("probe", ["pip"], root=offline)

    assert env.is_symlink()
    assert env.resolve() != killed
    assert (env / MARKER).is_file()
    assert not killed.exists()
    assert [p.name for p in (offline / ".envs").iterdir()] == [env.resolve().name]


def test_changed_requirements_rebuild_the_env(offline):
    old = ensure_env("probe", ["pip"], root=offline).resolve()
    env = ensure_env("probe", ["pip", "setuptools"], root=offline)

    assert env.resolve() != old
    assert not old.exists()
    marker = read_marker(env)
    assert marker is not None
    assert marker["requirements"] == ["pip", "setuptools"]


def test_an_unreachable_index_is_a_clear_error_and_leaves_no_env(offline):
    with pytest.raises(EnvBuildError) as caught:
        ensure_mlflow_env("2.9.2")

    message = str(caught.value)
    assert "'mlflow-2.9.2'" in message
    assert "mlflow==2.9.2" in message
    assert "pip install exited with status" in message
    assert "package index" in message
    assert str(offline) in message
    assert not (offline / "mlflow-2.9.2").exists()
    assert list((offline / ".envs").iterdir()) == []

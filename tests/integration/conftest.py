"""Fixtures for the integration suite: real MLflow servers on loopback and an embedded store.

``client`` is parametrized over the three backends, so every contract test runs unchanged
against each of them:

* ``embedded-sqlite``: no server, MLflow's in-process store on ``sqlite:///<tmp>/embedded.db``;
* ``server-sqlite``: ``mlflow server`` over SQLite, through the REST backend;
* ``server-postgres``: ``mlflow server`` over a fresh PostgreSQL database (marked ``postgres``).

Servers start once per session, lazily (deselecting ``postgres`` never touches PostgreSQL),
and their process groups are killed at the end of the session whatever the tests did.

``versioned_server`` starts servers of other MLflow versions (2.9, 2.22, the installed 3.x),
each from its own cached environment (see ``_versions``); tests that use it are marked
``versions``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from _servers import (
    ARTIFACT_MODES,
    ArtifactMode,
    MlflowServer,
    create_database,
    drop_database,
    postgres_problem,
    postgres_uri,
)
from _versions import (
    INSTALLED,
    SERVER_VERSIONS,
    VERSIONS_TIMEOUT,
    EnvBuildError,
    ServerKind,
    Store,
    VersionedServer,
    VersionedServers,
)

from registry_sdk import RegistryClient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_HERE = Path(__file__).parent.resolve()

BACKENDS = (
    "embedded-sqlite",
    "server-sqlite",
    pytest.param("server-postgres", marks=pytest.mark.postgres),
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests ``integration`` and ``versions`` where they belong (this hook sees all items).

    Every test under tests/integration is ``integration``; one using ``versioned_server`` is
    ``versions``. A test marked ``versions`` (or using ``versioned_server``) may build two MLflow
    environments before it starts: unless it sets its own, its timeout is ``VERSIONS_TIMEOUT``.
    A test that reaches ``versioned_server`` through ``request.getfixturevalue`` should carry
    the ``versions`` mark itself.
    """
    for item in items:
        if Path(item.path).resolve().is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
        if "versioned_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.versions)
        if item.get_closest_marker("versions") is not None:
            # Appended: a timeout the test sets itself is closer and wins.
            item.add_marker(pytest.mark.timeout(VERSIONS_TIMEOUT))


#: Set to 1 to skip, rather than fail, the tests whose services are missing. Ignored under
#: CI=true. (_production.py, loaded as a plugin by the modules that need it, has the same.)
SKIP_SERVICES_ENV = "REGISTRY_SDK_TESTS_SKIP_SERVICES"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"true", "1", "yes"}


def missing_service(reason: str, fix: str) -> NoReturn:
    """Fail the test that needs a missing service, or skip it when the developer opted out."""
    if _flag("CI"):
        pytest.fail(f"CI=true but {reason}; {fix}", pytrace=False)
    if _flag(SKIP_SERVICES_ENV):
        pytest.skip(f"{reason} (skipped: {SKIP_SERVICES_ENV} is set)")
    pytest.fail(
        f"{reason}. It is part of the development set-up: {fix}. To skip the tests that need "
        f"it instead, set {SKIP_SERVICES_ENV}=1",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def embedded_sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("embedded") / "embedded.db"
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def mlflow_server_sqlite(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("server-sqlite")
    server = MlflowServer("server-sqlite", f"sqlite:///{workdir / 'mlflow.db'}", workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh database on the local PostgreSQL, dropped at the end of the session."""
    problem = postgres_problem()
    if problem is not None:
        missing_service(
            f"PostgreSQL is unusable: {problem}",
            "start PostgreSQL on 127.0.0.1:5432 with trust auth for user 'postgres'",
        )
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def mlflow_server_postgres(postgres_database: str, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("server-postgres")
    server = MlflowServer("server-postgres", postgres_uri(postgres_database), workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()  # before the database is dropped


def _tracking_uri(request: pytest.FixtureRequest, backend: str) -> str:
    if backend == "embedded-sqlite":
        return request.getfixturevalue("embedded_sqlite_uri")
    if backend == "server-sqlite":
        return request.getfixturevalue("mlflow_server_sqlite").uri
    if backend == "server-postgres":
        return request.getfixturevalue("mlflow_server_postgres").uri
    if backend.startswith("server-") and backend[len("server-")].isdigit():
        version, artifacts = backend.removeprefix("server-").rsplit("-", 1)
        return request.getfixturevalue("versioned_server")(version, artifacts=artifacts).uri
    msg = f"unknown backend {backend!r}"
    raise AssertionError(msg)


CONTRACT_BACKENDS = (
    *BACKENDS,
    *(
        pytest.param(f"server-{version}-{artifacts}", marks=pytest.mark.versions)
        for version in SERVER_VERSIONS
        for artifacts in ARTIFACT_MODES
        # server-sqlite above is the installed MLflow with proxied artifacts.
        if (version, artifacts) != (INSTALLED, "proxied")
    ),
)


@pytest.fixture(params=CONTRACT_BACKENDS)
def client(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh ``RegistryClient`` on one of the backends (per test, so patches stay local).

    The embedded store and servers of the installed MLflow (SQLite, PostgreSQL; proxied
    artifacts), and servers of every version in ``SERVER_VERSIONS`` (2.9, 2.22, the newest 3.x)
    over SQLite with proxied and with direct artifacts, each 2.x from its own environment.
    """
    uri = _tracking_uri(request, request.param)
    # Everything explicit, so no REGISTRY_SDK_* or MLFLOW_* variable of the caller leaks in.
    # Few retries: a real server that fails should fail the test quickly, not after backoff.
    with RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=30,
        max_retries=1,
    ) as registry:
        yield registry


#: What an ``mlflow server`` needs to deliver webhooks to a receiver on loopback over plain http;
#: no webhook cache (its default is 60 s), so each event goes to the webhooks that exist now.
WEBHOOK_SERVER_ENV = {
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
}


@pytest.fixture(scope="session")
def mlflow_server_webhooks(tmp_path_factory: pytest.TempPathFactory):
    """An ``mlflow server`` (SQLite) that delivers webhooks to loopback http receivers.

    Shared by the CLI, webhook and serve tests; each test uses its own model names and deletes
    the webhooks it creates.
    """
    workdir = tmp_path_factory.mktemp("server-webhooks")
    server = MlflowServer("server-webhooks", f"sqlite:///{workdir / 'mlflow.db'}", workdir)
    server.extra_env.update(WEBHOOK_SERVER_ENV)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def versioned_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., VersionedServer]]:
    """A factory of running ``mlflow server`` processes of any version, store and artifact mode.

    ``versioned_server("2.9.2", store="sqlite", artifacts="direct")`` returns a started
    ``_versions.VersionedServer`` (``.uri``, ``.version``, ``.artifacts_dir``, ``.log()``).
    Each combination starts once per session, on first use (building that version's
    environment if it is not cached yet), and every one is stopped at the end of the session.
    The defaults: the installed MLflow, SQLite, proxied artifacts.
    """
    pool = VersionedServers(tmp_path_factory.mktemp("versioned"))

    def get(
        version: str = INSTALLED,
        *,
        store: Store = "sqlite",
        artifacts: ArtifactMode = "proxied",
    ) -> VersionedServer:
        if store == "postgres":
            problem = postgres_problem()
            if problem is not None:
                missing_service(
                    f"PostgreSQL is unusable: {problem}",
                    "start PostgreSQL on 127.0.0.1:5432 with trust auth for user 'postgres'",
                )
        try:
            return pool.get(ServerKind(version, store, artifacts))
        except EnvBuildError as exc:
            missing_service(
                str(exc),
                f"build it where the index is reachable: python tests/integration/_versions.py "
                f"{version}",
            )

    try:
        yield get
    finally:
        pool.close()

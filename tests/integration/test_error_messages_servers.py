"""Errors that say where and what next, against real stores: the embedded SQLite store and an
``mlflow server`` of the installed MLflow.

A not-found names the registry; a missing model suggests close names (one bounded search, on
the error path only, counted through a proxy); a missing alias lists the model's aliases; a
read with no registry configured creates no ``mlflow.db``; a URI without a scheme, or a
reference with ``@@``, says the form that works, and that form works.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest
from _proxy import CountingProxy
from click.testing import CliRunner

import registry_sdk as rs
from registry_sdk.cli import cli
from registry_sdk.errors import (
    AliasNotFoundError,
    ConfigurationError,
    InvalidReferenceError,
    ModelNotFoundError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: The embedded store, a server of the installed MLflow, and an MLflow 2.x server (whose
#: "alias not found" does not say whether the model exists).
STORES = (
    "embedded-sqlite",
    "server-sqlite",
    pytest.param("server-2.9.2", marks=pytest.mark.versions),
)


def _tracking_uri(request: pytest.FixtureRequest, store: str) -> str:
    if store == "embedded-sqlite":
        return str(request.getfixturevalue("embedded_sqlite_uri"))
    if store == "server-sqlite":
        return str(request.getfixturevalue("mlflow_server_sqlite").uri)
    version = store.removeprefix("server-")
    return str(request.getfixturevalue("versioned_server")(version).uri)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)


def make_client(uri: str, tmp_path: Path) -> rs.RegistryClient:
    return rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", timeout=30, max_retries=1
    )


@pytest.fixture(params=STORES)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[rs.RegistryClient]:
    with make_client(_tracking_uri(request, request.param), tmp_path) as client:
        yield client


@pytest.fixture
def server_uri(request: pytest.FixtureRequest) -> str:
    return _tracking_uri(request, "server-sqlite")


def family() -> str:
    """A prefix no other test's model shares: the suggestion search matches on a prefix."""
    return f"q{uuid.uuid4().hex[:8]}"


def source(name: str, n: int) -> str:
    # The server refuses local paths without a run; an s3 URI is stored and never fetched.
    return f"s3://registry-sdk-it/{name}/{n}"


def with_aliases(client: rs.RegistryClient, name: str, **aliases: int) -> str:
    client.create_model(name)
    for n in range(1, max(aliases.values(), default=1) + 1):
        client.create_version(name, source(name, n))
    for alias, version in aliases.items():
        client.set_alias(name, alias, version)
    return name


# ============================================================================ the registry's name


def test_every_not_found_names_the_registry(registry):
    name = with_aliases(registry, f"{family()}-churn", prod=1)
    expected = registry.backend.uri

    errors = []
    for call, kind in [
        (lambda: registry.get_model(f"{name}-absent"), ModelNotFoundError),
        (lambda: registry.resolve(f"{name}-absent@prod"), ModelNotFoundError),
        (lambda: registry.resolve(f"{name}/9"), VersionNotFoundError),
        (lambda: registry.resolve(f"{name}@canary"), AliasNotFoundError),
        (lambda: registry.resolve(f"{name}-absent@latest"), ModelNotFoundError),
        (lambda: registry.delete_alias(name, "canary"), AliasNotFoundError),
    ]:
        with pytest.raises(kind) as caught:
            call()
        errors.append(caught.value)

    for error in errors:
        assert error.registry_uri == expected, error
        assert f"(registry: {expected})" in str(error)


# ============================================================================ close names


def test_a_missing_model_suggests_close_names(registry):
    prefix = family()
    for suffix in ("churn", "churn-v2", "fraud"):
        registry.create_model(f"{prefix}-{suffix}")
    typo = f"{prefix}-churnn"

    with pytest.raises(ModelNotFoundError) as by_alias:
        registry.resolve(f"{typo}@prod")
    with pytest.raises(ModelNotFoundError) as by_name:
        registry.get_model(typo)
    with pytest.raises(ModelNotFoundError) as by_load:
        rs.load_model(f"{typo}/1", client=registry)

    expected = (f"{prefix}-churn", f"{prefix}-churn-v2")
    for caught in (by_alias, by_name, by_load):
        assert caught.value.suggestions == expected
        assert f"Did you mean '{prefix}-churn' or '{prefix}-churn-v2'?" in str(caught.value)


def test_the_suggestion_costs_one_search_on_the_error_path_and_none_on_the_happy_path(
    server_uri, tmp_path
):
    with make_client(server_uri, tmp_path) as direct:
        name = with_aliases(direct, f"{family()}-churn", prod=1)

    with CountingProxy(server_uri) as proxy, make_client(proxy.uri, tmp_path) as client:
        assert client.resolve(f"{name}@prod").version == 1
        assert sum(proxy.endpoints().values()) == 1

        proxy.clear()
        client.create_model(f"{name}-fresh", exist_ok=True)  # not found first: a happy path
        assert "registered-models/search" not in proxy.endpoints()

        proxy.clear()
        with pytest.raises(ModelNotFoundError) as caught:
            client.resolve(f"{name}x@prod")
        assert caught.value.suggestions[0] == name
        searches = [s for s in proxy.seen if s.endpoint == "registered-models/search"]
        assert len(searches) == 1
        assert "max_results=50" in searches[0].query


# ============================================================================ aliases


def test_a_missing_alias_lists_the_aliases_of_the_model(registry):
    name = with_aliases(registry, f"{family()}-churn", prod=1, staging=2)

    with pytest.raises(AliasNotFoundError) as resolving:
        registry.resolve(f"{name}@prd")
    with pytest.raises(AliasNotFoundError) as deleting:
        registry.delete_alias(name, "prd")

    for caught in (resolving, deleting):
        assert caught.value.aliases == ("prod", "staging")
        assert caught.value.suggestions == ("prod",)
        assert "@prod, @staging; did you mean @prod?" in str(caught.value)


def test_a_model_without_aliases_says_so(registry):
    name = f"{family()}-bare"
    registry.create_model(name)
    registry.create_version(name, source(name, 1))

    with pytest.raises(AliasNotFoundError) as caught:
        registry.resolve(f"{name}@prod")

    assert caught.value.aliases == ()
    assert f"Model {name!r} has no aliases" in str(caught.value)


# ======================================================================= no registry configured


def test_a_read_with_no_registry_configured_creates_no_database(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(tmp_path / "cache"))

    with pytest.raises(ConfigurationError) as loading:
        rs.load_model("churn@prod")
    with pytest.raises(ConfigurationError):
        rs.RegistryClient().get_model("churn")
    with pytest.raises(ConfigurationError):
        rs.RegistryClient().resolve("churn/1")
    cli_run = CliRunner().invoke(cli, ["show", "churn/1"], catch_exceptions=False)

    assert not (work / "mlflow.db").exists()
    message = str(loading.value)
    assert "no registry configured" in message
    assert "MLFLOW_TRACKING_URI" in message
    assert "tracking_uri" in message
    assert cli_run.exit_code == 2
    assert "MLFLOW_TRACKING_URI" in cli_run.stderr
    assert not (work / "mlflow.db").exists()


def test_a_write_on_the_default_store_still_creates_it(tmp_path, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(tmp_path / "cache"))

    with rs.RegistryClient() as client:
        client.create_model("churn", exist_ok=True)
    assert (work / "mlflow.db").exists()

    # Now there is a registry here: reads answer from it, with its name and close names.
    with pytest.raises(ModelNotFoundError) as caught:
        rs.RegistryClient().get_model("chrun")
    assert caught.value.suggestions == ("churn",)
    assert f"(registry: sqlite:///{work.resolve() / 'mlflow.db'})" in str(caught.value)


def test_an_import_into_the_unconfigured_default_store_creates_it(tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(tmp_path / "cache"))
    source = rs.RegistryClient(f"sqlite:///{tmp_path / 'source.db'}")

    @rs.register("churn", client=source)
    def train() -> LogisticRegression:
        return LogisticRegression().fit([[0.0], [1.0]], [0, 1])

    train()
    bundle = source.export(["churn"], to=tmp_path / "bundle")
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)

    with rs.RegistryClient() as client:
        report = client.import_(bundle)
        assert list(report.created) == ["churn/1"]
        assert client.get_version("churn/1").version == 1
    assert (work / "mlflow.db").exists()


# ============================================================================ URIs without a scheme


def test_a_server_address_without_a_scheme_names_the_uri_that_works(server_uri, tmp_path):
    bare = server_uri.removeprefix("http://")

    with pytest.raises(ConfigurationError) as caught:
        make_client(bare, tmp_path)

    meant = f"http://{bare}"
    assert f"'{meant}'" in str(caught.value)
    # The form the message gives reaches the server.
    with make_client(meant, tmp_path) as fixed:
        assert fixed.server_info().reachable is True
    assert not (tmp_path / bare).exists()  # never taken for a folder of a file store


def test_the_cli_and_the_environment_say_the_same(server_uri, tmp_path, monkeypatch):
    bare = server_uri.removeprefix("http://")
    monkeypatch.chdir(tmp_path)

    flag = CliRunner().invoke(cli, ["--tracking-uri", bare, "models"], catch_exceptions=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", bare)
    with pytest.raises(ConfigurationError, match="MLFLOW_TRACKING_URI is"):
        rs.load_model("churn@prod")

    assert flag.exit_code == 2
    assert f"'http://{bare}'" in flag.stderr


# ============================================================================ references


def test_a_doubled_at_says_the_reference_meant_and_that_one_resolves(registry):
    name = with_aliases(registry, f"{family()}-churn", prod=1)

    with pytest.raises(InvalidReferenceError) as caught:
        registry.resolve(f"{name}@@prod")

    assert f"write {name}@prod" in str(caught.value)
    assert "contains '@'" not in str(caught.value)
    assert registry.resolve(f"{name}@prod").version == 1


# ============================================================================ the command line


def test_the_cli_prints_the_registry_and_the_close_name_and_exits_3(server_uri, tmp_path):
    with make_client(server_uri, tmp_path) as client:
        name = with_aliases(client, f"{family()}-churn", prod=1)

    runner = CliRunner()
    base = ["--tracking-uri", server_uri]
    show = runner.invoke(cli, [*base, "show", f"{name}n/1"], catch_exceptions=False)
    alias = runner.invoke(cli, [*base, "resolve", f"{name}@prd"], catch_exceptions=False)

    assert show.exit_code == 3
    assert f"(registry: {server_uri})" in show.stderr
    assert f"Did you mean '{name}'?" in show.stderr
    assert alias.exit_code == 3
    assert "did you mean @prod?" in alias.stderr

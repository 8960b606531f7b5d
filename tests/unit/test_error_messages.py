"""Errors that say where and what next: the parts that need no server.

A not-found names the registry (credentials removed); a missing model suggests close names
from one bounded search on the error path only; a missing alias lists the model's aliases; a
read with no registry configured creates no ``mlflow.db``; a URI without a scheme says the
form that works. (tests/integration/test_error_messages.py runs the same against real stores.)
"""

from __future__ import annotations

import json
import pickle

import pytest
from _rest_fakes import (
    API,
    URI,
    FakeSleep,
    error_body,
    make_client,
    make_settings,
    mock_http,
    model_json,
    query,
    version_json,
)
from click.testing import CliRunner

import registry_sdk as rs
from registry_sdk._backends.base import SUGGESTION_SEARCH_SIZE, close_matches
from registry_sdk._config import Settings
from registry_sdk.cli import cli
from registry_sdk.errors import (
    AliasNotFoundError,
    ConfigurationError,
    ModelNotFoundError,
    RegistryError,
    in_registry,
    with_aliases,
    with_suggestions,
)

MISSING_MODEL = "Registered Model with name={} not found"
MISSING_ALIAS = "Registered model alias {} not found."


@pytest.fixture
def http():
    with mock_http() as rsps:
        yield rsps


def client_for(uri: str = URI, max_retries: int = 0) -> rs.RegistryClient:
    return make_client(make_settings(uri, max_retries=max_retries), FakeSleep())


def calls_to(http, endpoint: str) -> list:
    return [c for c in http.calls if c.request.url.split("?")[0] == API + endpoint]


def missing_model(http, name: str) -> None:
    http.get(
        f"{API}/registered-models/get",
        status=404,
        json=error_body("RESOURCE_DOES_NOT_EXIST", MISSING_MODEL.format(name)),
    )


# ============================================================================ the error objects


def test_a_not_found_names_its_registry_without_credentials():
    error = ModelNotFoundError("get model 'x': Registered Model with name=x not found.")

    located = in_registry(error, "postgresql://bob:pw-s3cret@db.internal:5432/mlflow")

    assert located is error
    assert error.registry_uri == "postgresql://db.internal:5432/mlflow"
    assert str(error) == (
        "get model 'x': Registered Model with name=x not found "
        "(registry: postgresql://db.internal:5432/mlflow)"
    )
    assert "pw-s3cret" not in str(error)
    assert "bob" not in str(error)
    # Naming it twice changes nothing.
    assert str(in_registry(error, "http://elsewhere")) == str(error)


def test_a_token_in_the_query_of_a_registry_uri_is_redacted():
    error = in_registry(ModelNotFoundError("gone"), "https://host/mlflow?token=tok-123456")
    assert "tok-123456" not in str(error)
    assert error.registry_uri == "https://host/mlflow?token=***"


def test_suggestions_and_aliases_read_as_a_next_step():
    model = with_suggestions(
        in_registry(ModelNotFoundError("no model 'churnn'"), "http://h:5000"),
        ["churn", "churn-v2"],
    )
    assert model.suggestions == ("churn", "churn-v2")
    assert str(model) == (
        "no model 'churnn' (registry: http://h:5000). Did you mean 'churn' or 'churn-v2'?"
    )

    alias = with_aliases(
        AliasNotFoundError(MISSING_ALIAS.format("prd")), "churn", ["staging", "prod"], ["prod"]
    )
    assert alias.aliases == ("prod", "staging")
    assert str(alias).endswith("Aliases of 'churn': @prod, @staging; did you mean @prod?")

    none = with_aliases(AliasNotFoundError("no alias"), "churn", [], [])
    assert str(none) == "no alias. Model 'churn' has no aliases"


def test_no_suggestion_leaves_the_message_alone():
    error = with_suggestions(ModelNotFoundError("no model 'zzz'"), [])
    assert error.suggestions == ()
    assert str(error) == "no model 'zzz'"


def test_a_long_alias_list_is_shortened_in_the_message_but_kept_whole():
    aliases = [f"a{n:02d}" for n in range(15)]
    error = with_aliases(AliasNotFoundError("no alias"), "m", aliases, [])
    assert len(error.aliases) == 15
    assert "and 5 more" in str(error)


def test_the_new_fields_survive_pickling():
    model = with_suggestions(in_registry(ModelNotFoundError("gone"), "http://h"), ["churn"])
    alias = with_aliases(AliasNotFoundError("no alias", status=400), "m", ["prod"], ["prod"])

    model_copy = pickle.loads(pickle.dumps(model))  # noqa: S301 - our own object
    alias_copy = pickle.loads(pickle.dumps(alias))  # noqa: S301 - our own object

    assert (model_copy.suggestions, model_copy.registry_uri, str(model_copy)) == (
        ("churn",),
        "http://h",
        str(model),
    )
    assert (alias_copy.aliases, alias_copy.suggestions, alias_copy.status) == (
        ("prod",),
        ("prod",),
        400,
    )


@pytest.mark.parametrize(
    ("word", "candidates", "expected"),
    [
        ("churnn", ["churn", "churn-v2", "fraud"], ("churn",)),
        ("chrun", ["churn", "fraud"], ("churn",)),
        ("Churn", ["churn", "fraud"], ("churn",)),
        ("churn-v3", ["churn-v2", "fraud-v3"], ("churn-v2",)),
        # A shared namespace does not make two names alike.
        ("team-churnn", ["team-churn", "team-fraud"], ("team-churn",)),
        ("churn", ["churn_classifier_with_a_long_name"], ("churn_classifier_with_a_long_name",)),
        ("prd", ["prod", "staging", "canary"], ("prod",)),
        ("zzz", ["churn", "fraud"], ()),
        ("churn", ["churn1", "churn2", "churn3", "churn4"], ("churn1", "churn2", "churn3")),
    ],
)
def test_close_matches_ranks_like_a_person_would(word, candidates, expected):
    assert close_matches(word, candidates) == expected


# ============================================================================ over HTTP


def test_a_missing_model_suggests_close_names_from_one_bounded_search(http):
    http.get(
        f"{API}/registered-models/alias",
        status=404,
        json=error_body("RESOURCE_DOES_NOT_EXIST", MISSING_MODEL.format("churnn")),
    )
    names = ["churn", "churn-v2n", "chum-detector-old", "__registry_sdk_lock__.churn.prod"]
    http.get(
        f"{API}/registered-models/search",
        json={"registered_models": [model_json(n) for n in names]},
    )

    with pytest.raises(ModelNotFoundError) as caught:
        client_for().resolve("churnn@prod")

    error = caught.value
    assert error.suggestions == ("churn", "churn-v2n")
    assert error.registry_uri == URI
    assert f"(registry: {URI})" in str(error)
    assert str(error).endswith("Did you mean 'churn' or 'churn-v2n'?")
    searches = calls_to(http, "/registered-models/search")
    assert len(searches) == 1
    asked = query(searches[0].request)
    assert asked["max_results"] == [str(SUGGESTION_SEARCH_SIZE)]
    assert asked["filter"] == ["name ILIKE 'chu%'"]


def test_a_failing_suggestion_search_leaves_the_error_as_it_was_and_is_not_retried(http):
    missing_model(http, "churnn")
    http.get(f"{API}/registered-models/search", status=502, body="bad gateway")
    sleep = FakeSleep()
    client = make_client(make_settings(max_retries=5), sleep)

    with pytest.raises(ModelNotFoundError) as caught:
        client.get_model("churnn")

    assert caught.value.suggestions == ()
    assert str(caught.value) == (
        f"get model 'churnn': {MISSING_MODEL.format('churnn')} (registry: {URI})"
    )
    assert len(calls_to(http, "/registered-models/search")) == 1
    assert sleep.calls == []


def test_a_registry_with_no_close_name_suggests_nothing(http):
    missing_model(http, "zebra")
    http.get(
        f"{API}/registered-models/search",
        json={"registered_models": [model_json("zoo-keeper")]},
    )

    with pytest.raises(ModelNotFoundError) as caught:
        client_for().get_model("zebra")

    assert caught.value.suggestions == ()
    assert "Did you mean" not in str(caught.value)


def test_a_missing_alias_lists_the_aliases_from_the_check_it_makes_anyway(http):
    http.get(
        f"{API}/registered-models/alias",
        status=400,
        json=error_body("INVALID_PARAMETER_VALUE", MISSING_ALIAS.format("prd")),
    )
    http.get(
        f"{API}/registered-models/get",
        json={"registered_model": model_json("churn", aliases={"prod": 2, "staging": 3})},
    )

    with pytest.raises(AliasNotFoundError) as caught:
        client_for().resolve("churn@prd")

    error = caught.value
    assert error.aliases == ("prod", "staging")
    assert error.suggestions == ("prod",)
    assert error.registry_uri == URI
    assert "Aliases of 'churn': @prod, @staging; did you mean @prod?" in str(error)
    # The alias, then the model: the same two requests as before, no search.
    assert [c.request.url.split("?")[0] for c in http.calls] == [
        f"{API}/registered-models/alias",
        f"{API}/registered-models/get",
    ]


def test_the_happy_paths_make_no_extra_request(http):
    http.get(
        f"{API}/registered-models/alias",
        json={"model_version": version_json("churn", 2, aliases=["prod"])},
    )
    missing_model(http, "fresh")
    http.post(f"{API}/registered-models/create", json={"registered_model": model_json("fresh")})
    client = client_for()

    assert client.resolve("churn@prod").version == 2
    assert len(http.calls) == 1
    # Creating a model that does not exist yet looks it up first: a not-found on a happy path,
    # which must never cost a suggestion search.
    client.create_model("fresh", exist_ok=True)
    assert calls_to(http, "/registered-models/search") == []


def test_credentials_of_the_registry_uri_never_reach_the_message(http):
    missing_model(http, "churn")
    http.get(f"{API}/registered-models/search", json={"registered_models": []})
    client = client_for("http://alice:pa55-word@registry.test")

    with pytest.raises(ModelNotFoundError) as caught:
        client.get_model("churn")

    assert caught.value.registry_uri == URI
    assert "pa55-word" not in str(caught.value)
    assert "alice" not in str(caught.value)


# ============================================================================ URIs without a scheme


@pytest.mark.parametrize(
    ("uri", "meant"),
    [
        ("localhost:5000", "http://localhost:5000"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("myhost:5000/path", "http://myhost:5000/path"),
        ("mlflow.internal.example:443", "http://mlflow.internal.example:443"),
        ("[::1]:5000", "http://[::1]:5000"),
    ],
)
def test_a_server_address_without_a_scheme_says_the_form_that_works(uri, meant):
    with pytest.raises(ConfigurationError) as caught:
        rs.RegistryClient(uri)

    assert isinstance(caught.value, (RegistryError, ValueError))
    assert f"'{meant}'" in str(caught.value)
    assert "the tracking_uri argument" in str(caught.value)


def test_the_message_names_the_variable_the_uri_came_from():
    with pytest.raises(ConfigurationError, match="MLFLOW_TRACKING_URI is 'localhost:5000'"):
        Settings.resolve(env={"MLFLOW_TRACKING_URI": "localhost:5000"})
    with pytest.raises(ConfigurationError, match="MLFLOW_REGISTRY_URI is 'reg:8080'"):
        Settings.resolve("http://h", env={"MLFLOW_REGISTRY_URI": "reg:8080"})
    with pytest.raises(ConfigurationError, match="the registry_uri argument"):
        Settings.resolve("http://h", registry_uri="reg:8080", env={})


def test_a_password_in_a_uri_without_a_scheme_is_never_shown():
    with pytest.raises(ConfigurationError) as caught:
        Settings.resolve("bob:hunter2-pw@mlflow-host:5000", env={})
    assert "hunter2-pw" not in str(caught.value)
    assert "'http://***@mlflow-host:5000'" in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "mlruns",
        "./mlruns",
        "/srv/mlruns",
        "sqlite:///mlflow.db",
        "sqlite:////tmp/x.db",
        "file:./mlruns",
        "file:///tmp/mlruns",
        "databricks",
        "databricks-uc",
        "http://localhost:5000",
        "https://mlflow.example",
        "postgresql://u:p@db:5432/mlflow",
    ],
)
def test_paths_and_uris_with_a_scheme_stay_valid(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings.resolve(uri, env={}).registry_is_default is False


def test_only_an_unset_registry_is_the_default():
    assert Settings.resolve(env={}).registry_is_default is True
    assert Settings.resolve("sqlite:///mlflow.db", env={}).registry_is_default is False
    env = {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}
    assert Settings.resolve(env=env).registry_is_default is False
    env = {"MLFLOW_REGISTRY_URI": "sqlite:///reg.db"}
    assert Settings.resolve(env=env).registry_is_default is False


# ============================================================================ the command line


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_the_cli_reports_a_uri_without_a_scheme_as_a_usage_error():
    result = run(["--tracking-uri", "localhost:5000", "show", "churn/1"])
    assert result.exit_code == 2
    assert "'http://localhost:5000'" in result.stderr
    assert "Traceback" not in result.output


def test_the_cli_reports_a_doubled_at_precisely():
    result = run(["--tracking-uri", "http://registry.test", "show", "churn@@prod"])
    assert result.exit_code == 2
    assert "'@@' doubles the '@'" in result.stderr
    assert "write churn@prod" in result.stderr


def test_the_cli_prints_the_suggestion_and_exits_3(http):
    missing_model(http, "churnn")
    http.get(
        f"{API}/registered-models/search",
        json={"registered_models": [model_json("churn")]},
    )
    result = run(
        ["--tracking-uri", URI, "history", "churnn"], env={"REGISTRY_SDK_MAX_RETRIES": "0"}
    )
    assert result.exit_code == 3, result.output
    assert f"(registry: {URI})" in result.stderr
    assert "Did you mean 'churn'?" in result.stderr


def test_doctor_on_an_unconfigured_directory_creates_no_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    result = run(["doctor", "--json"], env={"REGISTRY_SDK_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reachable"] is True
    assert "MLFLOW_TRACKING_URI" in report["detail"]
    assert not (tmp_path / "mlflow.db").exists()


# ============================================================================ the embedded store


@pytest.fixture
def unconfigured(tmp_path, monkeypatch):
    """A working directory with no mlflow.db, and no registry named anywhere."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REGISTRY_SDK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize(
    "read",
    [
        lambda c: c.get_model("churn"),
        lambda c: c.resolve("churn@prod"),
        lambda c: list(c.search_models()),
        lambda c: c.set_alias("churn", "prod", 1),
        lambda c: rs.load_model("churn@prod", client=c),
    ],
)
def test_a_read_on_the_unconfigured_default_creates_no_database(unconfigured, read):
    with pytest.raises(ConfigurationError) as caught:
        read(rs.RegistryClient())
    assert "no registry configured" in str(caught.value)
    assert not (unconfigured / "mlflow.db").exists()


def test_a_store_uri_mlflow_cannot_open_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = rs.RegistryClient("ftp://files.example/x", cache_dir=tmp_path / "cache")
    with pytest.raises(
        ConfigurationError, match=r"cannot open the registry ftp://files\.example/x"
    ):
        client.get_model("churn")

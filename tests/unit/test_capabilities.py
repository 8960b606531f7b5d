"""Server capabilities: what an older server lacks is named, never taken for a missing object.

Old servers are simulated with ``responses`` the way they really answer: an MLflow 2.x server
(Flask) answers a route it does not have with 404 and an HTML page; a 3.x one checks that the
model exists before looking an alias up, a 2.x one does not. Real 3.x servers are covered by
the integration suite.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
from registry_sdk._capabilities import (
    FEATURES,
    OLDEST_SUPPORTED,
    Capabilities,
    feature_of_endpoint,
    parse_server_version,
)
from registry_sdk.cli import cli
from registry_sdk.errors import (
    AliasNotFoundError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    UnsupportedServerError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    import requests

#: What Flask (MLflow 2.x's server) answers for a route it does not have.
FLASK_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please "
    "check your spelling and try again.</p>\n"
)
HTML = {"Content-Type": "text/html; charset=utf-8"}
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MLMODEL = b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: x\n"
JSON = {"Content-Type": "application/json"}

Reply = tuple[int, dict[str, str], str]


class OldServer:
    """An MLflow server of ``version``: only the routes that release has, answered its way.

    ``hide_version``: a proxy in front answers ``/version`` with its own 404 page.
    """

    def __init__(self, http: Any, version: str, *, hide_version: bool = False) -> None:
        self.version = version
        self.hide_version = hide_version
        self.caps = Capabilities(version)
        self.models: dict[str, dict[str, int]] = {}
        self.versions: set[tuple[str, int]] = set()
        self.seen: list[str] = []
        for method in ("GET", "POST", "DELETE", "PATCH"):
            http.add_callback(method, re.compile(re.escape(URI) + r"/.*"), callback=self)

    def add(self, name: str, versions: int = 1, aliases: dict[str, int] | None = None) -> None:
        self.models[name] = dict(aliases or {})
        self.versions |= {(name, n) for n in range(1, versions + 1)}

    def endpoints(self) -> Counter[str]:
        return Counter(self.seen)

    # ------------------------------------------------------------------ dispatch

    def __call__(self, request: requests.PreparedRequest) -> Reply:
        path = urlsplit(str(request.url)).path
        api = API.removeprefix(URI) + "/"
        # "registered-models/alias" below the API; "/version", "/health", artifacts as they are.
        self.seen.append(path.removeprefix(api))
        method = request.method or "GET"
        args = {k: v[0] for k, v in query(request).items()}
        if request.body:
            args.update(json.loads(request.body))
        if path == "/health":
            return 200, {}, "OK"
        if path == "/version":
            return (404, HTML, FLASK_404) if self.hide_version else (200, {}, self.version)
        endpoint = path.removeprefix(API.removeprefix(URI))
        feature = feature_of_endpoint(endpoint)
        if feature is not None and not self.caps.supports(feature):
            return 404, HTML, FLASK_404
        handler = {
            ("GET", "/registered-models/get"): self._get_model,
            ("POST", "/registered-models/create"): self._create_model,
            ("DELETE", "/registered-models/delete"): self._delete_model,
            ("POST", "/registered-models/set-tag"): lambda _: (200, JSON, "{}"),
            ("GET", "/model-versions/get"): self._get_version,
            ("GET", "/registered-models/alias"): self._get_alias,
            ("POST", "/registered-models/alias"): self._set_alias,
            ("GET", "/webhooks"): lambda _: (200, JSON, json.dumps({"webhooks": []})),
            ("GET", "/model-versions/get-download-uri"): self._download_uri,
        }.get((method, endpoint))
        if path == ARTIFACTS:
            listing = [{"path": "MLmodel", "is_dir": False, "file_size": len(MLMODEL)}]
            return 200, JSON, json.dumps({"files": listing})
        if path.startswith(ARTIFACTS + "/") and path.endswith("/MLmodel"):
            return 200, {"Content-Type": "application/octet-stream"}, MLMODEL.decode()
        if handler is None:
            return 404, HTML, FLASK_404
        return handler(args)

    # ------------------------------------------------------------------ endpoints

    def _missing_model(self, name: str) -> Reply:
        body = error_body("RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found")
        return 404, JSON, json.dumps(body)

    def _get_model(self, args: dict[str, Any]) -> Reply:
        name = args["name"]
        if name not in self.models:
            return self._missing_model(name)
        aliases = self.models[name] if self.caps.supports("aliases") else None
        return 200, JSON, json.dumps({"registered_model": model_json(name, aliases=aliases)})

    def _create_model(self, args: dict[str, Any]) -> Reply:
        self.models[args["name"]] = {}
        return 200, JSON, json.dumps({"registered_model": model_json(args["name"])})

    def _delete_model(self, args: dict[str, Any]) -> Reply:
        self.models.pop(args["name"], None)
        return 200, JSON, "{}"

    def _get_version(self, args: dict[str, Any]) -> Reply:
        name, number = args["name"], int(args["version"])
        if (name, number) not in self.versions:
            message = f"Model Version (name={name}, version={number}) not found"
            return 404, JSON, json.dumps(error_body("RESOURCE_DOES_NOT_EXIST", message))
        return 200, JSON, json.dumps({"model_version": version_json(name, number)})

    def _download_uri(self, args: dict[str, Any]) -> Reply:
        root = f"mlflow-artifacts:/{args['name']}/{args['version']}"
        return 200, JSON, json.dumps({"artifact_uri": root})

    def _get_alias(self, args: dict[str, Any]) -> Reply:
        name, alias = args["name"], args["alias"]
        # MLflow 3 checks the model first; MLflow 2 only looks the alias up.
        if self.caps.supports("logged_models") and name not in self.models:
            return self._missing_model(name)
        number = self.models.get(name, {}).get(alias)
        if number is None:
            message = f"Registered model alias {alias} not found."
            return 400, JSON, json.dumps(error_body("INVALID_PARAMETER_VALUE", message))
        body = {"model_version": version_json(name, number, aliases=[alias])}
        return 200, JSON, json.dumps(body)

    def _set_alias(self, args: dict[str, Any]) -> Reply:
        self.models[args["name"]][args["alias"]] = int(args["version"])
        return 200, JSON, "{}"


@pytest.fixture
def http():
    with mock_http() as rsps:
        yield rsps


def client_for(server: OldServer) -> rs.RegistryClient:
    del server  # the server answers through the active ``responses`` mock
    return make_client(make_settings(max_retries=0), FakeSleep())


# ============================================================================ the feature table


def test_the_feature_minimums_are_mlflows_releases():
    # Aliases came with MLflow 2.3, the logged-models API with 3.0, registry webhooks with 3.3.
    assert {name: minimum for name, (_, minimum) in FEATURES.items()} == {
        "aliases": "2.3.0",
        "logged_models": "3.0.0",
        "webhooks": "3.3.0",
    }
    assert OLDEST_SUPPORTED == "2.9.0"


@pytest.mark.parametrize(
    ("endpoint", "feature"),
    [
        ("/registered-models/alias", "aliases"),
        ("/api/2.0/mlflow/registered-models/alias?name=m&alias=prod", "aliases"),
        ("/logged-models", "logged_models"),
        ("/api/2.0/mlflow/logged-models/m-123/artifacts/files", "logged_models"),
        ("http://host/prefix/api/2.0/mlflow/logged-models/search", "logged_models"),
        ("/webhooks", "webhooks"),
        ("/webhooks/wh-1/test", "webhooks"),
        ("/registered-models/get", None),
        ("/registered-models/aliases-of-something", None),
        ("/model-versions/get", None),
    ],
)
def test_each_endpoint_family_maps_to_the_feature_that_brought_it(endpoint, feature):
    assert feature_of_endpoint(endpoint) == feature


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("2.9.2", "2.9.2"),
        ("3.17.2\n", "3.17.2"),
        ("3.0.0rc1", "3.0.0rc1"),
        ("3.1.0.dev0", "3.1.0.dev0"),
        (FLASK_404, None),
        ('{"version": "3.1.0"}', None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_release_number_counts_as_the_servers_version(text, version):
    assert parse_server_version(text) == version


def test_a_server_that_does_not_say_its_version_has_unknown_support():
    caps = Capabilities(None)

    assert caps.supported is None
    assert all(caps.supports(feature) for feature in FEATURES)
    assert Capabilities("2.8.1").supported is False
    assert Capabilities("2.9.0").supported is True


# ======================================================================= a server without aliases


def test_resolving_an_alias_on_a_2_2_server_names_the_feature_and_both_versions(http):
    server = OldServer(http, "2.2.0")
    server.add("churn", versions=2)
    client = client_for(server)

    with pytest.raises(UnsupportedServerError) as caught:
        client.resolve("churn@prod")

    error = caught.value
    assert (error.feature, error.server_version, error.minimum) == (
        "model version aliases",
        "2.2.0",
        "2.3.0",
    )
    assert error.status == 404
    assert not isinstance(error, NotFoundError)
    assert "2.2.0" in str(error)
    assert ">= 2.3.0" in str(error)
    assert "html" not in str(error).lower()


def test_every_alias_method_on_a_2_2_server_raises_unsupported_never_not_found(http):
    server = OldServer(http, "2.2.0")
    server.add("churn", versions=2)
    client = client_for(server)

    calls = {
        "resolve": lambda: client.resolve("churn@prod"),
        "resolve models:/": lambda: client.resolve("models:/churn@prod"),
        "get_version": lambda: client.get_version("churn@prod"),
        "set_alias": lambda: client.set_alias("churn", "prod", 1),
        "delete_alias": lambda: client.delete_alias("churn", "prod"),
        "rollback": lambda: client.rollback("churn", "prod"),
        "promote": lambda: client.promote("churn/1", to="prod"),
        "backend.get_version_by_alias": lambda: client.backend.get_version_by_alias("churn", "p"),
        "backend.set_alias": lambda: client.backend.set_alias("churn", "prod", 1),
        "backend.delete_alias": lambda: client.backend.delete_alias("churn", "prod"),
    }
    for what, call in calls.items():
        with pytest.raises(UnsupportedServerError) as caught:
            call()
        assert caught.value.minimum == "2.3.0", what
        assert caught.value.server_version == "2.2.0", what
    # The version is asked once for the whole client, not once per call.
    assert server.endpoints()["/version"] == 1
    # Versions and stages work all the same.
    assert client.resolve("churn/2").version == 2


def test_loading_by_alias_from_a_2_2_server_raises_unsupported(http, tmp_path):
    server = OldServer(http, "2.2.0")
    server.add("churn")
    settings = make_settings(max_retries=0, cache_dir=tmp_path / "cache")
    client = make_client(settings, FakeSleep())

    with pytest.raises(UnsupportedServerError, match="model version aliases"):
        client.load_model("churn@prod")


# ======================================================================= a server hiding /version


def test_a_server_hiding_its_version_is_found_out_by_the_missing_endpoint(http):
    server = OldServer(http, "2.2.0", hide_version=True)
    server.add("churn")
    client = client_for(server)

    with pytest.raises(UnsupportedServerError) as caught:
        client.resolve("churn@prod")

    error = caught.value
    assert (error.feature, error.server_version, error.minimum) == (
        "model version aliases",
        None,
        "2.3.0",
    )
    assert "does not report its version" in str(error)
    assert client.capabilities().server_version is None
    with pytest.raises(UnsupportedServerError):
        client.delete_alias("churn", "prod")  # probed: the alias endpoint itself is missing


def test_a_server_hiding_its_version_behind_a_200_page_is_not_read_as_a_version(http):
    http.get(f"{URI}/health", body="OK")
    http.get(f"{URI}/version", body="<html><body>Sign in</body></html>")
    client = make_client(make_settings(max_retries=0), FakeSleep())

    assert client.server_info().version is None
    assert client.capabilities().server_version is None


# ============================================================================ 2.x: no logged models


@pytest.mark.parametrize("version", ["2.9.2", "2.22.1"])
def test_a_2_x_server_without_logged_models_says_so(http, version):
    server = OldServer(http, version)
    client = client_for(server)

    with pytest.raises(UnsupportedServerError) as caught:
        client.backend._json("POST", "/logged-models", body={"experiment_id": "0"}, action="log")

    assert (caught.value.feature, caught.value.server_version, caught.value.minimum) == (
        "logged models (MLflow 3's model API)",
        version,
        "3.0.0",
    )


@pytest.mark.parametrize("version", ["2.22.1", "3.2.0"])
def test_webhooks_on_a_server_older_than_3_3_raise_unsupported(http, version):
    server = OldServer(http, version)
    client = client_for(server)

    for call in (
        lambda: list(client.list_webhooks()),
        lambda: client.get_webhook("wh-1"),
        lambda: client.create_webhook("w", "https://example.test", ["model_version.created"]),
        lambda: client.delete_webhook("wh-1"),
        lambda: client.test_webhook("wh-1"),
        lambda: client.update_webhook("wh-1", name="x"),
    ):
        with pytest.raises(UnsupportedServerError) as caught:
            call()
        assert (caught.value.minimum, caught.value.server_version) == ("3.3.0", version)


def test_webhooks_on_a_new_enough_server_make_no_version_request(http):
    server = OldServer(http, "3.17.2")

    assert list(client_for(server).list_webhooks()) == []
    assert server.seen == ["webhooks"]


def test_a_new_server_whose_alias_route_is_missing_keeps_a_not_found_naming_the_route(http):
    # MLflow 3 has aliases: a 404 page there means something in front does not route them.
    http.get(f"{URI}/version", body="3.17.2")
    http.get(f"{API}/registered-models/alias", status=404, body=FLASK_404, headers=HTML)
    client = make_client(make_settings(max_retries=0), FakeSleep())

    with pytest.raises(NotFoundError) as caught:
        client.resolve("churn@prod")

    assert type(caught.value) is NotFoundError
    assert "runs MLflow 3.17.2, which has model version aliases" in str(caught.value)
    assert "/api/2.0/mlflow/registered-models/alias" in str(caught.value)


def test_a_missing_route_without_a_feature_names_the_route_not_the_model(http):
    http.get(f"{API}/registered-models/get", status=404, body=FLASK_404, headers=HTML)
    client = make_client(make_settings(max_retries=0), FakeSleep())

    with pytest.raises(NotFoundError) as caught:
        client.get_model("churn")

    assert not isinstance(caught.value, ModelNotFoundError)
    assert "has no endpoint /api/2.0/mlflow/registered-models/get" in str(caught.value)
    assert "MLflow server's root" in str(caught.value)
    assert len(http.calls) == 1  # no version request for a route no feature owns


# ============================================================================ the error matrix


@pytest.mark.parametrize("version", ["2.9.2", "2.22.1", "3.17.2"])
def test_missing_things_raise_the_same_error_on_every_server_version(http, version):
    server = OldServer(http, version)
    server.add("churn", versions=1, aliases={"prod": 1})
    client = client_for(server)

    with pytest.raises(ModelNotFoundError):
        client.resolve("ghost@prod")
    with pytest.raises(ModelNotFoundError):
        client.resolve("ghost/1")
    with pytest.raises(ModelNotFoundError):
        client.backend.get_version_by_alias("ghost", "prod")
    with pytest.raises(ModelNotFoundError):
        client.get_model("ghost")
    with pytest.raises(AliasNotFoundError):
        client.resolve("churn@nosuchalias")
    with pytest.raises(VersionNotFoundError):
        client.resolve("churn/9")
    assert client.resolve("churn@prod").version == 1
    # Telling a missing model from a missing alias never needs the server's version ...
    assert "/version" not in server.seen
    # ... deleting an alias the model lacks asks it once: is it the server that has no aliases?
    with pytest.raises(AliasNotFoundError):
        client.delete_alias("churn", "nosuchalias")
    with pytest.raises(AliasNotFoundError):
        client.rollback("churn", "nosuchalias")
    assert server.endpoints()["/version"] == 1


def test_the_missing_model_check_costs_one_request_on_the_error_path_only(http):
    server = OldServer(http, "2.9.2")
    server.add("churn", versions=1, aliases={"prod": 1})
    backend = client_for(server).backend

    with pytest.raises(ModelNotFoundError):
        backend.get_version_by_alias("ghost", "prod")
    # The check, then one bounded search for close names (this fake has none to offer).
    assert server.seen == [
        "registered-models/alias",
        "registered-models/get",
        "registered-models/search",
    ]

    server.seen.clear()
    assert backend.get_version_by_alias("churn", "prod").version == 1
    assert server.seen == ["registered-models/alias"]


# ============================================================================ hot paths


def test_a_warm_alias_load_makes_one_request_and_never_asks_the_version(http, tmp_path):
    server = OldServer(http, "2.9.2")
    server.add("churn", versions=1, aliases={"prod": 1})
    settings = make_settings(max_retries=0, cache_dir=tmp_path / "cache")
    client = make_client(settings, FakeSleep())
    client.pull("churn@prod")  # cold: fills the cache

    server.seen.clear()
    path = client.pull("churn@prod")

    assert server.seen == ["registered-models/alias"]
    assert (path / "MLmodel").read_bytes() == MLMODEL


def test_capabilities_are_asked_once_per_client(http):
    server = OldServer(http, "2.22.1")
    client = client_for(server)

    assert client.capabilities().server_version == "2.22.1"
    assert client.capabilities().supports("aliases")
    assert not client.capabilities().supports("logged_models")
    assert server.endpoints()["/version"] == 1


# ============================================================================ create_version


def test_create_version_takes_the_model_id_from_a_models_source(http):
    sent: list[dict[str, Any]] = []

    def create(request: requests.PreparedRequest) -> Reply:
        body = json.loads(request.body or b"{}")
        sent.append(body)
        return 200, JSON, json.dumps({"model_version": version_json("churn", 1)})

    http.add_callback("POST", f"{API}/model-versions/create", callback=create)
    http.get(f"{API}/registered-models/get", json={"registered_model": model_json("churn")})
    client = make_client(make_settings(max_retries=0), FakeSleep())

    client.create_version("churn", "models:/m-0123abcd", run_id="r1")
    client.create_version("churn", "models:/m-0123abcd", model_id="m-0123abcd")
    client.create_version("churn", "s3://bucket/model", run_id="r1")

    assert [body.get("model_id") for body in sent] == ["m-0123abcd", "m-0123abcd", None]
    with pytest.raises(InvalidRequestError, match="different logged models"):
        client.create_version("churn", "models:/m-0123abcd", model_id="m-other")
    assert len(sent) == 3


@pytest.mark.parametrize(
    "source", ["models:/churn/3", "models:/churn@prod", "runs:/abc/model", "models:/"]
)
def test_a_source_naming_a_registered_version_carries_no_model_id(http, source):
    sent: list[dict[str, Any]] = []

    def create(request: requests.PreparedRequest) -> Reply:
        sent.append(json.loads(request.body or b"{}"))
        return 200, JSON, json.dumps({"model_version": version_json("churn", 1)})

    http.add_callback("POST", f"{API}/model-versions/create", callback=create)
    http.get(f"{API}/registered-models/get", json={"registered_model": model_json("churn")})
    client = make_client(make_settings(max_retries=0), FakeSleep())

    client.create_version("churn", source)

    assert "model_id" not in sent[0]


# ============================================================================ the embedded store


def test_the_embedded_store_takes_its_capabilities_from_the_installed_mlflow(tmp_path):
    import mlflow

    client = rs.RegistryClient(f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=tmp_path / "c")
    caps = client.capabilities()

    assert caps.server_version == mlflow.__version__
    assert caps.embedded


def test_webhooks_on_an_embedded_store_with_an_older_mlflow_raise_unsupported(tmp_path):
    client = rs.RegistryClient(f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=tmp_path / "c")
    backend = client.backend
    backend._capabilities = Capabilities("2.22.0", embedded=True)  # as mlflow 2.22 installed

    with pytest.raises(UnsupportedServerError) as caught:
        list(client.list_webhooks())

    assert (caught.value.server_version, caught.value.minimum) == ("2.22.0", "3.3.0")
    assert "installed mlflow is 2.22.0" in str(caught.value)


def test_the_embedded_store_raises_model_not_found_for_a_missing_models_alias(tmp_path):
    client = rs.RegistryClient(f"sqlite:///{tmp_path / 'mlflow.db'}", cache_dir=tmp_path / "c")
    client.create_model("churn")

    with pytest.raises(ModelNotFoundError):
        client.resolve("ghost@prod")
    with pytest.raises(ModelNotFoundError):
        client.resolve("ghost/1")
    with pytest.raises(AliasNotFoundError):
        client.resolve("churn@prod")


# ============================================================================ doctor


def doctor(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["doctor", *args], env=env, catch_exceptions=False)


@pytest.mark.parametrize(
    ("version", "lines"),
    [
        (
            "3.17.2",
            ["aliases        available", "logged_models  available", "webhooks       available"],
        ),
        (
            "2.22.1",
            [
                "aliases        available",
                "logged_models  needs server >= 3.0.0",
                "webhooks       needs server >= 3.3.0",
            ],
        ),
    ],
)
def test_doctor_prints_the_server_version_and_a_line_per_feature(http, version, lines):
    OldServer(http, version)

    result = doctor(env={"MLFLOW_TRACKING_URI": URI})

    assert result.exit_code == 0, result.output
    assert re.search(rf"^server_version\s+{re.escape(version)}$", result.stdout, re.MULTILINE)
    for line in lines:
        assert f"feature {line}" in result.stdout
    assert re.search(r"^supported\s+yes$", result.stdout, re.MULTILINE)


def test_doctor_warns_and_exits_6_when_the_server_is_older_than_supported(http):
    OldServer(http, "2.2.0")

    result = doctor(env={"MLFLOW_TRACKING_URI": URI})

    assert result.exit_code == 6
    assert "feature aliases        needs server >= 2.3.0" in result.stdout
    assert "older than 2.9.0, the oldest registry_sdk supports" in result.stderr


def test_doctor_json_lists_features_and_support(http):
    OldServer(http, "2.9.2")

    result = doctor("--json", env={"MLFLOW_TRACKING_URI": URI})

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["server_version"] == "2.9.2"
    assert report["supported"] is True
    assert report["features"] == {
        "aliases": {"available": True, "minimum": "2.3.0"},
        "logged_models": {"available": False, "minimum": "3.0.0"},
        "webhooks": {"available": False, "minimum": "3.3.0"},
    }


def test_doctor_json_on_an_unsupported_server(http):
    OldServer(http, "2.2.0")

    result = doctor("--json", env={"MLFLOW_TRACKING_URI": URI})

    assert result.exit_code == 6
    report = json.loads(result.stdout)
    assert report["supported"] is False
    assert report["features"]["aliases"] == {"available": False, "minimum": "2.3.0"}


def test_doctor_on_a_server_hiding_its_version_cannot_tell(http):
    OldServer(http, "3.17.2", hide_version=True)

    result = doctor("--json", env={"MLFLOW_TRACKING_URI": URI})

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["server_version"] is None
    assert report["supported"] is None
    assert report["features"]["webhooks"] == {"available": None, "minimum": "3.3.0"}

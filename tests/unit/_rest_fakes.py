"""Test doubles for the REST backend: settings, a recording sleep, a stateful fake MLflow server.

Nothing here touches the network: every request goes through a ``responses.RequestsMock``,
except to :func:`loopback_server`, a real HTTP server for what a mock cannot do (wait before a
reply, or in the middle of one).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from registry_sdk import _tags
from registry_sdk._backends.rest import RestBackend
from registry_sdk._config import Settings
from registry_sdk.client import RegistryClient

if TYPE_CHECKING:
    from collections.abc import Iterator

URI = "http://registry.test"
API = URI + "/api/2.0/mlflow"


def make_settings(uri: str = URI, *, env: dict[str, str] | None = None, **kwargs: Any) -> Settings:
    """Settings for ``uri`` from an explicit env dict, so the real environment never leaks in."""
    return Settings.resolve(uri, env=dict(env or {}), **kwargs)


class FakeSleep:
    """Records every wait instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(settings: Settings, sleep: FakeSleep) -> RegistryClient:
    """A client over a RestBackend, both waiting through ``sleep``."""
    backend = RestBackend(settings, sleep=sleep)
    client = RegistryClient.from_backend(backend, settings)
    client._sleep = sleep
    return client


def mock_http() -> responses.RequestsMock:
    """A fresh mock; a request no rule matches fails with ConnectionError."""
    return responses.RequestsMock(assert_all_requests_are_fired=False)


def query(request: requests.PreparedRequest) -> dict[str, list[str]]:
    """The query parameters of a recorded request."""
    return parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True)


def error_body(code: str, message: str) -> dict[str, str]:
    """MLflow's error reply."""
    return {"error_code": code, "message": message}


def version_json(name: str, version: int, **extra: Any) -> dict[str, Any]:
    """A ``model_version`` object as MLflow's REST API sends it (version as a string)."""
    return {
        "name": name,
        "version": str(version),
        "creation_timestamp": 1_700_000_000_000 + version,
        "last_updated_timestamp": 1_700_000_000_000 + version,
        "current_stage": "None",
        "source": f"s3://bucket/{name}/{version}",
        "run_id": f"run-{version}",
        "status": "READY",
        **extra,
    }


def model_json(name: str, *, aliases: dict[str, int] | None = None, **extra: Any) -> dict[str, Any]:
    """A ``registered_model`` object as MLflow's REST API sends it."""
    body: dict[str, Any] = {
        "name": name,
        "creation_timestamp": 1_700_000_000_000,
        "last_updated_timestamp": 1_700_000_000_000,
        **extra,
    }
    if aliases:
        body["aliases"] = [{"alias": a, "version": str(v)} for a, v in aliases.items()]
    return body


# --------------------------------------------------------------------------------------------
# A stateful fake MLflow server

_CLAUSE = re.compile(
    r"""^\s*(?:name|tags\.`(?P<tag>[^`]+)`)\s*=\s*(?P<q>['"])(?P<value>.*)(?P=q)\s*$"""
)


def parse_filter(text: str) -> list[tuple[str | None, str]]:
    """Parse ``name = '...' AND tags.`k` = '...'``; ``(None, v)`` is the name clause.

    Anything else raises ValueError, which the fake answers with 400 so that a test notices.
    """
    clauses: list[tuple[str | None, str]] = []
    for part in text.split(" AND "):
        match = _CLAUSE.match(part)
        if match is None:
            msg = f"unsupported filter clause {part!r}"
            raise ValueError(msg)
        clauses.append((match["tag"], match["value"]))
    return clauses


def _reply(status: int, payload: object) -> tuple[int, dict[str, str], str]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload)


class FakeMlflowServer:
    """Models and versions in dicts, served through ``responses`` callbacks.

    Knobs for failures of ``model-versions/create`` (each counts down once per call):

    * ``fail_before_create``: answer 503 without creating anything;
    * ``lose_reply_after_create``: create the version, then raise ``lost_reply_error``
      instead of replying;
    * ``stall_create``: do not create now and raise ConnectionError; the request "lands"
      later, just before the next create (a slow duplicate from an earlier attempt);
    * ``unreachable``: every create raises ConnectionError before doing anything.
    """

    def __init__(self, http: responses.RequestsMock) -> None:
        self.models: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self._next_version: dict[str, int] = {}
        self.create_calls = 0
        self.search_filters: list[str] = []
        self.fail_before_create = 0
        self.lose_reply_after_create = 0
        self.lost_reply_error: type[requests.RequestException] = requests.ConnectionError
        self.stall_create = 0
        self.unreachable = False
        self._stalled: list[dict[str, Any]] = []

        http.add_callback("GET", f"{API}/registered-models/get", callback=self._get_model)
        http.add_callback("POST", f"{API}/model-versions/create", callback=self._create_version)
        http.add_callback("GET", f"{API}/model-versions/get", callback=self._get_version)
        http.add_callback("GET", f"{API}/model-versions/search", callback=self._search_versions)
        http.add_callback("DELETE", f"{API}/model-versions/delete", callback=self._delete_version)

    # ------------------------------------------------------------------ state

    def add_model(self, name: str, *, aliases: dict[str, int] | None = None) -> None:
        self.models[name] = {"aliases": dict(aliases or {})}
        self.versions[name] = []
        self._next_version[name] = 1

    def versions_of(self, name: str) -> list[dict[str, Any]]:
        return list(self.versions.get(name, []))

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        number = self._next_version[name]
        self._next_version[name] = number + 1
        created = version_json(name, number, source=body["source"], tags=body.get("tags", []))
        if "run_id" in body:
            created["run_id"] = body["run_id"]
        self.versions[name].append(created)
        return created

    def _with_aliases(self, version: dict[str, Any]) -> dict[str, Any]:
        aliases = self.models[version["name"]]["aliases"]
        return {
            **version,
            "aliases": sorted(a for a, v in aliases.items() if str(v) == version["version"]),
        }

    def _missing_model(self, name: str) -> tuple[int, dict[str, str], str]:
        return _reply(
            404,
            error_body("RESOURCE_DOES_NOT_EXIST", f"Registered Model with name={name} not found"),
        )

    def _find(self, name: str, version: str) -> dict[str, Any] | None:
        return next((v for v in self.versions.get(name, []) if v["version"] == version), None)

    # ------------------------------------------------------------------ endpoints

    def _get_model(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        name = query(request)["name"][0]
        if name not in self.models:
            return self._missing_model(name)
        aliases = self.models[name]["aliases"]
        return _reply(200, {"registered_model": model_json(name, aliases=aliases)})

    def _create_version(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        self.create_calls += 1
        body = json.loads(request.body or b"{}")
        if self.unreachable:
            msg = "Connection refused"
            raise requests.ConnectionError(msg)
        if self.fail_before_create > 0:
            self.fail_before_create -= 1
            return _reply(503, error_body("TEMPORARILY_UNAVAILABLE", "the server is restarting"))
        if body["name"] not in self.models:
            return self._missing_model(body["name"])
        if self.stall_create > 0:
            self.stall_create -= 1
            self._stalled.append(body)
            msg = "Read timed out"
            raise requests.ConnectionError(msg)
        for late in self._stalled:  # the slow request from an earlier attempt lands first
            self._store(late)
        self._stalled.clear()
        created = self._store(body)
        if self.lose_reply_after_create > 0:
            self.lose_reply_after_create -= 1
            msg = "Connection reset by peer"
            raise self.lost_reply_error(msg)
        return _reply(200, {"model_version": created})

    def _get_version(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        params = query(request)
        name, number = params["name"][0], params["version"][0]
        found = self._find(name, number)
        if found is None:
            message = f"Model Version (name={name}, version={number}) not found"
            return _reply(404, error_body("RESOURCE_DOES_NOT_EXIST", message))
        return _reply(200, {"model_version": self._with_aliases(found)})

    def _delete_version(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        found = self._find(body["name"], body["version"])
        if found is None:
            return _reply(404, error_body("RESOURCE_DOES_NOT_EXIST", "Model Version not found"))
        self.versions[body["name"]].remove(found)
        return _reply(200, {})

    def _search_versions(
        self, request: requests.PreparedRequest
    ) -> tuple[int, dict[str, str], str]:
        params = query(request)
        text = params.get("filter", [""])[0]
        self.search_filters.append(text)
        try:
            clauses = parse_filter(text)
        except ValueError as exc:
            return _reply(400, error_body("INVALID_PARAMETER_VALUE", str(exc)))
        found = [v for vs in self.versions.values() for v in vs]
        for tag, value in clauses:
            if tag is None:
                found = [v for v in found if v["name"] == value]
            else:
                found = [v for v in found if {"key": tag, "value": value} in v.get("tags", [])]
        descending = params.get("order_by", [""])[0].endswith("DESC")
        found.sort(key=lambda v: int(v["version"]), reverse=descending)
        found = found[: int(params.get("max_results", ["1000"])[0])]
        # Like MLflow, a search reply carries no aliases.
        return _reply(200, {"model_versions": found})


def key_tag(version: dict[str, Any]) -> str | None:
    """The idempotency key a stored version was created with."""
    for tag in version.get("tags", []):
        if tag["key"] == _tags.IDEMPOTENCY_KEY:
            return str(tag["value"])
    return None


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering with ``handler``; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

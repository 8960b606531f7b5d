"""Fuzz: malformed server replies and arbitrary references yield only typed ``RegistryError``s.

A small fake MLflow server (served with ``responses``, no network) answers every call a client
read method makes with a valid reply, except one call, chosen by hypothesis, whose reply is
damaged: truncated JSON, a field of the wrong type, a missing field, an HTML error page from a
proxy, an empty or binary body, a JSON value that is not an object, an MLflow error with odd
types. Whatever the damage, a read method returns a typed result or raises a
:class:`~registry_sdk.RegistryError`; never a raw ``KeyError``, ``JSONDecodeError``,
``TypeError``, ``AttributeError``, ...

References get the same treatment: any text is either parsed into a reference that prints
back to itself, or refused with :class:`~registry_sdk.InvalidReferenceError`; resolving any
text against the fake server raises nothing but ``RegistryError``.

Downloads run the real code, into real temporary folders: a hostile server answers the
download location (local paths, ``file:``, http(s), ``models:``, ...), the artifact listing
(odd names, sizes and folders, listings that repeat or nest forever) and the file bodies.
Only a ``RegistryError`` escapes, nothing is written outside the destination, and a failed
download leaves none. The one stand-in: MLflow's clients for stores off this machine (s3:,
gs:, ...) are not called; everything that speaks HTTP goes to the fake through ``responses``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from _rest_fakes import URI, FakeSleep, make_client, make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_sdk import InvalidReferenceError, ModelRef, RegistryError, _download, parse_ref
from registry_sdk.entities import ModelVersion, RegisteredModel

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PRESIGNED = "/api/2.0/mlflow-artifacts/presigned"
MLMODEL = b"artifact_path: model\nflavors:\n  python_function:\n    loader_module: x\n"
#: Examples per read method; raise it for a deeper run (REGISTRY_SDK_FUZZ_EXAMPLES=1000).
EXAMPLES = int(os.environ.get("REGISTRY_SDK_FUZZ_EXAMPLES", "60"))
#: The same examples on every run (CI stays reproducible); REGISTRY_SDK_FUZZ_RANDOM=1 explores.
RANDOM = os.environ.get("REGISTRY_SDK_FUZZ_RANDOM", "") == "1"
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ============================================================================ the fake server


def _version(name: str, version: int) -> dict[str, Any]:
    return {
        "name": name,
        "version": str(version),
        "creation_timestamp": 1_700_000_000_000 + version,
        "last_updated_timestamp": 1_700_000_000_000 + version,
        "current_stage": "Production" if version == 1 else "None",
        "source": f"mlflow-artifacts:/0/{name}/{version}/artifacts",
        "run_id": f"run{version}",
        "status": "READY",
        "aliases": ["prod"] if version == 1 else [],
        "tags": [
            {"key": "registry_sdk.metrics.accuracy", "value": str(0.5 + version / 10)},
            {"key": "registry_sdk.idempotency_key", "value": "k"},
            {"key": "registry_sdk.env.packages", "value": '{"numpy": "2.0"}'},
        ],
    }


def _model(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "creation_timestamp": 1_700_000_000_000,
        "last_updated_timestamp": 1_700_000_000_001,
        "description": "d",
        "aliases": [{"alias": "prod", "version": "1"}, {"alias": "staging", "version": "2"}],
        "latest_versions": [{"name": name, "version": "2"}],
        "tags": [
            {"key": "registry_sdk.promotion_order", "value": "staging,prod"},
            {
                "key": "registry_sdk.alias_log.1700000000000.abcd1234",
                "value": json.dumps(
                    {
                        "alias": "prod",
                        "from": None,
                        "to": 1,
                        "by": "me",
                        "at": "2023-11-14T22:13:20+00:00",
                        "reason": "r",
                    }
                ),
            },
        ],
    }


def _run(run_id: str) -> dict[str, Any]:
    return {
        "info": {
            "run_id": run_id,
            "experiment_id": "0",
            "status": "FINISHED",
            "user_id": "me",
            "start_time": 1_700_000_000_000,
            "end_time": 1_700_000_000_100,
        },
        "data": {
            "params": [{"key": "n", "value": "3"}],
            "metrics": [{"key": "accuracy", "value": 0.9, "timestamp": 1, "step": 0}],
            "tags": [{"key": "mlflow.user", "value": "me"}],
        },
    }


def _webhook(webhook_id: str) -> dict[str, Any]:
    return {
        "webhook_id": webhook_id,
        "name": "hook",
        "url": "https://example.invalid/hook",
        "events": [{"entity": "model_version", "action": "created"}],
        "status": "ACTIVE",
        "creation_timestamp": 1_700_000_000_000,
        "last_updated_timestamp": 1_700_000_000_000,
    }


def _arg(request: Any, key: str, default: str = "") -> str:
    query = parse_qs(urlsplit(str(request.url)).query)
    if key in query:
        return query[key][0]
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = {}
    value = body.get(key, default) if isinstance(body, dict) else default
    return str(value)


def _version_arg(request: Any) -> int:
    raw = _arg(request, "version", "1")
    return int(raw) if raw.isdigit() else 1


def _artifact_listing(request: Any) -> dict[str, Any]:
    # Files at the top only: a listing of sub-folders that never ends is not the point here.
    if _arg(request, "path").count("/") > 3:  # deeper than 0/m/1/artifacts
        return {"files": []}
    return {"files": [{"path": "MLmodel", "is_dir": False, "file_size": len(MLMODEL)}]}


def _alias_target(request: Any) -> dict[str, Any]:
    version = 2 if _arg(request, "alias") == "staging" else 1
    return {"model_version": _version(_arg(request, "name", "m") or "m", version)}


def _download_uri(request: Any) -> dict[str, Any]:
    name = _arg(request, "name", "m") or "m"
    return {"artifact_uri": f"mlflow-artifacts:/0/{name}/{_version_arg(request)}/artifacts"}


#: (method, path under /api/2.0/mlflow) -> the reply body.
_ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/registered-models/get"): lambda r: {
        "registered_model": _model(_arg(r, "name", "m") or "m")
    },
    ("GET", "/registered-models/search"): lambda _: {
        "registered_models": [_model("m"), _model("n")]
    },
    ("GET", "/model-versions/get"): lambda r: {
        "model_version": _version(_arg(r, "name", "m") or "m", _version_arg(r))
    },
    ("GET", "/model-versions/search"): lambda _: {
        "model_versions": [_version("m", 2), _version("m", 1)]
    },
    ("GET", "/registered-models/alias"): _alias_target,
    ("POST", "/registered-models/get-latest-versions"): lambda r: {
        "model_versions": [_version(_arg(r, "name", "m") or "m", 1)]
    },
    ("GET", "/model-versions/get-download-uri"): _download_uri,
    ("GET", "/runs/get"): lambda r: {"run": _run(_arg(r, "run_id", "run1"))},
    ("GET", "/experiments/get"): lambda _: {
        "experiment": {"experiment_id": "0", "name": "Default"}
    },
    ("GET", "/webhooks"): lambda _: {"webhooks": [_webhook("w1"), _webhook("w2")]},
}


def valid_reply(request: Any) -> tuple[int, dict[str, str], bytes]:
    """What a healthy MLflow server answers (a small registry: model ``m``, versions 1, 2)."""
    path = urlsplit(str(request.url)).path
    as_json = {"Content-Type": "application/json"}
    if path == "/health":
        return 200, {}, b"OK"
    if path == "/version":
        return 200, {}, b"3.17.2"
    if path == ARTIFACTS:
        return 200, as_json, json.dumps(_artifact_listing(request)).encode()
    if path.startswith(ARTIFACTS + "/"):
        return 200, {"Content-Type": "application/octet-stream"}, MLMODEL
    if path.startswith(PRESIGNED + "/"):  # as an MLflow 2 server, or one over a local directory
        missing = {"error_code": "ENDPOINT_NOT_FOUND", "message": "no presigned URLs"}
        return 404, as_json, json.dumps(missing).encode()
    endpoint = path.removeprefix(API)
    route = _ROUTES.get((request.method, endpoint))
    if route is not None:
        body = route(request)
    elif request.method == "GET" and endpoint.startswith("/webhooks/"):
        body = {"webhook": _webhook(endpoint.rsplit("/", 1)[1])}
    else:
        body = {}
    return 200, as_json, json.dumps(body).encode()


# ============================================================================ damage


_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "1", "-1", "0", "1e400", "NaN", "prod", "../..", "\x00", "<html>"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["key", "value", "alias", "version", "x"]), st.integers()),
)

_HTML_PAGE = (
    "<html><head><title>{status} Error</title></head><body><h1>{status}</h1>"
    "<p>The upstream server is unavailable.</p><hr>nginx</body></html>"
)


@dataclass
class Damage:
    """How to spoil one reply: ``kind`` and its parameters (drawn by hypothesis)."""

    kind: str
    status: int = 200
    cut: float = 0.5
    path_choice: int = 0
    value: Any = None
    raw: bytes = b""
    error: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Damage({self.kind!r}, status={self.status}, cut={self.cut:.2f}, "
            f"path_choice={self.path_choice}, value={self.value!r}, raw={self.raw[:20]!r}, "
            f"error={self.error!r})"
        )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as key/index paths (the root excluded)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.append((*prefix, index))
            out.extend(_paths(child, (*prefix, index)))
    return out


def _apply(doc: Any, path: tuple[Any, ...], *, delete: bool, value: Any = None) -> None:
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


def damage_reply(
    reply: tuple[int, dict[str, str], bytes], damage: Damage
) -> tuple[int, dict[str, str], bytes]:
    """The reply ``damage`` makes of a valid one."""
    status, headers, body = reply
    if damage.kind == "truncate":
        return damage.status, headers, body[: int(len(body) * damage.cut)]
    if damage.kind == "html":
        page = _HTML_PAGE.format(status=damage.status).encode()
        return damage.status, {"Content-Type": "text/html"}, page
    if damage.kind == "raw":
        return damage.status, headers, damage.raw
    if damage.kind == "mlflow_error":
        return (
            damage.status,
            {"Content-Type": "application/json"},
            json.dumps(damage.error).encode(),
        )
    if damage.kind == "top_level":
        return status, headers, json.dumps(damage.value).encode()
    try:
        doc = json.loads(body)
    except ValueError:  # a file or a plain-text reply: replace it with the odd value instead
        return status, headers, json.dumps(damage.value).encode()
    places = _paths(doc)
    if not places:
        return status, headers, json.dumps(damage.value).encode()
    place = places[damage.path_choice % len(places)]
    _apply(doc, place, delete=damage.kind == "delete", value=damage.value)
    return status, headers, json.dumps(doc).encode()


_STATUSES = st.sampled_from([200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502])
damages = st.one_of(
    st.builds(Damage, kind=st.just("truncate"), status=_STATUSES, cut=st.floats(0.0, 0.99)),
    st.builds(Damage, kind=st.just("html"), status=_STATUSES),
    st.builds(Damage, kind=st.just("raw"), status=_STATUSES, raw=st.binary(max_size=40)),
    st.builds(
        Damage,
        kind=st.just("mlflow_error"),
        status=_STATUSES,
        error=st.fixed_dictionaries(
            {},
            optional={
                "error_code": _ODD_VALUES
                | st.sampled_from(["RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"]),
                "message": _ODD_VALUES | st.just("Registered model alias prod not found."),
            },
        ),
    ),
    st.builds(Damage, kind=st.just("top_level"), value=_ODD_VALUES),
    st.builds(
        Damage,
        kind=st.sampled_from(["retype", "delete"]),
        path_choice=st.integers(0, 10_000),
        value=_ODD_VALUES,
    ),
)


class FuzzServer:
    """Serves valid replies, except the ``target``-th call (0-based), which ``damage`` spoils."""

    def __init__(self, target: int, damage: Damage) -> None:
        self.target = target
        self.damage = damage
        self.calls = 0

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        index = self.calls
        self.calls += 1
        reply = valid_reply(request)
        if index == self.target:
            return damage_reply(reply, self.damage)
        return reply


# ============================================================================ the read methods


def _collect(iterator: Any) -> list[Any]:
    return list(iterator)


READS: dict[str, Any] = {
    "get_model": lambda c: c.get_model("m"),
    "search_models": lambda c: _collect(c.search_models()),
    "get_version": lambda c: c.get_version("m/2"),
    "get_version(name, n)": lambda c: c.get_version("m", 1),
    "search_versions": lambda c: _collect(c.search_versions("m")),
    "search_versions(tags)": lambda c: _collect(c.search_versions(tags={"team": "a"})),
    "resolve(alias)": lambda c: c.resolve("m@prod"),
    "resolve(latest)": lambda c: c.resolve("models:/m@latest"),
    "resolve(stage)": lambda c: c.resolve("m/Production"),
    "find_version_by_key": lambda c: c.find_version_by_key("m", "k"),
    "history": lambda c: c.history("m"),
    "history(alias)": lambda c: c.history("m", alias="prod"),
    "lineage": lambda c: c.lineage("m/1"),
    "diff": lambda c: c.diff("m/1", "m@staging"),
    "check": lambda c: c.check("m/2", ["accuracy >= 0.5", "accuracy >= @prod"]),
    "list_webhooks": lambda c: _collect(c.list_webhooks()),
    "get_webhook": lambda c: c.get_webhook("w1"),
    "server_info": lambda c: c.server_info(),
    "pull": lambda c: c.pull("m/1"),
}


def _client(cache: Path) -> Any:
    return make_client(make_settings(max_retries=0, cache_dir=cache), FakeSleep())


def _serve(http: responses.RequestsMock, handler: Any) -> None:
    anything = re.compile(re.escape(URI) + r"/.*")
    for method in ("GET", "POST", "PATCH", "DELETE"):
        http.add_callback(method, anything, callback=handler)


#: Schemes whose artifact repositories talk HTTP through ``requests`` (which ``responses``
#: intercepts) or need no network at all; MLflow's clients for any other scheme (s3:, gs:,
#: ftp:, ...) would leave the machine.
_INTERCEPTED_SCHEMES = frozenset({"http", "https", "runs", "models", "mlflow-artifacts"})


@contextlib.contextmanager
def _sandbox() -> Any:
    """Let MLflow download only what stays in this process; the SDK's own code runs as is."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    real = mlflow.artifacts.download_artifacts

    def only_intercepted(**kwargs: Any) -> Any:
        uri = str(kwargs.get("artifact_uri"))
        if urlsplit(uri).scheme.lower() in _INTERCEPTED_SCHEMES:
            return real(**kwargs)
        msg = f"unsupported artifact location {uri!r} (fuzz sandbox: would leave the machine)"
        raise MlflowException(msg)

    with mock.patch.object(mlflow.artifacts, "download_artifacts", only_intercepted):
        yield


def _run_read(name: str, server: Any) -> Any:
    cache = Path(tempfile.mkdtemp(prefix="fuzz-cache-"))
    try:
        with _sandbox(), responses.RequestsMock(assert_all_requests_are_fired=False) as http:
            _serve(http, server)
            client = _client(cache)
            with warnings.catch_warnings():
                # A stage reference without an alias warns by design; not what is fuzzed here.
                warnings.simplefilter("ignore", DeprecationWarning)
                return READS[name](client)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(READS))
def test_every_read_method_works_against_the_healthy_fake(name):
    server = FuzzServer(target=-1, damage=Damage("raw"))
    result = _run_read(name, server)
    assert result is not None
    assert server.calls >= 1


@pytest.mark.parametrize("name", sorted(READS))
@FUZZ
@given(data=st.data(), damage=damages)
def test_a_damaged_reply_gives_a_result_or_a_registry_error(name, data, damage):
    # How many calls the healthy method makes bounds which one to damage.
    healthy = FuzzServer(target=-1, damage=damage)
    _run_read(name, healthy)
    target = data.draw(st.integers(0, max(0, healthy.calls - 1)), label="damaged call")
    with contextlib.suppress(RegistryError):  # typed: what the caller can catch
        _run_read(name, FuzzServer(target, damage))


# ============================================================================ references


#: Characters that matter in references, look-alikes included: fullwidth full stop and solidus,
#: division slash, NUL, a zero-width space.
_REF_ALPHABET = st.sampled_from(
    [
        *"ab-_.@/: 7",
        "models:/",
        "latest",
        "Production",
        "\uff0e",
        "\uff0f",
        "\u2215",
        "\x00",
        "\u200b",
        "\u00e9",
    ]
)
references = st.one_of(
    st.text(max_size=40),
    st.lists(_REF_ALPHABET, max_size=12).map("".join),
    st.builds(
        lambda name, sep, target: f"{name}{sep}{target}",
        st.text(min_size=0, max_size=300),
        st.sampled_from(["@", "/", "@@", "//", "/@"]),
        st.text(max_size=20) | st.integers(-5, 10**20).map(str),
    ),
)


@settings(max_examples=400, derandomize=not RANDOM, deadline=None, database=None)
@given(text=references)
def test_any_text_parses_to_a_reference_that_prints_back_or_is_refused(text):
    refused: InvalidReferenceError | None = None
    try:
        ref = parse_ref(text)
    except InvalidReferenceError as exc:
        refused = exc
    if refused is not None:
        assert "valid forms are" in str(refused)  # says what is wrong and what is valid
        return
    assert isinstance(ref, ModelRef)
    assert parse_ref(str(ref)) == ref
    assert parse_ref(ref.uri) == ref
    assert "/" not in ref.name
    assert ref.name.isprintable()  # no NUL, newline or other control character
    assert ref.name not in {".", ".."}
    assert ref.alias is None or (ref.alias.isascii() and ref.alias.isprintable())


@FUZZ
@given(text=references, damage=st.none() | damages)
def test_resolving_any_text_raises_only_registry_errors(text, damage):
    server = FuzzServer(0 if damage is not None else -1, damage or Damage("raw"))
    try:
        result = _run_read_ref(text, server)
    except RegistryError:
        return
    assert isinstance(result, ModelVersion)


def _run_read_ref(text: str, server: Any) -> Any:
    cache = Path(tempfile.mkdtemp(prefix="fuzz-cache-"))
    try:
        with _sandbox(), responses.RequestsMock(assert_all_requests_are_fired=False) as http:
            _serve(http, server)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return _client(cache).resolve(text)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_the_fake_answers_like_mlflow():
    """The valid replies parse into the entities: the fuzz starts from real shapes."""
    assert RegisteredModel.from_json(_model("m")).aliases == {"prod": 1, "staging": 2}
    assert ModelVersion.from_json(_version("m", 2)).metrics == {"accuracy": 0.7}


# ============================================================================ downloads
# The server chooses where the artifacts are, what the listing names and what each file holds.
# The real download code runs against a hostile fake, into a real temporary folder: whatever
# the server sends, only a RegistryError escapes, nothing is written outside the destination,
# this machine's files are never copied (the server is not on loopback), and a failed download
# leaves no destination behind.

_SECRET = b"FUZZ-SECRET-3d9b1c-never-copy-me"
#: Valid names come up often enough that downloads also get as far as the file bodies.
_GOOD_NAMES = st.sampled_from(["MLmodel", "model.pkl", "d", "sub", "x.json"])
_NAMES = st.one_of(
    _GOOD_NAMES,
    _GOOD_NAMES,
    st.sampled_from(
        [
            "..",
            ".",
            "a/b",
            "a\\b",
            "",
            "x\n",
            "\x00",
            "\ud800",
            "a" * 300,
            "\u00e9" * 130,
            "CON",
        ]
    ),
    st.text(max_size=12),
)
_ITEM = st.fixed_dictionaries(
    {"path": _NAMES},
    optional={
        "is_dir": st.one_of(st.booleans(), st.booleans(), _ODD_VALUES),
        "file_size": st.one_of(st.integers(0, 64), st.integers(0, 64), _ODD_VALUES),
    },
)
_ITEMS = st.one_of(*[_ITEM] * 6, _ODD_VALUES)
_PATH_TEXT = st.text(max_size=12).filter(lambda t: ".." not in t)  # stays in the sandbox at HEAD
_DOWNLOAD_URIS = st.one_of(
    # Local forms: {secret} is a folder of this machine holding a secret and an MLmodel.
    st.sampled_from(
        [
            "{secret}",
            "{secret}/id_rsa",
            "file://{secret}",
            "file:{secret}",
            "file://localhost{secret}",
            "file://registry.test{secret}",
            "FILE://{secret}/",
        ]
    ),
    _PATH_TEXT.map(lambda t: "{secret}/" + t),
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "HTTP"]),
        st.sampled_from(["registry.test", "REGISTRY.test", "elsewhere.invalid", "127.0.0.1:9"]),
        st.sampled_from(["", "/", "/x", ARTIFACTS, f"{ARTIFACTS}/0/m/1/artifacts", "/api/2.0"])
        | _PATH_TEXT.map(lambda t: "/" + t),
    ),
    _PATH_TEXT.map(lambda t: "mlflow-artifacts:/" + t),
    st.sampled_from(
        [
            "mlflow-artifacts:/0/m/1/artifacts",
            "mlflow-artifacts://elsewhere.invalid/0/m/1/artifacts",
            "models:/m/1",
            "models:/other@prod",
            "runs:/run1/model",
            "runs:/",
            "s3://bucket/m/1",
        ]
    ),
)


@dataclass
class HostileArtifacts:
    """What the server answers: the location, the root listing, how sub-folders are listed
    (``none``: empty; ``repeat``: like the root; ``forever``: one more folder each time), and
    the status and body of every file."""

    uri: str
    root: list[Any]
    nesting: str
    status: int
    body: bytes


hostile_artifacts = st.builds(
    HostileArtifacts,
    uri=_DOWNLOAD_URIS,
    root=st.lists(_ITEMS, max_size=4),
    nesting=st.sampled_from(["none", "repeat", "forever"]),
    status=st.sampled_from([200, 200, 200, 404, 503]),
    body=st.binary(max_size=64),
)


class HostileArtifactServer:
    """Answers like :func:`valid_reply`, except for the download location and the artifacts."""

    #: Listings served before giving up on a client that never stops asking.
    MAX_LISTINGS = 2000

    def __init__(self, case: HostileArtifacts, uri: str) -> None:
        self.case = case
        self.uri = uri
        self.root_folder: str | None = None
        self.listings = 0

    def _listing(self, folder: str) -> Any:
        self.listings += 1
        if self.listings > self.MAX_LISTINGS:
            return "give up"
        if self.root_folder is None:
            self.root_folder = folder
        if folder == self.root_folder or self.case.nesting == "repeat":
            return self.case.root
        if self.case.nesting == "forever":
            return [{"path": "d", "is_dir": True}]
        return []

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(str(request.url)).path
        as_json = {"Content-Type": "application/json"}
        if path == ARTIFACTS:
            body = {"files": self._listing(_arg(request, "path"))}
            return 200, as_json, json.dumps(body).encode()
        if path.startswith(ARTIFACTS + "/"):
            return self.case.status, {"Content-Type": "application/octet-stream"}, self.case.body
        if path == f"{API}/model-versions/get-download-uri":
            return 200, as_json, json.dumps({"artifact_uri": self.uri}).encode()
        return valid_reply(request)


def _snapshot(root: Path) -> dict[str, Any]:
    """Every entry below ``root`` (links not followed): folders, links and file contents."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = ("link", str(path.readlink()))
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = path.read_bytes()
    return out


def _run_download(case: HostileArtifacts) -> None:
    sandbox = Path(tempfile.mkdtemp(prefix="fuzz-download-"))
    cwd = Path.cwd()
    try:
        secret = sandbox / "secret"
        secret.mkdir()
        (secret / "id_rsa").write_bytes(_SECRET)
        (secret / "MLmodel").write_bytes(MLMODEL)
        (sandbox / "cwd").mkdir()
        dest = sandbox / "out" / "artifacts"
        before = _snapshot(sandbox)
        server = HostileArtifactServer(case, case.uri.replace("{secret}", str(secret)))
        failed: RegistryError | None = None
        # In the sandbox: MLflow's default registry is sqlite:///mlflow.db in the working folder.
        os.chdir(sandbox / "cwd")
        try:
            with _sandbox(), responses.RequestsMock(assert_all_requests_are_fired=False) as http:
                _serve(http, server)
                client = _client(sandbox / "cache")
                try:
                    uri = client.backend.get_download_uri("m", 1)
                    _download.download(
                        uri, dest, backend=client.backend, settings=client.settings, label="m/1"
                    )
                except RegistryError as exc:  # typed: what the caller can catch
                    failed = exc
        finally:
            os.chdir(cwd)
        after = _snapshot(sandbox)
        prefix = "out/artifacts"
        outside = {k: v for k, v in after.items() if k != prefix and not k.startswith(prefix + "/")}
        outside.pop("out", None)  # the destination's parent may be created
        assert outside == before, "something was written outside the destination"
        inside = {k: v for k, v in after.items() if k.startswith(prefix + "/")}
        assert all(v == "dir" or isinstance(v, bytes) for v in inside.values()), inside
        assert not any(isinstance(v, bytes) and _SECRET in v for v in inside.values())
        if failed is not None:
            assert not dest.exists(), f"{failed!r} left {sorted(inside)}"
    finally:
        os.chdir(cwd)
        shutil.rmtree(sandbox, ignore_errors=True)


@FUZZ
@given(case=hostile_artifacts)
def test_a_hostile_download_raises_only_registry_errors_and_writes_only_into_dest(case):
    _run_download(case)


@pytest.mark.parametrize(
    "uri",
    ["{secret}", "file://{secret}", "http://registry.test/x", "https://elsewhere.invalid/a"],
)
def test_the_download_fuzz_reaches_the_real_download_code(uri):
    """The hand-picked cases the fuzz must never lose: local paths and http(s) locations."""
    _run_download(HostileArtifacts(uri, [], "none", 200, b""))

"""The REST backend against a mocked MLflow server.

Retries and ``Retry-After``, the mapping of error replies to typed errors, replies that are not
MLflow's API, transparent paging, and the shape of the requests sent.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests
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
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from registry_sdk._backends.rest import RETRY_STATUSES, RestBackend, parse_retry_after
from registry_sdk.entities import ModelVersion, RegisteredModel
from registry_sdk.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    InvalidRequestError,
    InvalidResponseError,
    ModelNotFoundError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnavailableError,
    VersionNotFoundError,
)

GET_MODEL = f"{API}/registered-models/get"
GET_VERSION = f"{API}/model-versions/get"
SEARCH_VERSIONS = f"{API}/model-versions/search"
SEARCH_MODELS = f"{API}/registered-models/search"
ALIAS = f"{API}/registered-models/alias"


@pytest.fixture
def http():
    with mock_http() as rsps:
        yield rsps


@pytest.fixture
def sleep():
    return FakeSleep()


@pytest.fixture
def client(sleep):
    return make_client(make_settings(max_retries=3), sleep)


def backend_with(sleep, **kwargs) -> RestBackend:
    return RestBackend(make_settings(**kwargs), sleep=sleep)


# ============================================================================ retries


def test_a_503_then_a_200_succeeds_after_one_sleep(http, client, sleep):
    http.get(GET_MODEL, status=503, json=error_body("TEMPORARILY_UNAVAILABLE", "busy"))
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    model = client.get_model("churn")

    assert model.name == "churn"
    assert len(http.calls) == 2
    assert len(sleep.calls) == 1
    assert 0.25 <= sleep.calls[0] <= 0.5  # first backoff: 0.5 s with jitter down to half


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_every_transient_status_is_retried(http, sleep, status):
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=status, body="busy")
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    assert backend.get_model("churn").name == "churn"
    assert len(sleep.calls) == 1


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("Connection refused"),
        requests.ReadTimeout("Read timed out"),
        requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    ],
    ids=["connection-refused", "read-timeout", "reply-cut-off"],
)
def test_network_failures_are_retried(http, sleep, failure):
    backend = backend_with(sleep)
    http.get(GET_MODEL, body=failure)
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    assert backend.get_model("churn").name == "churn"
    assert len(sleep.calls) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(http, sleep, status):
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=status, json=error_body("SOME_ERROR", "no"))

    with pytest.raises(RegistryError):
        backend.get_model("churn")

    assert len(http.calls) == 1
    assert sleep.calls == []


def test_when_retries_are_spent_the_last_error_is_raised_as_registry_unavailable(http, sleep):
    backend = backend_with(sleep, max_retries=2)
    http.get(GET_MODEL, status=503, json=error_body("TEMPORARILY_UNAVAILABLE", "still busy"))

    with pytest.raises(RegistryUnavailableError) as caught:
        backend.get_model("churn")

    assert len(http.calls) == 3
    assert len(sleep.calls) == 2
    assert caught.value.status == 503
    assert caught.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert caught.value.server_message == "still busy"


def test_max_retries_zero_makes_a_single_attempt(http, sleep):
    backend = backend_with(sleep, max_retries=0)
    http.get(GET_MODEL, status=503)

    with pytest.raises(RegistryUnavailableError):
        backend.get_model("churn")

    assert len(http.calls) == 1
    assert sleep.calls == []


def test_calls_that_create_something_are_sent_once_by_the_backend(http, sleep):
    backend = backend_with(sleep)
    http.post(f"{API}/model-versions/create", status=503)
    http.post(f"{API}/registered-models/create", status=503)

    with pytest.raises(RegistryUnavailableError):
        backend.create_version(
            "churn", "s3://x", run_id=None, tags={}, description=None, run_link=None, model_id=None
        )
    with pytest.raises(RegistryUnavailableError):
        backend.create_model("churn", description=None, tags={})

    assert len(http.calls) == 2
    assert sleep.calls == []


def test_each_retry_is_logged(http, sleep, caplog):
    caplog.set_level(logging.INFO, logger="registry_sdk")
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=503, json=error_body("TEMPORARILY_UNAVAILABLE", "busy"))
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    [record] = [r for r in caplog.records if r.levelno == logging.INFO]
    assert record.name == "registry_sdk.rest"
    assert "retrying" in record.getMessage()
    assert "attempt 1" in record.getMessage()


# ============================================================================ Retry-After


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(http, sleep, status):
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=status, headers={"Retry-After": "3"})
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    assert sleep.calls == [3.0]


def test_retry_after_as_an_http_date_in_the_past_means_retry_now(http, sleep):
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    assert sleep.calls == [0.0]


def test_retry_after_as_a_far_http_date_is_capped_at_the_timeout(http, sleep):
    backend = backend_with(sleep, timeout=7.0)
    http.get(GET_MODEL, status=503, headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"})
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    assert sleep.calls == [7.0]


def test_retry_after_larger_than_the_timeout_is_capped_at_the_timeout(http, sleep):
    backend = backend_with(sleep, timeout=5.0)
    http.get(GET_MODEL, status=429, headers={"Retry-After": "120"})
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    assert sleep.calls == [5.0]


def test_an_unparseable_retry_after_falls_back_to_backoff(http, sleep):
    backend = backend_with(sleep)
    http.get(GET_MODEL, status=429, headers={"Retry-After": "soon"})
    http.get(GET_MODEL, json={"registered_model": model_json("churn")})

    backend.get_model("churn")

    [waited] = sleep.calls
    assert 0.25 <= waited <= 0.5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-4", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Wed, 99 Foo 2015", None),
    ],
)
def test_parse_retry_after(header, seconds):
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now=now) == seconds


# ============================================================================ error replies


@pytest.mark.parametrize(
    ("reply", "error_type", "code"),
    [
        ((401, "You are not authenticated."), PermissionDeniedError, None),
        ((403, error_body("PERMISSION_DENIED", "not allowed")), PermissionDeniedError, None),
        (
            (404, error_body("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=x not found")),
            ModelNotFoundError,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            (400, error_body("INVALID_PARAMETER_VALUE", "Invalid name")),
            InvalidRequestError,
            "INVALID_PARAMETER_VALUE",
        ),
    ],
    ids=["401", "403", "unknown-model", "bad-argument"],
)
def test_error_replies_to_get_model_become_typed_errors(http, sleep, reply, error_type, code):
    status, body = reply
    http.get(
        GET_MODEL, status=status, **({"json": body} if isinstance(body, dict) else {"body": body})
    )

    with pytest.raises(error_type) as caught:
        backend_with(sleep).get_model("x")

    err = caught.value
    assert type(err) is error_type
    assert err.status == status
    if code is not None:
        assert err.error_code == code
    expected_message = body["message"] if isinstance(body, dict) else body
    assert err.server_message == expected_message
    assert str(err).startswith("get model 'x': ")


def test_401_says_how_to_log_in(http, sleep):
    http.get(GET_MODEL, status=401, body="You are not authenticated.")

    with pytest.raises(PermissionDeniedError, match="MLFLOW_TRACKING_TOKEN"):
        backend_with(sleep).get_model("x")


def test_an_unknown_alias_answered_with_400_is_alias_not_found(http, sleep):
    message = "Registered model alias prod not found."
    http.get(ALIAS, status=400, json=error_body("INVALID_PARAMETER_VALUE", message))

    with pytest.raises(AliasNotFoundError) as caught:
        backend_with(sleep).get_version_by_alias("x", "prod")

    assert caught.value.status == 400
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert caught.value.server_message == message


def test_an_unknown_version_is_version_not_found(http, sleep):
    message = "Model Version (name=x, version=9) not found"
    http.get(GET_VERSION, status=404, json=error_body("RESOURCE_DOES_NOT_EXIST", message))

    with pytest.raises(VersionNotFoundError) as caught:
        backend_with(sleep).get_version("x", 9)

    assert caught.value.status == 404
    assert caught.value.server_message == message


def test_an_existing_model_is_already_exists(http, sleep):
    message = "Registered Model (name=x) already exists."
    http.post(
        f"{API}/registered-models/create",
        status=400,
        json=error_body("RESOURCE_ALREADY_EXISTS", message),
    )

    with pytest.raises(AlreadyExistsError) as caught:
        backend_with(sleep).create_model("x", description=None, tags={})

    assert caught.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert caught.value.server_message == message


def test_the_client_reports_errors_from_the_backend_unchanged(http, client):
    message = "Registered model alias prod not found."
    http.get(ALIAS, status=400, json=error_body("INVALID_PARAMETER_VALUE", message))

    with pytest.raises(AliasNotFoundError):
        client.resolve("x@prod")


# ============================================================================ malformed replies


def test_an_html_error_page_after_all_retries_is_registry_unavailable(http, sleep):
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    http.get(GET_MODEL, status=502, body=page, content_type="text/html")

    with pytest.raises(RegistryUnavailableError) as caught:
        backend_with(sleep, max_retries=2).get_model("churn")

    assert len(http.calls) == 3
    assert caught.value.status == 502
    assert "<html" not in str(caught.value)


BAD_MODEL_REPLIES = {
    "truncated-json": '{"registered_model": {"name": "churn", "tags": [',
    "empty-body": "",
    "html-with-200": "<html><body>Login</body></html>",
    "json-list": "[]",
    "json-string": '"churn"',
    "missing-registered_model": "{}",
    "registered_model-is-a-list": '{"registered_model": []}',
    "name-is-a-number": '{"registered_model": {"name": 7}}',
    "aliases-not-a-list": '{"registered_model": {"name": "m", "aliases": {"prod": 1}}}',
    "alias-version-abc": (
        '{"registered_model": {"name": "m", "aliases": [{"alias": "p", "version": "abc"}]}}'
    ),
    "tags-not-a-list": '{"registered_model": {"name": "m", "tags": "a=b"}}',
    "timestamp-not-a-number": '{"registered_model": {"name": "m", "creation_timestamp": "today"}}',
    "timestamp-infinite": '{"registered_model": {"name": "m", "creation_timestamp": Infinity}}',
    "timestamp-out-of-range": '{"registered_model": {"name": "m", "creation_timestamp": 1e300}}',
}


@pytest.mark.parametrize("body", BAD_MODEL_REPLIES.values(), ids=BAD_MODEL_REPLIES.keys())
def test_a_malformed_model_reply_is_invalid_response(http, sleep, body):
    http.get(GET_MODEL, body=body, content_type="application/json")

    with pytest.raises(InvalidResponseError):
        backend_with(sleep).get_model("churn")


BAD_VERSION_REPLIES = {
    "version-abc": {"model_version": {"name": "m", "version": "abc"}},
    "version-missing": {"model_version": {"name": "m"}},
    "version-true": {"model_version": {"name": "m", "version": True}},
    "version-a-list": {"model_version": {"name": "m", "version": [1]}},
    "missing-model_version": {"registered_model": {"name": "m"}},
    "model_version-is-null": {"model_version": None},
    "aliases-a-string": {"model_version": {"name": "m", "version": "1", "aliases": "prod"}},
    "malformed-tag": {"model_version": {"name": "m", "version": "1", "tags": [{"k": "v"}]}},
    "source-a-number": {"model_version": {"name": "m", "version": "1", "source": 5}},
}


@pytest.mark.parametrize("body", BAD_VERSION_REPLIES.values(), ids=BAD_VERSION_REPLIES.keys())
def test_a_malformed_version_reply_is_invalid_response(http, sleep, body):
    http.get(GET_VERSION, json=body)

    with pytest.raises(InvalidResponseError):
        backend_with(sleep).get_version("m", 1)


@pytest.mark.parametrize(
    "body",
    [{"model_versions": {"a": 1}}, {"model_versions": [1, 2]}, {"model_versions": [{"x": 1}]}],
    ids=["a-dict", "numbers", "objects-without-fields"],
)
def test_a_malformed_search_reply_is_invalid_response(http, sleep, body):
    http.get(SEARCH_VERSIONS, json=body)

    with pytest.raises(InvalidResponseError):
        backend_with(sleep).search_versions(
            filter=None, order_by=(), max_results=10, page_token=None
        )


@pytest.mark.parametrize("body", [{}, {"artifact_uri": 5}], ids=["missing", "a-number"])
def test_a_malformed_download_uri_reply_is_invalid_response(http, sleep, body):
    http.get(f"{API}/model-versions/get-download-uri", json=body)

    with pytest.raises(InvalidResponseError):
        backend_with(sleep).get_download_uri("m", 1)


def test_an_invalid_response_says_what_was_wrong(http, sleep):
    http.get(GET_VERSION, json={"model_version": {"name": "m", "version": "abc"}})

    with pytest.raises(InvalidResponseError, match=r"expected an integer version, got 'abc'"):
        backend_with(sleep).get_version("m", 1)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["1", "abc", "", "READY", "prod"])
)
_jsonish = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["key", "value", "alias", "version", "x"]), children)
    ),
    max_leaves=12,
)
_entity = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        [
            "name",
            "version",
            "aliases",
            "tags",
            "latest_versions",
            "creation_timestamp",
            "last_updated_timestamp",
            "source",
            "status",
            "current_stage",
            "description",
            "run_id",
        ],
        _jsonish,
    ),
)
_bodies = (
    st.builds(lambda e: json.dumps({"registered_model": e, "model_version": e}), _entity)
    | st.builds(json.dumps, _jsonish)
    | st.text(max_size=40)
)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=_bodies, status=st.sampled_from([200, 200, 200, 400, 404, 409, 500]))
def test_any_reply_to_get_model_or_get_version_is_a_result_or_a_registry_error(body, status):
    backend = RestBackend(make_settings(max_retries=0), sleep=FakeSleep())
    with mock_http() as http:
        http.get(GET_MODEL, status=status, body=body)
        http.get(GET_VERSION, status=status, body=body)
        _check_result_or_typed_error(lambda: backend.get_model("m"), RegisteredModel, status)
        _check_result_or_typed_error(lambda: backend.get_version("m", 1), ModelVersion, status)


def _check_result_or_typed_error(call, result_type, status):
    try:
        result = call()
    except InvalidResponseError:
        pass
    except RegistryError:
        assert status != 200
    else:
        assert status == 200
        assert isinstance(result, result_type)


# ============================================================================ paging


def _search_pages(http, pages):
    """Serve ``pages`` (lists of versions) chained by next_page_token; return the calls."""

    def reply(request):
        token = query(request).get("page_token", [""])[0]
        index = int(token) if token else 0
        body = {"model_versions": pages[index]}
        if index + 1 < len(pages):
            body["next_page_token"] = str(index + 1)
        return 200, {}, json.dumps(body)

    return http.add_callback("GET", SEARCH_VERSIONS, callback=reply)


def _models(http, aliases_by_model):
    """Serve get_model from ``{name: {alias: version}}``; return the calls."""

    def reply(request):
        name = query(request)["name"][0]
        aliases = aliases_by_model[name]
        return 200, {}, json.dumps({"registered_model": model_json(name, aliases=aliases)})

    return http.add_callback("GET", GET_MODEL, callback=reply)


def test_search_versions_follows_next_page_token_across_pages(http, client):
    _search_pages(
        http,
        [
            [version_json("m", 1), version_json("m", 2)],
            [version_json("m", 3)],
            [version_json("m", 4)],
        ],
    )
    _models(http, {"m": {"prod": 3, "staging": 4, "canary": 4}})

    found = list(client.search_versions("m"))

    assert [mv.version for mv in found] == [1, 2, 3, 4]
    assert [mv.aliases for mv in found] == [(), (), ("prod",), ("canary", "staging")]
    searches = [c.request for c in http.calls if c.request.url.startswith(SEARCH_VERSIONS)]
    assert [query(r).get("page_token") for r in searches] == [None, ["1"], ["2"]]
    assert all(query(r)["filter"] == ["name = 'm'"] for r in searches)
    assert all(query(r)["max_results"] == [str(RestBackend.max_versions_page)] for r in searches)


def test_search_versions_fetches_each_model_once_to_fill_aliases(http, client):
    _search_pages(
        http,
        [
            [version_json("churn", 1), version_json("fraud", 1)],
            [version_json("churn", 2), version_json("fraud", 2)],
        ],
    )
    models = _models(http, {"churn": {"prod": 2}, "fraud": {"prod": 1}})

    found = list(client.search_versions(filter="name LIKE '%'"))

    assert {(mv.name, mv.version): mv.aliases for mv in found} == {
        ("churn", 1): (),
        ("churn", 2): ("prod",),
        ("fraud", 1): ("prod",),
        ("fraud", 2): (),
    }
    assert sorted(query(c.request)["name"][0] for c in models.calls) == ["churn", "fraud"]


def test_search_versions_combines_name_tags_and_filter(http, client):
    _search_pages(http, [[]])

    assert list(client.search_versions("m", tags={"team": "risk"}, filter="run_id = 'r'")) == []

    [call] = http.calls
    # MLflow's filter grammar is a flat AND of comparisons (no parentheses).
    assert query(call.request)["filter"] == ["name = 'm' AND tags.`team` = 'risk' AND run_id = 'r'"]


def test_search_models_follows_next_page_token(http, client):
    http.get(
        SEARCH_MODELS,
        json={"registered_models": [model_json("a")], "next_page_token": "t1"},
    )
    http.get(SEARCH_MODELS, json={"registered_models": [model_json("b")]})

    names = [m.name for m in client.search_models(order_by=["name ASC"])]

    assert names == ["a", "b"]
    second = query(http.calls[1].request)
    assert second["page_token"] == ["t1"]
    assert second["order_by"] == ["name ASC"]


def test_an_empty_next_page_token_ends_the_search(http, client):
    http.get(SEARCH_MODELS, json={"registered_models": [model_json("a")], "next_page_token": ""})

    assert [m.name for m in client.search_models()] == ["a"]
    assert len(http.calls) == 1


# ============================================================================ request shapes


def test_get_version_sends_name_and_version_as_query_parameters(http, client):
    http.get(GET_VERSION, json={"model_version": version_json("m", 3, aliases=["prod"])})

    mv = client.get_version("m/3")

    assert (mv.name, mv.version, mv.aliases) == ("m", 3, ("prod",))
    assert query(http.calls[0].request) == {"name": ["m"], "version": ["3"]}


def test_set_alias_posts_the_version_as_a_string(http, sleep):
    http.post(ALIAS, json={})

    backend_with(sleep).set_alias("m", "prod", 3)

    request = http.calls[0].request
    assert json.loads(request.body) == {"name": "m", "alias": "prod", "version": "3"}


def test_delete_alias_sends_a_delete_with_a_json_body(http, sleep):
    http.delete(ALIAS, json={})

    backend_with(sleep).delete_alias("m", "prod")

    request = http.calls[0].request
    assert request.method == "DELETE"
    assert json.loads(request.body) == {"name": "m", "alias": "prod"}


def test_requests_identify_the_sdk(http, sleep):
    http.get(GET_MODEL, json={"registered_model": model_json("m")})

    backend_with(sleep).get_model("m")

    assert http.calls[0].request.headers["User-Agent"].startswith("registry-sdk/")


# ============================================================================ server info


def test_server_info_reports_a_reachable_server_and_its_version(http, sleep):
    http.get(f"{URI}/health", body="OK")
    http.get(f"{URI}/version", body="3.1.0\n")

    info = backend_with(sleep).server_info()

    assert (info.kind, info.uri, info.reachable, info.version) == ("rest", URI, True, "3.1.0")


def test_server_info_reports_an_unreachable_server_after_one_try(http, sleep):
    http.get(f"{URI}/health", body=requests.ConnectionError("Connection refused"))

    info = backend_with(sleep).server_info()

    assert info.reachable is False
    assert info.version is None
    assert "cannot reach the registry" in (info.detail or "")
    assert len(http.calls) == 1
    assert sleep.calls == []


def test_a_reply_nested_too_deep_to_parse_is_an_invalid_response(http, client):
    http.get(GET_MODEL, body="[" * 100_000 + "]" * 100_000, content_type="application/json")
    with pytest.raises(InvalidResponseError, match="not JSON"):
        client.get_model("churn")

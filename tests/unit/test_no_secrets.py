"""No token or password ever shows in an error, a repr or a log record, yet requests carry them.

Three ways to configure credentials, crossed with failures whose text would carry them if
nothing redacted it: a connection error quoting the request, a 401 and a 500 echoing the
Authorization header, a 400 quoting the secret, and a malformed reply.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from urllib.parse import quote

import pytest
import requests
from _rest_fakes import API, URI, FakeSleep, error_body, make_client, make_settings, mock_http

from registry_sdk import errors
from registry_sdk.errors import (
    InvalidRequestError,
    InvalidResponseError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnavailableError,
)

# Fake credentials, made up for these tests.
TOKEN = "tok-8c1f5e0a9b7d"
PASSWORD = "pw-4e2a9d7c1b6f"
URI_PASSWORD = "secretpw"
GET_MODEL = f"{API}/registered-models/get"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# name: (tracking URI, env, expected Authorization header, strings that must never show)
CREDENTIALS = {
    "token": (URI, {"MLFLOW_TRACKING_TOKEN": TOKEN}, f"Bearer {TOKEN}", [TOKEN]),
    "env-basic": (
        URI,
        {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": PASSWORD},
        f"Basic {_basic('alice', PASSWORD)}",
        [PASSWORD, _basic("alice", PASSWORD)],
    ),
    "uri-basic": (
        f"http://user:{URI_PASSWORD}@registry.test",
        {},
        f"Basic {_basic('user', URI_PASSWORD)}",
        [URI_PASSWORD, _basic("user", URI_PASSWORD)],
    ),
}


@pytest.fixture(autouse=True)
def fresh_secret_registry(monkeypatch):
    """Secrets registered by other tests must not do this test's redaction for it."""
    monkeypatch.setattr(errors, "_secrets", set())


@pytest.fixture(params=CREDENTIALS.values(), ids=CREDENTIALS.keys())
def credentials(request):
    return request.param


def _echo_headers(request: requests.PreparedRequest) -> str:
    return f"Authorization: {request.headers.get('Authorization', '')}"


def _connection_error(http, secret):
    def fail(request):
        msg = (
            f"Max retries exceeded with url: http://user:{secret}@registry.test/x "
            f"(proxy said {_echo_headers(request)}; token {secret})"
        )
        raise requests.ConnectionError(msg)

    http.add_callback("GET", GET_MODEL, callback=fail)
    return RegistryUnavailableError


def _unauthorized(http, secret):
    def fail(request):
        return 401, {}, f"Bad credentials {secret!r}. {_echo_headers(request)}"

    http.add_callback("GET", GET_MODEL, callback=fail)
    return PermissionDeniedError


def _server_error_echoing_json(http, secret):
    def fail(request):
        headers = {"Authorization": request.headers.get("Authorization")}
        message = f"boom while checking {secret} from a request with headers={headers}"
        body = json.dumps(error_body("INTERNAL_ERROR", message))
        return 500, {"Content-Type": "application/json"}, body

    http.add_callback("GET", GET_MODEL, callback=fail)
    return RegistryUnavailableError


def _server_error_echoing_text(http, secret):
    def fail(request):
        text = f"Traceback ...\n  password={secret}\n{_echo_headers(request)}\n"
        return 500, {"Content-Type": "text/plain"}, text

    http.add_callback("GET", GET_MODEL, callback=fail)
    return RegistryUnavailableError


def _bad_request_quoting_the_secret(http, secret):
    body = error_body("INVALID_PARAMETER_VALUE", f"credential {secret!r} is not a model name")
    http.get(GET_MODEL, status=400, json=body)
    return InvalidRequestError


def _malformed_json(http, secret):
    http.get(GET_MODEL, body=f'{{"registered_model": {{"name": "{secret}"', status=200)
    return InvalidResponseError


FAILURES = {
    "connection-error": _connection_error,
    "401-echoing-authorization": _unauthorized,
    "500-json-echoing-authorization": _server_error_echoing_json,
    "500-text-echoing-authorization": _server_error_echoing_text,
    "400-quoting-the-secret": _bad_request_quoting_the_secret,
    "malformed-json": _malformed_json,
}


def _everything_printable(exc: BaseException, *objects: object) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts += [str(arg) for arg in exc.args]
    if isinstance(exc, RegistryError):
        texts += [str(exc.server_message), str(exc.error_code)]
    texts += [repr(o) for o in objects] + [str(o) for o in objects]
    return texts


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_no_secret_in_errors_reprs_or_logs(credentials, failure, caplog):
    caplog.set_level(logging.DEBUG, logger="registry_sdk")
    uri, env, _, secrets = credentials
    settings = make_settings(uri, env=env, max_retries=1)
    client = make_client(settings, FakeSleep())

    with mock_http() as http:
        expected = failure(http, secrets[0])
        with pytest.raises(expected) as caught:
            client.get_model("churn")
        sent = [c.request for c in http.calls]

    assert sent  # the failure really came from a request
    texts = _everything_printable(caught.value, settings, client, client.backend)
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    for secret in secrets:
        leaks = [text for text in texts if secret in text]
        assert leaks == [], f"{secret!r} leaked"


def test_retries_are_logged_without_secrets(credentials, caplog):
    caplog.set_level(logging.DEBUG, logger="registry_sdk")
    uri, env, _, secrets = credentials
    client = make_client(make_settings(uri, env=env, max_retries=2), FakeSleep())

    with mock_http() as http:
        _server_error_echoing_text(http, secrets[0])
        with pytest.raises(RegistryUnavailableError):
            client.get_model("churn")

    retry_records = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retry_records) == 2  # the logs were really produced
    for record in caplog.records:
        for secret in secrets:
            assert secret not in record.getMessage()


def test_credentials_are_sent_on_every_request(credentials):
    uri, env, authorization, _ = credentials
    client = make_client(make_settings(uri, env=env, max_retries=1), FakeSleep())

    with mock_http() as http:
        http.get(GET_MODEL, status=503)
        http.get(GET_MODEL, json={"registered_model": {"name": "churn"}})
        client.get_model("churn")
        sent = [c.request for c in http.calls]

    assert len(sent) == 2
    assert all(r.headers["Authorization"] == authorization for r in sent)
    assert all(r.url.startswith(f"{URI}/") for r in sent)  # no user:password@ in the URL


def test_no_credentials_means_no_authorization_header():
    client = make_client(make_settings(env={}), FakeSleep())

    with mock_http() as http:
        http.get(GET_MODEL, json={"registered_model": {"name": "churn"}})
        client.get_model("churn")
        [call] = http.calls

    assert "Authorization" not in call.request.headers


def test_settings_repr_names_the_auth_kind_but_no_secret(credentials):
    uri, env, _, secrets = credentials

    settings = make_settings(uri, env=env)

    assert settings.auth_kind in {"token", "basic"}
    assert not any(secret in repr(settings) for secret in secrets)
    assert not any(secret in settings.registry_uri for secret in secrets)


# ============================================================================ odd bytes

#: Made-up credentials as they come from files and password managers: a trailing newline or
#: CRLF, quotes, backslashes, percent signs, spaces inside, Latin-1 letters.
ODD_TOKENS = {
    "lf": "tok-8c1f5e0a9b7d\n",
    "crlf": "tok-8c1f5e0a9b7d\r\n",
    "quotes": "tok-\"8c1f'5e0a9b",
    "backslashes": "tok\\8c1f\\n5e0a",
    "percent": "tok-100%25-%41x9b",
    "spaces-inside": " tok 8c1f 5e0a\n",
}
ODD_PASSWORDS = {
    "lf": "pw-4e2a9d7c1b6f\n",
    "crlf": "pw-4e2a9d7c1b6f\r\n",
    "latin-1": "pässwörd-4e2a9d",
    "quotes": "pw-\"4e2a'9d7c",
    "backslashes": "pw\\4e2a\\x9d7c",
    "percent": "pw-100%-%41sure",
    "spaces-inside": "pw 4e2a  9d7c\n",
}


def _odd_credentials() -> dict[str, tuple[str, dict[str, str], str, str]]:
    """name: (tracking URI, env, expected Authorization header, the secret as configured)."""
    cases = {}
    for name, token in ODD_TOKENS.items():
        cases[f"token-{name}"] = (
            URI,
            {"MLFLOW_TRACKING_TOKEN": token},
            f"Bearer {token.strip()}",
            token,
        )
    for name, password in ODD_PASSWORDS.items():
        basic = base64.b64encode(f"alice:{password.strip()}".encode("latin-1")).decode()
        cases[f"env-basic-{name}"] = (
            URI,
            {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": password},
            f"Basic {basic}",
            password,
        )
        cases[f"uri-basic-{name}"] = (
            f"http://alice:{quote(password, safe='')}@registry.test",
            {},
            f"Basic {basic}",
            password,
        )
    return cases


ODD_CREDENTIALS = _odd_credentials()


def giveaways(secret: str, authorization: str) -> set[str]:
    """Every string that would give ``secret`` away: as written, trimmed and as printed."""
    shown = {secret, secret.strip()}
    shown |= {repr(s)[1:-1] for s in list(shown)} | {ascii(s)[1:-1] for s in list(shown)}
    shown |= {json.dumps(s)[1:-1] for s in list(shown)}
    shown |= {quote(s, safe="") for s in (secret, secret.strip())}
    shown.add(authorization.partition(" ")[2])
    return {s for s in shown if len(s) >= 4}


def echo(secret: str) -> str:
    """What a careless server or proxy says back: the secret in each way it gets printed."""
    return " | ".join(
        [secret, repr(secret), ascii(secret), json.dumps(secret), quote(secret), secret.strip()]
    )


#: The failures whose text quotes what the server said (a malformed reply's error does not).
ECHOING_FAILURES = {k: f for k, f in FAILURES.items() if k != "malformed-json"}


@pytest.mark.parametrize("failure", ECHOING_FAILURES.values(), ids=ECHOING_FAILURES.keys())
@pytest.mark.parametrize(
    ("uri", "env", "authorization", "secret"), ODD_CREDENTIALS.values(), ids=ODD_CREDENTIALS.keys()
)
def test_odd_credentials_are_sent_trimmed_and_never_shown(
    uri, env, authorization, secret, failure, caplog
):
    caplog.set_level(logging.DEBUG, logger="registry_sdk")
    settings = make_settings(uri, env=env, max_retries=1)
    client = make_client(settings, FakeSleep())

    with mock_http() as http:
        expected = failure(http, echo(secret))
        with pytest.raises(expected) as caught:
            client.get_model("churn")
        sent = [c.request for c in http.calls]

    assert sent
    assert all(r.headers["Authorization"] == authorization for r in sent)
    texts = _everything_printable(caught.value, settings, client, client.backend)
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.exc_info) for record in caplog.records if record.exc_info]
    for shown in giveaways(secret, authorization):
        leaks = [text for text in texts if shown in text]
        assert leaks == [], f"{shown!r} leaked"

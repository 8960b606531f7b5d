"""Settings: an argument beats its environment variable, which beats the default.

Also: what the REST backend's HTTP session gets from them (auth, TLS, timeout).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import traceback
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from _rest_fakes import API, URI, FakeSleep, make_settings, mock_http, model_json, version_json

from registry_sdk._backends.rest import RestBackend
from registry_sdk._config import (
    DEFAULT_DOWNLOAD_WORKERS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_TRACKING_URI,
    Settings,
    strip_userinfo,
)
from registry_sdk.errors import ConfigurationError

# ============================================================================ precedence


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///mlflow.db", "sqlite:///{cwd}/mlflow.db"),
        ("sqlite:///sub/x.db?timeout=5", "sqlite:///{cwd}/sub/x.db?timeout=5"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("file:mlruns", "file:{cwd}/mlruns"),
        ("file:///abs/mlruns", "file:///abs/mlruns"),
        ("mlruns", "{cwd}/mlruns"),
        ("databricks", "databricks"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("http://h:5000", "http://h:5000"),
    ],
)
def test_a_relative_store_uri_is_bound_to_the_working_directory(
    given, expected, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    s = Settings.resolve(given, env={})
    assert s.tracking_uri == expected.format(cwd=tmp_path.resolve())


def test_defaults_apply_when_neither_argument_nor_environment_says_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.resolve(env={})

    # MLflow's default, bound to the working directory the client was made in.
    assert DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert s.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert s.registry_uri == s.tracking_uri
    assert s.timeout == DEFAULT_TIMEOUT
    assert s.max_retries == DEFAULT_MAX_RETRIES
    assert s.offline is False
    assert s.auth_kind == "none"
    assert (s.insecure_tls, s.server_cert_path, s.client_cert_path) == (False, None, None)


@pytest.mark.parametrize(
    ("argument", "env_key", "env_value", "from_argument", "from_env"),
    [
        (
            "tracking_uri",
            "MLFLOW_TRACKING_URI",
            "http://env.test",
            "http://arg.test",
            "http://env.test",
        ),
        (
            "registry_uri",
            "MLFLOW_REGISTRY_URI",
            "http://env.test",
            "http://arg.test",
            "http://env.test",
        ),
        ("timeout", "REGISTRY_SDK_TIMEOUT", "12", 3.5, 12.0),
        ("max_retries", "REGISTRY_SDK_MAX_RETRIES", "9", 1, 9),
        ("download_workers", "REGISTRY_SDK_DOWNLOAD_WORKERS", "3", 1, 3),
        ("offline", "REGISTRY_SDK_OFFLINE", "true", False, True),
        (
            "cache_dir",
            "REGISTRY_SDK_CACHE_DIR",
            "/env/cache",
            Path("/arg/cache"),
            Path("/env/cache"),
        ),
    ],
)
def test_argument_beats_environment_beats_default(
    argument, env_key, env_value, from_argument, from_env
):
    env = {env_key: env_value}
    default = getattr(Settings.resolve(env={}), argument)

    assert (
        getattr(Settings.resolve(env=env, **{argument: from_argument}), argument) == from_argument
    )
    assert getattr(Settings.resolve(env=env), argument) == from_env
    assert from_env != default


def test_the_registry_uri_defaults_to_the_tracking_uri():
    assert Settings.resolve("http://arg.test", env={}).registry_uri == "http://arg.test"
    env = {"MLFLOW_TRACKING_URI": "http://env.test"}
    assert Settings.resolve(env=env).registry_uri == "http://env.test"


def test_registry_sdk_variables_beat_mlflow_variables():
    env = {
        "REGISTRY_SDK_TIMEOUT": "4",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "40",
        "REGISTRY_SDK_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "20",
    }

    s = Settings.resolve(env=env)

    assert (s.timeout, s.max_retries) == (4.0, 2)


def test_mlflow_variables_are_used_when_registry_sdk_ones_are_absent():
    env = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "40", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "20"}

    s = Settings.resolve(env=env)

    assert (s.timeout, s.max_retries) == (40.0, 20)


def test_zero_retries_from_the_environment_means_zero_not_the_default():
    assert Settings.resolve(env={"REGISTRY_SDK_MAX_RETRIES": "0"}).max_retries == 0
    assert Settings.resolve(env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}).max_retries == 0


def test_download_workers_default_to_eight_and_must_be_a_whole_number_from_one():
    assert Settings.resolve(env={}).download_workers == DEFAULT_DOWNLOAD_WORKERS == 8
    for bad in ("0", "-2", "2.5", "many"):
        with pytest.raises(ValueError, match=r"REGISTRY_SDK_DOWNLOAD_WORKERS|download_workers"):
            Settings.resolve(env={"REGISTRY_SDK_DOWNLOAD_WORKERS": bad})
    with pytest.raises(ValueError, match="download_workers"):
        Settings.resolve(env={}, download_workers=0)


@pytest.mark.parametrize(("timeout", "expected"), [(30.0, (10.0, 30.0)), (2.0, (2.0, 2.0))])
def test_the_connect_timeout_is_short_and_the_timeout_is_the_idle_read_timeout(timeout, expected):
    assert Settings.http_timeout(timeout) == expected


def test_an_empty_variable_counts_as_unset():
    s = Settings.resolve(env={"REGISTRY_SDK_TIMEOUT": " ", "REGISTRY_SDK_MAX_RETRIES": ""})

    assert (s.timeout, s.max_retries) == (DEFAULT_TIMEOUT, DEFAULT_MAX_RETRIES)


def test_the_cache_dir_expands_a_tilde():
    s = Settings.resolve(env={"REGISTRY_SDK_CACHE_DIR": "~/models"})

    assert s.cache_dir == Path("~/models").expanduser()
    assert "~" not in str(s.cache_dir)


@pytest.mark.skipif(sys.platform in {"win32", "darwin"}, reason="XDG applies to Linux and BSDs")
def test_the_default_cache_dir_follows_xdg_cache_home():
    s = Settings.resolve(env={"XDG_CACHE_HOME": "/xdg"})

    assert s.cache_dir == Path("/xdg/registry_sdk")


# ============================================================================ offline


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "on", "On"])
def test_offline_truthy_values(value):
    assert Settings.resolve(env={"REGISTRY_SDK_OFFLINE": value}).offline is True


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off", ""])
def test_offline_falsy_values(value):
    assert Settings.resolve(env={"REGISTRY_SDK_OFFLINE": value}).offline is False


@pytest.mark.parametrize("value", ["maybe", "2", "enabled", "y"])
def test_an_unknown_offline_value_is_rejected_with_a_clear_message(value):
    with pytest.raises(ValueError, match=r"REGISTRY_SDK_OFFLINE=.* is not a boolean; use 1/0"):
        Settings.resolve(env={"REGISTRY_SDK_OFFLINE": value})


def test_an_offline_argument_overrides_a_bad_environment_value():
    assert Settings.resolve(env={"REGISTRY_SDK_OFFLINE": "maybe"}, offline=True).offline is True


# ============================================================================ bad values


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REGISTRY_SDK_TIMEOUT": "soon"}, "REGISTRY_SDK_TIMEOUT='soon' is not a number"),
        ({"MLFLOW_HTTP_REQUEST_TIMEOUT": "1s"}, "MLFLOW_HTTP_REQUEST_TIMEOUT='1s' is not a number"),
        ({"REGISTRY_SDK_TIMEOUT": "0"}, "timeout must be a positive number of seconds"),
        ({"REGISTRY_SDK_TIMEOUT": "-5"}, "timeout must be a positive number of seconds"),
        ({"REGISTRY_SDK_TIMEOUT": "nan"}, "timeout must be a positive number of seconds"),
        ({"REGISTRY_SDK_TIMEOUT": "inf"}, "timeout must be a positive number of seconds"),
        ({"REGISTRY_SDK_MAX_RETRIES": "many"}, "REGISTRY_SDK_MAX_RETRIES='many' is not a number"),
        ({"REGISTRY_SDK_MAX_RETRIES": "-1"}, "max_retries must be 0 or more"),
        (
            {"REGISTRY_SDK_MAX_RETRIES": "2.5"},
            "REGISTRY_SDK_MAX_RETRIES='2.5' is not a whole number",
        ),
        (
            {"REGISTRY_SDK_MAX_RETRIES": "inf"},
            "REGISTRY_SDK_MAX_RETRIES='inf' is not a whole number",
        ),
        (
            {"MLFLOW_TRACKING_INSECURE_TLS": "sure"},
            "MLFLOW_TRACKING_INSECURE_TLS='sure' is not a boolean",
        ),
    ],
)
def test_bad_environment_values_raise_value_error_naming_the_variable(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.resolve(env=env)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"timeout": -1.0}, "timeout must be a positive number"),
        ({"max_retries": -1}, "max_retries must be 0 or more"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Settings.resolve(env={}, **kwargs)


def test_settings_are_frozen():
    s = Settings.resolve(env={})

    with pytest.raises(AttributeError):
        s.timeout = 1.0  # type: ignore[misc]


# ============================================================================ credentials


def test_a_token_from_the_environment_means_bearer_auth():
    s = Settings.resolve(URI, env={"MLFLOW_TRACKING_TOKEN": "tok-123456"})

    assert (s.auth_kind, s.token) == ("token", "tok-123456")


def test_username_and_password_from_the_environment_mean_basic_auth():
    env = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-123456"}

    s = Settings.resolve(URI, env=env)

    assert (s.auth_kind, s.username, s.password) == ("basic", "alice", "pw-123456")


def test_credentials_in_the_uri_become_basic_auth_and_leave_the_registry_uri():
    s = Settings.resolve("http://alice:pw-123456@registry.test:5000/mlflow", env={})

    assert (s.auth_kind, s.username, s.password) == ("basic", "alice", "pw-123456")
    assert s.registry_uri == "http://registry.test:5000/mlflow"


def test_environment_credentials_beat_credentials_in_the_uri():
    env = {"MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": "env-pw-123"}

    s = Settings.resolve("http://alice:uri-pw-123@registry.test", env=env)

    assert (s.username, s.password) == ("bob", "env-pw-123")


def test_a_token_wins_over_basic_auth():
    env = {
        "MLFLOW_TRACKING_TOKEN": "tok-123456",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "pw-123456",
    }

    assert Settings.resolve(URI, env=env).auth_kind == "token"


def test_a_username_without_a_password_is_no_auth():
    assert Settings.resolve(URI, env={"MLFLOW_TRACKING_USERNAME": "alice"}).auth_kind == "none"


def _authorization_sent(settings: Settings) -> str | None:
    """The Authorization header a real request made with ``settings`` carries."""
    with mock_http() as http:
        http.get(f"{API}/registered-models/get", json={"registered_model": model_json("m")})
        RestBackend(settings, sleep=FakeSleep()).get_model("m")
        [call] = http.calls
    return call.request.headers.get("Authorization")


@pytest.mark.parametrize(
    "raw", ["tok-123456\n", "tok-123456\r\n", " \ttok-123456 \n"], ids=["lf", "crlf", "around"]
)
def test_a_token_read_with_surrounding_whitespace_is_sent_trimmed(raw):
    s = Settings.resolve(URI, env={"MLFLOW_TRACKING_TOKEN": raw})

    assert s.token == "tok-123456"
    assert _authorization_sent(s) == "Bearer tok-123456"


def test_basic_credentials_read_with_surrounding_whitespace_are_sent_trimmed():
    env = {"MLFLOW_TRACKING_USERNAME": " alice\n", "MLFLOW_TRACKING_PASSWORD": "pw-123456\r\n"}

    s = Settings.resolve(URI, env=env)

    assert (s.username, s.password) == ("alice", "pw-123456")
    assert _authorization_sent(s) == "Basic " + base64.b64encode(b"alice:pw-123456").decode()


@pytest.mark.parametrize("blank", ["\n", " ", "\r\n\t"], ids=["lf", "space", "mixed"])
def test_a_blank_credential_counts_as_unset(blank):
    env = {
        "MLFLOW_TRACKING_TOKEN": blank,
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": blank,
    }

    s = Settings.resolve("http://alice:uri-pw-123@registry.test", env=env)

    assert (s.auth_kind, s.token, s.password) == ("basic", None, "uri-pw-123")


def test_credentials_in_the_uri_are_percent_decoded_as_requests_reads_them():
    s = Settings.resolve("http://al%20ice:p%40ss%3Aw0rd%25@registry.test", env={})

    assert (s.username, s.password) == ("al ice", "p@ss:w0rd%")
    assert _authorization_sent(s) == "Basic " + base64.b64encode(b"al ice:p@ss:w0rd%").decode()


# Made-up credentials that cannot be sent in a header, the variable, and where the fault is.
UNSENDABLE = {
    "token-lf-inside": ({"MLFLOW_TRACKING_TOKEN": "tok-12\n3456"}, "MLFLOW_TRACKING_TOKEN", 7),
    "token-cr-inside": ({"MLFLOW_TRACKING_TOKEN": "tok-12\r3456"}, "MLFLOW_TRACKING_TOKEN", 7),
    "token-escape": ({"MLFLOW_TRACKING_TOKEN": "tok-12\x1b3456"}, "MLFLOW_TRACKING_TOKEN", 7),
    "token-non-ascii": ({"MLFLOW_TRACKING_TOKEN": "tok-é23456"}, "MLFLOW_TRACKING_TOKEN", 5),
    "token-bom": ({"MLFLOW_TRACKING_TOKEN": "\ufefftok-123456\n"}, "MLFLOW_TRACKING_TOKEN", 1),
    "token-zero-width": ({"MLFLOW_TRACKING_TOKEN": "tok\u200b123456"}, "MLFLOW_TRACKING_TOKEN", 4),
    "password-tab-inside": (
        {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": " pw\t123456"},
        "MLFLOW_TRACKING_PASSWORD",
        3,
    ),
    "password-beyond-latin-1": (
        {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw-€-123456"},
        "MLFLOW_TRACKING_PASSWORD",
        4,
    ),
    "username-colon": (
        {"MLFLOW_TRACKING_USERNAME": "ali:ce", "MLFLOW_TRACKING_PASSWORD": "pw-123456"},
        "MLFLOW_TRACKING_USERNAME",
        4,
    ),
    "uri-password-from-the-environment": (
        {"MLFLOW_TRACKING_URI": "http://alice:pw%0A123456@registry.test"},
        "the password in the user-info of MLFLOW_TRACKING_URI",
        3,
    ),
}


@pytest.mark.parametrize(("env", "source", "position"), UNSENDABLE.values(), ids=UNSENDABLE.keys())
def test_an_unsendable_credential_is_refused_by_name_and_position_never_by_value(
    env, source, position
):
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(env=env)

    err = info.value
    assert isinstance(err, ValueError)
    assert f"{source} has " in str(err)
    assert f"at position {position} " in str(err)
    printed = [str(err), repr(err), "".join(traceback.format_exception(err))]
    for key, value in env.items():
        if key == "MLFLOW_TRACKING_USERNAME" and ":" not in value:
            continue  # a user name is not secret; the refused one still must not show
        secret = unquote(urlsplit(value).password or "") if "://" in value else value
        for form in {secret, secret.strip(), repr(secret)[1:-1], ascii(secret)[1:-1]}:
            assert not any(form in text for text in printed), (form, printed)


def test_a_credential_in_the_registry_uri_argument_is_named_as_such():
    with pytest.raises(ConfigurationError, match="user-info of the registry_uri argument"):
        Settings.resolve(registry_uri="http://alice:pw%01x-123@registry.test", env={})


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://u:p@host/x", "http://host/x"),
        ("https://u:p@Host.example:8443/p?q=1#f", "https://Host.example:8443/p?q=1#f"),
        ("http://u@host", "http://host"),
        ("http://u:p@[::1]:5000/x", "http://[::1]:5000/x"),
        ("http://host:5000", "http://host:5000"),
    ],
)
def test_strip_userinfo(uri, expected):
    assert strip_userinfo(uri) == expected


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("http://registry.test", True),
        ("https://registry.test", True),
        ("sqlite:///mlflow.db", False),
        ("postgresql://u:p@localhost/mlflow", False),
        ("file:///tmp/mlruns", False),
    ],
)
def test_is_remote_means_http_or_https(uri, remote):
    assert Settings.resolve(uri, env={}).is_remote is remote


def test_a_database_uri_keeps_its_password_for_the_store():
    s = Settings.resolve("postgresql://u:dbpw-123@localhost/mlflow", env={})

    assert s.registry_uri == "postgresql://u:dbpw-123@localhost/mlflow"
    assert "dbpw-123" not in repr(s)


# ============================================================================ the HTTP session


def _backend(env: dict[str, str], **kwargs) -> RestBackend:
    return RestBackend(make_settings(env=env), sleep=FakeSleep(), **kwargs)


def test_insecure_tls_turns_certificate_verification_off():
    assert _backend({"MLFLOW_TRACKING_INSECURE_TLS": "true"})._session.verify is False


def test_a_server_certificate_path_is_used_to_verify():
    env = {"MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ca.pem"}

    assert _backend(env)._session.verify == "/etc/ca.pem"


def test_insecure_tls_wins_over_a_server_certificate_path():
    env = {"MLFLOW_TRACKING_INSECURE_TLS": "1", "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ca.pem"}

    assert _backend(env)._session.verify is False


def test_without_tls_settings_certificates_are_verified():
    assert _backend({})._session.verify is True


def test_a_client_certificate_is_presented():
    env = {"MLFLOW_TRACKING_CLIENT_CERT_PATH": "/etc/client.pem"}

    assert _backend(env)._session.cert == "/etc/client.pem"


@pytest.mark.parametrize(
    ("env", "verify"),
    [
        ({"MLFLOW_TRACKING_INSECURE_TLS": "true"}, False),
        ({"MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/ca.pem"}, "/etc/ca.pem"),
    ],
)
def test_tls_settings_reach_the_request_even_when_requests_ca_bundle_is_set(
    monkeypatch, env, verify
):
    # requests lets REQUESTS_CA_BUNDLE override session.verify unless verify is passed per call.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/bundle.pem")
    backend = _backend(env)
    with mock_http() as http:
        http.get(f"{URI}/health", body="OK")
        backend.request("GET", "/health", action="check health")
        [call] = http.calls

    assert call.request.req_kwargs["verify"] == verify


class RecordingSession(requests.Session):
    """A session that remembers the keyword arguments of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, dict]] = []

    def request(self, method, url, *args, **kwargs):
        self.sent.append((method, url, kwargs))
        return super().request(method, url, *args, **kwargs)


EVERY_BACKEND_CALL = {
    "create_model": lambda b: b.create_model("m", description=None, tags={}),
    "get_model": lambda b: b.get_model("m"),
    "search_models": lambda b: b.search_models(
        filter=None, order_by=(), max_results=5, page_token=None
    ),
    "update_model": lambda b: b.update_model("m", description="d"),
    "rename_model": lambda b: b.rename_model("m", "n"),
    "delete_model": lambda b: b.delete_model("m"),
    "set_model_tag": lambda b: b.set_model_tag("m", "k", "v"),
    "delete_model_tag": lambda b: b.delete_model_tag("m", "k"),
    "create_version": lambda b: b.create_version(
        "m", "s3://x", run_id=None, tags={}, description=None, run_link=None, model_id=None
    ),
    "get_version": lambda b: b.get_version("m", 1),
    "search_versions": lambda b: b.search_versions(
        filter=None, order_by=(), max_results=5, page_token=None
    ),
    "update_version": lambda b: b.update_version("m", 1, description="d"),
    "delete_version": lambda b: b.delete_version("m", 1),
    "set_version_tag": lambda b: b.set_version_tag("m", 1, "k", "v"),
    "delete_version_tag": lambda b: b.delete_version_tag("m", 1, "k"),
    "get_download_uri": lambda b: b.get_download_uri("m", 1),
    "set_alias": lambda b: b.set_alias("m", "prod", 1),
    "delete_alias": lambda b: b.delete_alias("m", "prod"),
    "get_version_by_alias": lambda b: b.get_version_by_alias("m", "prod"),
    "get_latest_versions": lambda b: b.get_latest_versions("m", ["Production"]),
    "transition_stage": lambda b: b.transition_stage("m", 1, "Staging", archive_existing=False),
    "server_info": lambda b: b.server_info(),
}


@pytest.mark.parametrize("call", EVERY_BACKEND_CALL.values(), ids=EVERY_BACKEND_CALL.keys())
def test_every_request_carries_the_configured_timeout(call):
    session = RecordingSession()
    backend = RestBackend(
        make_settings(env={"REGISTRY_SDK_TIMEOUT": "7.5"}), session=session, sleep=FakeSleep()
    )
    # One reply that satisfies every endpoint.
    anything = {
        "registered_model": model_json("m"),
        "registered_models": [],
        "model_version": version_json("m", 1),
        "model_versions": [],
        "artifact_uri": "s3://x",
    }
    with mock_http() as http:
        for method in ("GET", "POST", "PATCH", "DELETE"):
            http.add(method, re.compile(re.escape(URI) + "/.*"), body=json.dumps(anything))
        call(backend)
        received = [c.request.req_kwargs for c in http.calls]

    assert session.sent
    assert len(received) == len(session.sent)
    # (connect, read): the read timeout is the idle time between bytes.
    assert all(kwargs.get("timeout") == (7.5, 7.5) for _, _, kwargs in session.sent)
    assert all(kwargs["timeout"] == (7.5, 7.5) for kwargs in received)
    assert all(
        url.startswith((API, URI + "/health", URI + "/version")) for _, url, _ in session.sent
    )

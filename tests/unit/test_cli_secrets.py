"""The `registry` command never prints a credential, however it was written into the environment.

A token read from a file ends in a newline; sent as is, the HTTP library refuses the header and
quotes it in its error, escaped, so the plain secret no longer matches. These tests drive the
real command against a loopback port that refuses connections, and against a server (mocked:
a real one cannot be made to echo credentials) that quotes them back.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from urllib.parse import quote

import pytest
import responses
from click.testing import CliRunner

from registry_sdk import errors
from registry_sdk.cli import cli
from registry_sdk.cli._common import EXIT_PERMISSION, EXIT_UNAVAILABLE, EXIT_USAGE

#: A made-up token.
TOKEN = "tok-5f3a9c2e7b1d"
#: Variables that would otherwise come from the real environment.
UNSET = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_REGISTRY_URI",
    "REGISTRY_SDK_OFFLINE",
)


@pytest.fixture(autouse=True)
def fresh_secret_registry(monkeypatch):
    """Secrets registered by other tests must not do this test's redaction for it."""
    monkeypatch.setattr(errors, "_secrets", set())


@pytest.fixture
def refusing_port():
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def run(tracking_uri: str, tmp_path, **env: str):
    """``registry models`` with exactly ``env`` (restored afterwards), no retries."""
    full: dict[str, str | None] = dict.fromkeys(UNSET)
    full |= {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "REGISTRY_SDK_MAX_RETRIES": "0",
        "REGISTRY_SDK_CACHE_DIR": str(tmp_path / "cache"),
        **env,
    }
    return CliRunner().invoke(cli, ["models"], env=full)


def giveaways(secret: str) -> set[str]:
    """The secret as written, trimmed, and as repr, ascii, JSON and URLs print it."""
    shown = {secret, secret.strip()}
    shown |= {repr(s)[1:-1] for s in list(shown)} | {ascii(s)[1:-1] for s in list(shown)}
    shown |= {json.dumps(s)[1:-1] for s in list(shown)}
    shown |= {quote(s, safe="") for s in (secret, secret.strip())}
    return {s for s in shown if len(s) >= 4}


def assert_never_printed(result, secret: str) -> None:
    printed = [result.output, result.stdout, result.stderr, repr(result.exception)]
    for shown in giveaways(secret):
        leaks = [text for text in printed if shown in text]
        assert leaks == [], f"{shown!r} printed"


@pytest.mark.parametrize("ending", ["\n", "\r\n", " \t\n"], ids=["lf", "crlf", "blanks"])
def test_a_token_read_from_a_file_is_sent_trimmed_and_never_printed(
    ending, refusing_port, tmp_path
):
    token = TOKEN + ending

    result = run(f"http://127.0.0.1:{refusing_port}", tmp_path, MLFLOW_TRACKING_TOKEN=token)

    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "cannot reach the registry" in result.stderr
    assert_never_printed(result, token)


@pytest.mark.parametrize(
    ("token", "position"),
    [(f"{TOKEN[:6]}\r{TOKEN[6:]}\n", 7), (f"{TOKEN[:6]}\n{TOKEN[6:]}", 7), (f"\x1b{TOKEN}", 1)],
    ids=["cr-inside", "lf-inside", "escape"],
)
def test_a_token_with_a_control_character_inside_is_refused_by_name_and_position(
    token, position, refusing_port, tmp_path
):
    result = run(f"http://127.0.0.1:{refusing_port}", tmp_path, MLFLOW_TRACKING_TOKEN=token)

    assert result.exit_code == EXIT_USAGE, result.output
    assert "MLFLOW_TRACKING_TOKEN has an invisible or control character (U+00" in result.stderr
    assert f"at position {position} " in result.stderr
    assert_never_printed(result, token)
    for part in (token[: position - 1], token[position:]):  # nor either side of the fault
        if len(part.strip()) >= 4:
            assert part.strip() not in result.output


#: Made-up passwords with the bytes that survive naive redaction.
ODD_PASSWORDS = {
    "lf": "pw-7d2c9e4a\n",
    "quotes": "pw-\"7d2c'9e4a",
    "backslashes": "pw\\7d2c\\n9e4a",
    "percent": "pw-100%-%41sure",
    "latin-1": "pässwörd-7d2c",
}


@pytest.mark.parametrize("password", ODD_PASSWORDS.values(), ids=ODD_PASSWORDS.keys())
def test_a_server_quoting_odd_credentials_back_cannot_make_the_command_print_them(
    password, tmp_path
):
    def refuse(request):
        said = {"Authorization": request.headers.get("Authorization")}
        text = f"bad password {password!r} / {quote(password)} / {json.dumps(password)}; {said}"
        return 401, {"Content-Type": "text/plain"}, text

    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        http.add_callback("GET", re.compile(r"http://registry\.test/.*"), callback=refuse)
        result = run(
            "http://registry.test",
            tmp_path,
            MLFLOW_TRACKING_USERNAME="alice",
            MLFLOW_TRACKING_PASSWORD=password,
        )
        [call] = http.calls

    basic = base64.b64encode(f"alice:{password.strip()}".encode("latin-1")).decode()
    assert call.request.headers["Authorization"] == f"Basic {basic}"
    assert result.exit_code == EXIT_PERMISSION, result.output
    assert "bad password" in result.stderr  # the server's message is shown, scrubbed
    assert_never_printed(result, password)
    assert basic not in result.output

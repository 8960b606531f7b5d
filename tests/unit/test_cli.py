"""The `registry` command: --version and doctor."""

from __future__ import annotations

import json

import requests
import responses
from click.testing import CliRunner

from registry_sdk import __version__
from registry_sdk.cli import cli

SECRET = "tok-very-secret-123"


def run(args, env=None):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_version():
    result = run(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_doctor_reports_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run(["doctor", "--json"], env={"REGISTRY_SDK_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # The default relative database, made absolute: the one in the working directory.
    assert report["tracking_uri"] == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert report["backend"] == "local"
    assert report["reachable"] is True
    assert report["server_version"]
    assert report["auth"] == "none"
    assert report["cache_dir"] == str(tmp_path / "cache")


@responses.activate
def test_doctor_on_a_server_shows_the_auth_kind_but_never_the_secret():
    responses.get("http://registry.test/health", body="OK")
    responses.get("http://registry.test/version", body="3.17.2")
    result = run(
        ["doctor"],
        env={"MLFLOW_TRACKING_URI": "http://registry.test", "MLFLOW_TRACKING_TOKEN": SECRET},
    )
    assert result.exit_code == 0, result.output
    assert "rest" in result.output
    assert "token" in result.output
    assert "3.17.2" in result.output
    assert SECRET not in result.output
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {SECRET}"


@responses.activate
def test_doctor_exits_4_when_the_server_cannot_be_reached():
    responses.get("http://registry.test/health", body=requests.ConnectionError("refused"))
    result = run(["doctor", "--json"], env={"MLFLOW_TRACKING_URI": "http://registry.test"})
    assert result.exit_code == 4
    report = json.loads(result.stdout)
    assert report["reachable"] is False
    assert "cannot reach" in report["detail"]


@responses.activate
def test_doctor_never_prints_a_password_embedded_in_the_uri():
    responses.get("http://registry.test/health", body="OK")
    responses.get("http://registry.test/version", body="3.17.2")
    result = run(["doctor"], env={"MLFLOW_TRACKING_URI": "http://alice:pa55word-xyz@registry.test"})
    assert result.exit_code == 0, result.output
    assert "pa55word-xyz" not in result.output
    assert "basic (user alice)" in result.output


def test_doctor_offline_contacts_nothing():
    result = run(
        ["doctor", "--json"],
        env={"MLFLOW_TRACKING_URI": "http://registry.test", "REGISTRY_SDK_OFFLINE": "1"},
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["reachable"] is None

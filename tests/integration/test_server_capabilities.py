"""Capabilities and error types against real MLflow 2.x servers (2.9 and the newest 2.22).

A 2.x server has aliases but neither the logged-models API (3.0) nor registry webhooks (3.3):
those raise ``UnsupportedServerError`` naming the feature and both versions, and a missing
model, alias or version raises the same error type as on a 3.x server.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest
from _versions import NEW_2X, OLD_2X
from click.testing import CliRunner

from registry_sdk import RegistryClient
from registry_sdk.cli import cli
from registry_sdk.errors import (
    AliasNotFoundError,
    ModelNotFoundError,
    UnsupportedServerError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.versions

VERSIONS = [OLD_2X, NEW_2X]


@pytest.fixture(params=VERSIONS)
def old_server(request: pytest.FixtureRequest, versioned_server):
    return versioned_server(request.param)


def make_client(uri: str, tmp_path: Path) -> RegistryClient:
    return RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, max_retries=1
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_2_x_server_reports_what_it_has(old_server, tmp_path):
    with make_client(old_server.uri, tmp_path) as client:
        caps = client.capabilities()

    assert caps.server_version == old_server.version
    assert caps.supported is True
    assert caps.supports("aliases")
    assert not caps.supports("logged_models")
    assert not caps.supports("webhooks")


def test_webhooks_on_a_2_x_server_raise_unsupported(old_server, tmp_path):
    with make_client(old_server.uri, tmp_path) as client:
        for call in (
            lambda: list(client.list_webhooks()),
            lambda: client.create_webhook("w", "https://example.test/h", ["model_version.created"]),
            lambda: client.get_webhook("missing"),
        ):
            with pytest.raises(UnsupportedServerError) as caught:
                call()
            error = caught.value
            assert (error.feature, error.server_version, error.minimum) == (
                "registry webhooks",
                old_server.version,
                "3.3.0",
            )


def test_the_logged_models_api_on_a_2_x_server_raises_unsupported(old_server, tmp_path):
    with make_client(old_server.uri, tmp_path) as client:
        backend = client.backend
        with pytest.raises(UnsupportedServerError) as caught:
            backend._json(  # the endpoint MLflow 3's log_model calls first
                "POST",
                "/logged-models",
                body={"experiment_id": "0", "name": "model"},
                action="create a logged model",
            )

    assert (caught.value.feature, caught.value.server_version, caught.value.minimum) == (
        "logged models (MLflow 3's model API)",
        old_server.version,
        "3.0.0",
    )


def test_missing_things_raise_the_same_errors_as_on_a_3_x_server(old_server, tmp_path):
    with make_client(old_server.uri, tmp_path) as client:
        name = unique("caps")
        client.create_model(name)
        ghost = unique("ghost")

        with pytest.raises(ModelNotFoundError):
            client.resolve(f"{ghost}@prod")
        with pytest.raises(ModelNotFoundError):
            client.resolve(f"{ghost}/1")
        with pytest.raises(ModelNotFoundError):
            client.get_model(ghost)
        with pytest.raises(AliasNotFoundError):
            client.resolve(f"{name}@prod")
        with pytest.raises(AliasNotFoundError):
            client.delete_alias(name, "prod")
        with pytest.raises(VersionNotFoundError):
            client.resolve(f"{name}/1")


def test_doctor_on_a_2_x_server_lists_the_missing_features(old_server):
    result = CliRunner().invoke(
        cli, ["--tracking-uri", old_server.uri, "doctor", "--json"], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["server_version"] == old_server.version
    assert report["supported"] is True
    assert report["features"] == {
        "aliases": {"available": True, "minimum": "2.3.0"},
        "logged_models": {"available": False, "minimum": "3.0.0"},
        "webhooks": {"available": False, "minimum": "3.3.0"},
    }

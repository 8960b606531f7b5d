"""A real MLflow 2.2 server, older than the SDK supports and without model version aliases.

Aliases came with MLflow 2.3. On such a server every feature that needs them raises
``UnsupportedServerError`` naming the feature, the server's version and the minimum, never a
not-found of the user's model; what the server has (models, versions, stages, loading by
version or stage, ``@register`` without an alias) keeps working, and ``registry doctor`` says
the server is too old with exit code 6. The server runs from its own cached environment
(``_versions.NO_ALIASES``).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest
from _versions import NO_ALIASES
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk.cli import cli
from registry_sdk.errors import ModelNotFoundError, UnsupportedServerError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.versions

ALIASES = ("model version aliases", NO_ALIASES, "2.3.0")
X = np.random.default_rng(5).normal(size=(30, 3))
Y = (X[:, 0] > 0).astype(np.int64)


@pytest.fixture
def server(versioned_server):
    return versioned_server(NO_ALIASES)


@pytest.fixture
def client(server, tmp_path: Path):
    with rs.RegistryClient(
        server.uri,
        registry_uri=server.uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=30,
        max_retries=1,
    ) as registry:
        yield registry


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fit():
    return LogisticRegression().fit(X, Y)


def assert_needs_aliases(error: UnsupportedServerError) -> None:
    assert (error.feature, error.server_version, error.minimum) == ALIASES
    assert "2.3.0" in str(error)
    assert NO_ALIASES in str(error)


@pytest.fixture
def registered(client):
    """A model with version 1 in stage Production, registered without an alias."""
    name = unique("noalias")
    train = rs.register(name, client=client)(fit)
    model = train()
    client.transition_stage(f"{name}/1", "Production")
    return name, model


def test_the_server_reports_no_aliases_and_is_not_supported(client):
    caps = client.capabilities()

    assert caps.server_version == NO_ALIASES
    assert caps.supported is False
    for feature in ("aliases", "logged_models", "webhooks"):
        assert not caps.supports(feature)


def test_register_without_an_alias_and_loading_by_version_and_stage_work(client, registered):
    name, model = registered

    expected = model.predict(X)
    np.testing.assert_array_equal(client.load_model(f"{name}/1").predict(X), expected)
    np.testing.assert_array_equal(client.load_model(f"{name}/Production").predict(X), expected)
    np.testing.assert_array_equal(client.load_model(f"{name}@latest").predict(X), expected)
    assert client.get_model(name).latest_version == 1


def test_every_alias_feature_raises_unsupported_naming_the_minimum(client, registered):
    name, _ = registered
    calls = {
        "resolve": lambda: client.resolve(f"{name}@prod"),
        "load_model": lambda: client.load_model(f"{name}@prod"),
        "set_alias": lambda: client.set_alias(name, "prod", 1),
        "delete_alias": lambda: client.delete_alias(name, "prod"),
        "promote": lambda: client.promote(f"{name}/1", to="prod"),
        "rollback": lambda: client.rollback(name, "prod"),
        "migrate_stages": lambda: client.migrate_stages(name),
        "migrate_stages dry run": lambda: client.migrate_stages(name, dry_run=True),
    }
    for what, call in calls.items():
        with pytest.raises(UnsupportedServerError) as caught:
            call()
        error = caught.value
        assert (error.feature, error.server_version, error.minimum) == ALIASES, what

    # Nothing moved: the version is where it was, with no alias.
    mv = client.resolve(f"{name}/1")
    assert (mv.current_stage, mv.aliases) == ("Production", ())


def test_an_alias_of_a_missing_model_is_unsupported_too_not_a_missing_model(client):
    """Whether the model exists cannot be asked through the alias endpoint the server lacks."""
    with pytest.raises(UnsupportedServerError) as caught:
        client.resolve(f"{unique('ghost')}@prod")
    assert_needs_aliases(caught.value)
    with pytest.raises(ModelNotFoundError):
        client.resolve(f"{unique('ghost')}/1")


def test_register_with_an_alias_is_refused_before_training(client):
    name = unique("refused")
    trained = []

    @rs.register(name, alias="prod", client=client)
    def train():
        trained.append(True)
        return fit()

    with pytest.raises(UnsupportedServerError) as caught:
        train()

    assert_needs_aliases(caught.value)
    assert trained == [], "the function trained although the alias could never be set"
    assert train.last_version is None
    with pytest.raises(ModelNotFoundError):
        client.get_model(name)


def test_logged_models_and_webhooks_are_unsupported(client):
    with pytest.raises(UnsupportedServerError) as caught:
        list(client.list_webhooks())
    assert (caught.value.feature, caught.value.minimum) == ("registry webhooks", "3.3.0")
    with pytest.raises(UnsupportedServerError) as caught:
        client.backend._json(
            "POST", "/logged-models", body={"experiment_id": "0"}, action="create a logged model"
        )
    assert (caught.value.feature, caught.value.minimum) == (
        "logged models (MLflow 3's model API)",
        "3.0.0",
    )


def test_doctor_says_the_server_is_too_old_and_exits_6(server):
    result = CliRunner().invoke(
        cli, ["--tracking-uri", server.uri, "doctor", "--json"], catch_exceptions=False
    )

    assert result.exit_code == 6, result.output
    report = json.loads(result.stdout)
    assert report["server_version"] == NO_ALIASES
    assert report["supported"] is False
    assert report["features"]["aliases"] == {"available": False, "minimum": "2.3.0"}

    text = CliRunner().invoke(cli, ["--tracking-uri", server.uri, "doctor"])
    assert text.exit_code == 6
    assert "2.3.0" in text.output
    assert "2.9.0" in text.output  # the oldest server the SDK supports

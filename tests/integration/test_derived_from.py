"""Lineage: a model loaded inside a ``@rs.register`` function is recorded on the new version.

The new version's ``registry_sdk.derived_from`` tag is a JSON list of the exact versions the
training function loaded (``base/2``, never ``base@prod``), each once, in the order they were
first loaded; a registration that loads nothing has no such tag. Everything runs against the
session's real ``mlflow server`` (SQLite backend store), each test with its own model names and
its own cache, and the tags are read back with vanilla MLflow.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import SGDRegressor

import registry_sdk as rs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _servers import MlflowServer

pytestmark = pytest.mark.timeout(240)

DERIVED_FROM = "registry_sdk.derived_from"
RNG = np.random.default_rng(3)
X = RNG.normal(size=(60, 3))
Y = X @ np.array([1.0, -2.0, 0.5])
# The fine-tuning data follows a different law: a fine-tuned model predicts differently.
X_TUNE = RNG.normal(size=(60, 3))
Y_TUNE = X_TUNE @ np.array([3.0, 1.0, -1.0]) + 5.0


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def server(mlflow_server_sqlite: MlflowServer) -> MlflowServer:
    return mlflow_server_sqlite


@pytest.fixture
def client(server: MlflowServer, tmp_path: Path) -> Iterator[rs.RegistryClient]:
    with rs.RegistryClient(
        server.uri,
        registry_uri=server.uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=10,
        max_retries=1,
    ) as registry:
        yield registry


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def version_tags(server: MlflowServer, name: str, version: int) -> dict[str, str]:
    """The version's tags as vanilla MLflow reads them."""
    vanilla = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    return dict(vanilla.get_model_version(name, str(version)).tags)


def derived_from(server: MlflowServer, name: str, version: int) -> list[str]:
    tags = version_tags(server, name, version)
    assert DERIVED_FROM in tags, sorted(tags)
    value = json.loads(tags[DERIVED_FROM])
    assert isinstance(value, list), tags[DERIVED_FROM]
    return value


def register_base(client: rs.RegistryClient, name: str, seed: int, alias: str = "prod") -> int:
    """Register an SGD regressor trained from scratch (nothing loaded); return its version."""

    @rs.register(name, alias=alias, client=client)
    def train(seed: int) -> SGDRegressor:
        return SGDRegressor(random_state=seed, max_iter=50, tol=None).fit(X, Y)

    train(seed)
    assert train.last_version is not None, "the registration went to the outbox"
    return train.last_version.version


class Blend:
    """Averages the predictions of several models: a model derived from all of them."""

    def __init__(self, *models) -> None:
        self.models = models

    def predict(self, X):
        return np.mean([m.predict(X) for m in self.models], axis=0)


# ------------------------------------------------------------------------------ tests


def test_a_fine_tuned_model_records_the_version_it_started_from(server, client):
    base, child = unique("base"), unique("child")
    assert register_base(client, base, seed=0) == 1
    assert register_base(client, base, seed=1) == 2  # prod now names version 2
    for version in (1, 2):
        assert DERIVED_FROM not in version_tags(server, base, version)

    @rs.register(child, alias="prod", client=client)
    def fine_tune(X, y):
        loaded = rs.load_model(f"{base}@prod", client=client)  # a cold cache: fetched now
        model = copy.deepcopy(loaded.unwrap())
        for _ in range(20):
            model.partial_fit(X, y)
        return model

    tuned = fine_tune(X_TUNE, Y_TUNE)
    assert fine_tune.last_version is not None
    assert "prod" in fine_tune.last_version.aliases

    # The version the alias named when it was loaded, not the alias and not another version.
    assert derived_from(server, child, fine_tune.last_version.version) == [f"{base}/2"]

    # It really is a different model from its base, and it is what the registry serves.
    served = rs.load_model(f"{child}@prod", client=client)
    base_model = rs.load_model(f"{base}/2", client=client)
    np.testing.assert_allclose(served.predict(X_TUNE), tuned.predict(X_TUNE))
    assert not np.allclose(served.predict(X_TUNE), base_model.predict(X_TUNE))


def test_every_model_loaded_is_recorded_once_in_load_order(server, client):
    first, second, child = unique("first"), unique("second"), unique("blend")
    register_base(client, first, seed=0)
    register_base(client, first, seed=1, alias="challenger")  # first/2
    register_base(client, second, seed=2)

    @rs.register(child, alias="prod", client=client)
    def blend():
        models = [
            rs.load_model(f"{second}@prod", flavor="native", client=client),
            rs.load_model(f"{first}/1", flavor="native", client=client),
            client.load_model(f"{first}@challenger", flavor="native"),
            # The same versions again (now cached): recorded once each.
            rs.load_model(f"{second}/1", flavor="native", client=client),
            rs.load_model(f"{first}@prod", flavor="native", client=client),
        ]
        return Blend(*models)

    blend()
    assert blend.last_version is not None
    assert derived_from(server, child, blend.last_version.version) == [
        f"{second}/1",
        f"{first}/1",
        f"{first}/2",
    ]


def test_only_loads_inside_the_training_function_count(server, client):
    base, child = unique("base"), unique("child")
    register_base(client, base, seed=0)
    # Loaded before any registration (and so now cached, fast form included).
    warm = rs.load_model(f"{base}@prod", client=client)
    assert warm.version.version == 1

    @rs.register(child, client=client)
    def from_scratch():
        return SGDRegressor(random_state=5, max_iter=50, tol=None).fit(X_TUNE, Y_TUNE)

    from_scratch()
    assert from_scratch.last_version is not None
    scratch_tags = version_tags(server, child, from_scratch.last_version.version)
    assert DERIVED_FROM not in scratch_tags, scratch_tags[DERIVED_FROM]

    @rs.register(child, client=client)
    def wrap():
        return Blend(rs.load_model(f"{base}@prod", flavor="native", client=client))

    wrap()
    assert wrap.last_version is not None
    assert derived_from(server, child, wrap.last_version.version) == [f"{base}/1"]

    # A registration after it loads nothing again: nothing carries over from the previous call.
    from_scratch()
    assert from_scratch.last_version is not None
    later = version_tags(server, child, from_scratch.last_version.version)
    assert DERIVED_FROM not in later, later[DERIVED_FROM]

"""The cache serves only the model the registry names, on the embedded default store.

* Two projects that both use the default ``sqlite:///mlflow.db`` (a relative path) and one
  cache directory never see each other's models.
* A model deleted and re-created under the same name (MLflow numbers its versions from 1
  again) is never served from the old entry: an alias load notices at once, and a delete
  through the SDK removes the old entries so a pinned load fetches the new version.
* ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false`` turns the fast-load form off: it is neither
  written nor read, so loading goes through MLflow's own loader, which then refuses the model
  as MLflow itself would (a typed error, not MLflow's exception). MLflow 2 has no such switch:
  with it installed, its loader loads the model (and the SDK still skips the fast form).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pytest
from _client_version import MLFLOW_3

import registry_sdk as rs
from registry_sdk import _digest
from registry_sdk.loading import cache_for

pytestmark = pytest.mark.timeout(600)

X = np.arange(12, dtype=float).reshape(6, 2)


def _train(client: rs.RegistryClient, name: str, constant: float) -> rs.ModelVersion:
    @rs.register(name, alias="prod", client=client)
    def train(X: Any, y: Any) -> Any:
        from sklearn.dummy import DummyRegressor

        return DummyRegressor(strategy="constant", constant=constant).fit(X, y)

    train(X, np.zeros(len(X)))
    assert train.last_version is not None
    return train.last_version


def _predicts(model: Any, value: float) -> None:
    np.testing.assert_array_equal(model.predict(X), np.full(len(X), value))


def test_two_projects_on_the_default_relative_sqlite_uri_do_not_share_cache_entries(
    tmp_path, monkeypatch
):
    cache = tmp_path / "shared-cache"
    for project, constant in (("a", 1.0), ("b", 2.0)):
        (tmp_path / project).mkdir()
        monkeypatch.chdir(tmp_path / project)
        client = rs.RegistryClient("sqlite:///mlflow.db", cache_dir=cache)
        assert _train(client, "churn", constant).ref == "churn/1"
        _predicts(client.load_model("churn/1"), constant)
        _predicts(client.load_model("churn@prod"), constant)
    monkeypatch.chdir(tmp_path / "a")
    _predicts(rs.RegistryClient("sqlite:///mlflow.db", cache_dir=cache).load_model("churn/1"), 1.0)
    assert len([p for p in cache.iterdir() if p.name.startswith("sqlite")]) == 2


def test_a_model_re_created_by_another_client_is_not_served_from_the_old_entry(tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = rs.RegistryClient(uri, cache_dir=tmp_path / "cache")
    first = _train(client, "churn", 1.0)
    _predicts(client.load_model("churn@prod"), 1.0)

    # Another client deletes the model and registers a new one under the same name.
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).delete_registered_model("churn")
    other = rs.RegistryClient(uri, cache_dir=tmp_path / "other-cache")
    second = _train(other, "churn", 2.0)
    assert second.ref == first.ref == "churn/1"
    assert second.created_at != first.created_at

    _predicts(client.load_model("churn@prod"), 2.0)  # the alias names the new version 1
    _predicts(client.load_model("churn/1"), 2.0)  # and the old entry is gone for good
    entry = cache_for(client).get("churn", 1)
    assert entry is not None
    assert entry.version.run_id == second.run_id


def test_deleting_a_model_through_the_sdk_drops_its_cache_entries(tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = rs.RegistryClient(uri, cache_dir=tmp_path / "cache")
    _train(client, "churn", 1.0)
    _predicts(client.load_model("churn/1"), 1.0)
    client.delete_model("churn")
    assert client.cached_versions() == []
    _train(client, "churn", 2.0)
    _predicts(client.load_model("churn/1"), 2.0)  # a pinned load: no request to tell, yet right
    client.delete_version("churn/1")
    assert client.cached_versions() == []


def _spy_on_mlflow_loaders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each call of MLflow's own model loaders; the real loaders still run."""
    import mlflow.pyfunc
    import mlflow.sklearn

    calls: list[str] = []
    for module, label in ((mlflow.pyfunc, "pyfunc"), (mlflow.sklearn, "sklearn")):

        def spy(*args: Any, _real: Any = module.load_model, _label: str = label, **kw: Any) -> Any:
            calls.append(_label)
            return _real(*args, **kw)

        monkeypatch.setattr(module, "load_model", spy)
    return calls


def _loads_through_mlflow_only(load: Any) -> None:
    """Under the switch: MLflow 3's loader refuses the model; MLflow 2 has none and loads it."""
    if MLFLOW_3:
        with pytest.raises(rs.RegistryError, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
            load()
    else:
        _predicts(load(), 3.0)


def test_pickle_deserialization_switched_off_turns_the_fast_form_off(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = rs.RegistryClient(uri, cache_dir=tmp_path / "cache")
    _train(client, "churn", 3.0)
    warm = client.load_model("churn/1")
    _predicts(warm, 3.0)
    entry = cache_for(client).get("churn", 1)
    assert entry is not None
    assert entry.fast is not None  # the fast form exists: pickle is allowed by default

    mlflow_loads = _spy_on_mlflow_loaders(monkeypatch)
    _predicts(client.load_model("churn/1"), 3.0)
    assert mlflow_loads == []  # the fast form: MLflow's loader is not called

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    for flavor in (None, "native"):
        _loads_through_mlflow_only(
            lambda flavor=flavor: client.load_model("churn/1", flavor=flavor)
        )
    assert mlflow_loads == ["pyfunc", "sklearn"]  # the fast form was not read

    other = rs.RegistryClient(uri, cache_dir=tmp_path / "fresh-cache")
    _loads_through_mlflow_only(lambda: other.load_model("churn/1"))
    assert mlflow_loads[2:] == ["pyfunc"]
    fresh = cache_for(other).get("churn", 1)
    assert fresh is not None  # fetched and verified; no fast form written
    assert fresh.fast is None
    assert not (fresh.path / "fast").exists()

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    _predicts(other.load_model("churn/1"), 3.0)
    assert mlflow_loads[3:] == ["pyfunc"]  # loaded through MLflow, and the fast form written
    allowed = cache_for(other).get("churn", 1)
    assert allowed is not None
    assert allowed.fast is not None


def test_a_cached_version_whose_recorded_digest_changed_is_fetched_and_verified_again(tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    client = rs.RegistryClient(uri, cache_dir=tmp_path / "cache")
    mv = _train(client, "churn", 4.0)
    _predicts(client.load_model("churn@prod"), 4.0)
    recorded = client.get_version(mv.ref).tags[_digest.DIGEST_TAG]

    # Someone rewrites the digest: the cached files no longer match what the registry vouches
    # for, so an alias load (which sees the new tag) fetches again and refuses the mismatch.
    client.set_tag(mv.ref, _digest.DIGEST_TAG, "0" * 64)
    with pytest.raises(rs.CacheIntegrityError, match="do not match the digest"):
        client.load_model("churn@prod")
    # The refused download replaced nothing: the entry verified earlier is still as it was.
    assert [e.digest for e in client.cached_versions()] == [recorded]
    client.set_tag(mv.ref, _digest.DIGEST_TAG, recorded)
    _predicts(client.load_model("churn@prod"), 4.0)

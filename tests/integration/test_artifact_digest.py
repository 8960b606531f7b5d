"""Verified from training to serving, on the production shape (PostgreSQL + S3 + proxied artifacts).

* ``@register`` records the digest of exactly what it uploaded; a cold load verifies the
  downloaded files against it before anything enters the cache.
* An object replaced in the S3-compatible store after registration is refused on load with
  ``CacheIntegrityError`` naming the file, and nothing is cached.
* A version registered by vanilla MLflow has no digest and loads as before; ``seal`` records
  one, after which a replaced object is refused too; ``verify`` and ``registry verify`` report
  it without loading; ``require_digest`` refuses unsealed versions.
"""

from __future__ import annotations

import json
import tempfile
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest
from _client_version import download_artifacts, log_artifacts
from click.testing import CliRunner

import registry_sdk as rs
from registry_sdk import _digest
from registry_sdk.cli import cli
from registry_sdk.loading import cache_for

if TYPE_CHECKING:
    from pathlib import Path

    from _production import ProductionStack

#: Fixture ``production`` (helpers are imported inside functions).
pytest_plugins = ["_production"]
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]


def _client(production: ProductionStack, cache: Path, **kwargs: object) -> rs.RegistryClient:
    return rs.RegistryClient(production.uri, cache_dir=cache, timeout=60, max_retries=2, **kwargs)


def _object_key(production: ProductionStack, mv: rs.ModelVersion, filename: str) -> str:
    """The S3 key of one artifact file of ``mv``."""
    uri = rs.RegistryClient(production.uri).backend.get_download_uri(mv.name, mv.version)
    if uri.startswith("runs:/"):  # a version registered from a run: its files under the run's
        run_id, _, sub = uri[len("runs:/") :].partition("/")
        wanted = f"/{run_id}/artifacts/{sub}/{filename}"
        keys = [k for k in production.s3_keys() if k.endswith(wanted)]
    else:  # mlflow-artifacts:/<path> is served from s3://<bucket>/artifacts/<path>
        path = uri.split(":", 1)[1].lstrip("/")
        keys = [k for k in production.s3_keys(f"artifacts/{path}/") if k.endswith("/" + filename)]
    assert len(keys) == 1, (uri, keys)
    return keys[0]


def _replace_object(production: ProductionStack, key: str, content: bytes) -> None:
    production.moto.s3().put_object(Bucket=production.server.bucket, Key=key, Body=content)


def _tampered(original: bytes) -> bytes:
    """Same size, other bytes: only a content hash can tell."""
    data = bytearray(original)
    data[len(data) // 2] ^= 0x20
    return bytes(data)


def _vanilla_version(production: ProductionStack, name: str, tmp_path: Path) -> rs.ModelVersion:
    """A version registered by plain MLflow: no registry_sdk tags at all."""
    from sklearn.dummy import DummyRegressor

    X = np.arange(12, dtype=float).reshape(6, 2)
    model = DummyRegressor(strategy="constant", constant=7.0).fit(X, np.zeros(6))
    vanilla = mlflow.MlflowClient(tracking_uri=production.uri, registry_uri=production.uri)
    experiment = vanilla.get_experiment_by_name("Default")
    assert experiment is not None
    run = vanilla.create_run(experiment.experiment_id)
    local = tmp_path / "vanilla-model"
    mlflow.sklearn.save_model(model, str(local), serialization_format="cloudpickle")
    log_artifacts(production.uri, run.info.run_id, local, "model")
    vanilla.set_terminated(run.info.run_id)
    vanilla.create_registered_model(name)
    created = vanilla.create_model_version(
        name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )
    return rs.RegistryClient(production.uri).get_version(name, int(created.version))


def test_register_records_the_digest_of_what_it_uploaded(production, tmp_path):
    from _production import make_trainer, training_data

    X, y = training_data()
    with _client(production, tmp_path / "cache") as client:
        train = make_trainer("digest-register", client)
        train(X, y, 3)
        mv = train.last_version
        assert mv is not None
        recorded = client.get_version(mv.ref).tags[_digest.DIGEST_TAG]
        # What vanilla MLflow downloads from the version's location is exactly what was recorded.
        vanilla = mlflow.MlflowClient(tracking_uri=production.uri, registry_uri=production.uri)
        location = vanilla.get_model_version_download_uri(mv.name, str(mv.version))
        with tempfile.TemporaryDirectory() as tmp:
            got = download_artifacts(location, tmp, production.uri)
            assert _digest.tree_digest(_digest.tree_records(got)) == recorded
        loaded = client.load_model(mv.ref)
        np.testing.assert_array_equal(loaded.predict(X), np.full(len(X), 3.0))
        entry = cache_for(client).get(mv.name, mv.version)
        assert entry is not None
        assert entry.digest_verified
        assert client.verify(mv.ref).ok


def test_an_object_replaced_in_s3_after_registration_is_refused_naming_the_file(
    production, tmp_path
):
    from _production import make_trainer, training_data

    X, y = training_data()
    with _client(production, tmp_path / "writer") as client:
        train = make_trainer("digest-replaced", client)
        train(X, y, 5)
    mv = train.last_version
    assert mv is not None
    key = _object_key(production, mv, "requirements.txt")
    original = production.moto.s3().get_object(Bucket=production.server.bucket, Key=key)
    _replace_object(production, key, _tampered(original["Body"].read()))

    with _client(production, tmp_path / "reader") as reader:
        for load in (
            lambda: reader.load_model("digest-replaced@prod"),
            lambda: reader.pull(mv.ref),
            lambda: rs.load_model(mv.ref, client=reader, flavor="native"),
        ):
            with pytest.raises(rs.CacheIntegrityError, match=r"changed: requirements\.txt"):
                load()
        assert reader.cached_versions() == []  # nothing was cached
        report = reader.verify(mv.ref)
        assert not report.ok
        assert report.problems == ("changed: requirements.txt",)
        result = CliRunner().invoke(
            cli, ["--tracking-uri", production.uri, "verify", mv.ref, "--json"]
        )
        assert result.exit_code == 1, result.output
        assert json.loads(result.stdout)["problems"] == ["changed: requirements.txt"]


def test_a_vanilla_version_loads_and_once_sealed_a_replaced_object_is_refused(production, tmp_path):
    mv = _vanilla_version(production, "digest-vanilla", tmp_path)
    assert _digest.DIGEST_TAG not in mv.tags
    X = np.arange(12, dtype=float).reshape(6, 2)

    with _client(production, tmp_path / "first") as client:
        np.testing.assert_array_equal(client.load_model(mv.ref).predict(X), np.full(6, 7.0))
        with pytest.raises(rs.CacheIntegrityError, match="require_digest"):
            _client(production, tmp_path / "strict", require_digest=True).load_model(mv.ref)
        assert not client.verify(mv.ref).ok  # not sealed

        sealed = client.seal(mv.ref)
        assert sealed.ok
        assert client.get_version(mv.ref).tags[_digest.DIGEST_TAG] == sealed.expected
        assert client.verify(mv.ref).ok
        # The entry cached before sealing is of the same files: it becomes verified.
        client.load_model("digest-vanilla@latest")
        entry = cache_for(client).get(mv.name, mv.version)
        assert entry is not None
        assert entry.digest_verified
        strict = _client(production, tmp_path / "strict", require_digest=True)
        np.testing.assert_array_equal(strict.load_model(mv.ref).predict(X), np.full(6, 7.0))

    key = _object_key(production, mv, "model.pkl")
    original = production.moto.s3().get_object(Bucket=production.server.bucket, Key=key)
    _replace_object(production, key, _tampered(original["Body"].read()))
    with _client(production, tmp_path / "second") as reader:
        with pytest.raises(rs.CacheIntegrityError, match=r"changed: model\.pkl"):
            reader.load_model(mv.ref)
        assert reader.cached_versions() == []
        with pytest.raises(rs.CacheIntegrityError, match="refusing to re-seal"):
            reader.seal(mv.ref)
        assert not reader.verify(mv.ref).ok

"""Signed models on the production shape (PostgreSQL + S3 behind an MLflow server).

A version registered with ``@register(sign=<private key>)`` carries a sigstore bundle (the
OpenSSF model-signing format) beside its files and the bundle's sha256 in a tag. A load that
requires a signature by a public key checks the downloaded files against it before they enter
the cache; every way a version can fail that (unsigned, another key, a byte changed, a file
added or removed, the bundle edited or swapped) raises ``SignatureError`` and leaves nothing of
the version in the cache. Tampering is done in the S3 bucket behind the server, as someone with
write access to the store would. A version signed with a certificate (``SigningKey``) is
verified with its root CA's certificate, and refused by another CA.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import numpy as np
import pytest

import registry_sdk as rs
from registry_sdk import signing
from registry_sdk.signing import SigningKey

pytest.importorskip("model_signing")
from tests.signing_keys import certificate_chain, key_pair

if TYPE_CHECKING:
    from pathlib import Path

#: The ``production`` fixture.
pytest_plugins = ["_production"]

X = np.arange(12, dtype=np.float64).reshape(4, 3)


class Scaled:
    """A plain model of this test module (saved as a cloudpickle pyfunc)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, data):
        return np.asarray(data, dtype=np.float64).sum(axis=1) * self.factor


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs: the pipeline's (``a``) and someone else's (``b``)."""
    folder = tmp_path_factory.mktemp("keys")
    return {"a": key_pair(folder, "a"), "b": key_pair(folder, "b")}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two CAs, each with a leaf certificate for signing: ``a`` through an intermediate."""
    folder = tmp_path_factory.mktemp("pki")
    return {
        "a": certificate_chain(folder, "a", intermediate=True),
        "b": certificate_chain(folder, "b"),
    }


def _register(production, tmp_path: Path, sign: Path | SigningKey | None, factor: float = 2.0):
    """A fresh model, one version @prod, signed with ``sign``; (client, version)."""
    name = f"signed-{uuid.uuid4().hex[:10]}"
    client = rs.RegistryClient(production.uri, cache_dir=tmp_path / "train-cache")

    @rs.register(name, alias="prod", client=client, sign=sign)
    def train(factor: float = factor):
        return Scaled(factor)

    train()
    assert train.last_version is not None
    return client, train.last_version


def _objects(production, client: rs.RegistryClient, mv: rs.ModelVersion) -> dict[str, str]:
    """The version's files in the bucket: relative path -> object key."""
    uri = client.backend.get_download_uri(mv.name, mv.version)
    assert uri.startswith("mlflow-artifacts:/"), uri
    prefix = "artifacts/" + uri[len("mlflow-artifacts:") :].lstrip("/").rstrip("/") + "/"
    return {key[len(prefix) :]: key for key in production.s3_keys(prefix)}


def _loader(production, tmp_path: Path) -> rs.RegistryClient:
    return rs.RegistryClient(production.uri, cache_dir=tmp_path / "serve-cache")


def _nothing_cached(client: rs.RegistryClient, mv: rs.ModelVersion) -> None:
    cached = [(e.version.name, e.version.version) for e in client.cached_versions()]
    assert (mv.name, mv.version) not in cached
    leftovers = list((client.settings.cache_dir).rglob(f"*{mv.name}*/.tmp-*"))
    leftovers += list((client.settings.cache_dir).rglob(".tmp-*"))
    assert leftovers == []


def test_a_signed_version_loads_verified_in_a_fresh_process_and_with_vanilla_mlflow(
    production, keys, tmp_path, monkeypatch
):
    private, public = keys["a"]
    client, mv = _register(production, tmp_path, private)
    assert signing.SIGNATURE_TAG in mv.tags
    assert signing.SIGNATURE_FILE in _objects(production, client, mv)

    code = (
        "import json, sys, numpy as np, registry_sdk as rs\n"
        f"client = rs.RegistryClient({production.uri!r}, cache_dir=sys.argv[1])\n"
        f"model = rs.load_model({mv.name + '@prod'!r}, client=client)\n"
        f"print(json.dumps(model.predict(np.arange(12.0).reshape(4, 3)).tolist()))\n"
    )
    env = {"PATH": "/usr/bin:/bin", signing.VERIFY_KEY_ENV: str(public)}
    fresh = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fresh-cache")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    expected = Scaled(2.0).predict(X).tolist()
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == expected

    # Vanilla MLflow loads the very same version, unaware of the signature.
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", production.uri)
    vanilla = mlflow.pyfunc.load_model(f"models:/{mv.name}@prod")
    assert vanilla.predict(X).tolist() == expected

    # In this process: verified once when cached, then recorded; warm loads do not verify again.
    loader = _loader(production, tmp_path)
    assert rs.load_model(f"{mv.name}@prod", client=loader, verify=public).predict(X).tolist() == (
        expected
    )
    [entry] = [e for e in loader.cached_versions() if e.version.name == mv.name]
    assert entry.signed_by == (signing.key_file_id(public),)
    calls = []
    real = signing.verify_model
    monkeypatch.setattr(signing, "verify_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    rs.load_model(f"{mv.name}@prod", client=loader, verify=public)
    assert calls == []
    # Offline, the verified entry still loads with the policy on.
    offline = rs.load_model(
        f"{mv.name}@prod", client=loader.with_offline(offline=True), verify=public
    )
    assert offline.predict(X).tolist() == expected


def test_an_unsigned_version_is_refused(production, keys, tmp_path):
    _, mv = _register(production, tmp_path, None)
    loader = _loader(production, tmp_path)
    with pytest.raises(rs.SignatureError, match="is not signed"):
        rs.load_model(f"{mv.name}@prod", client=loader, verify=keys["a"][1])
    _nothing_cached(loader, mv)


def test_a_signature_by_another_key_is_refused(production, keys, tmp_path):
    _, mv = _register(production, tmp_path, keys["b"][0])
    loader = _loader(production, tmp_path)
    with pytest.raises(rs.SignatureError, match="no valid signature by the keys given"):
        loader.pull(f"{mv.name}@prod", verify=keys["a"][1])
    _nothing_cached(loader, mv)
    # Either of several keys will do.
    assert loader.pull(f"{mv.name}@prod", verify=[keys["a"][1], keys["b"][1]]).is_dir()


@pytest.mark.parametrize("tamper", ["byte-changed", "file-added", "file-removed"])
def test_stored_files_that_differ_from_the_signature_are_refused(
    production, keys, tmp_path, tamper
):
    private, public = keys["a"]
    client, mv = _register(production, tmp_path, private)
    objects = _objects(production, client, mv)
    s3, bucket = production.moto.s3(), production.server.bucket
    model_file = next(rel for rel in objects if rel.endswith(".pkl"))
    if tamper == "byte-changed":
        body = bytearray(s3.get_object(Bucket=bucket, Key=objects[model_file])["Body"].read())
        body[len(body) // 2] ^= 0x01
        s3.put_object(Bucket=bucket, Key=objects[model_file], Body=bytes(body))
        expected = "sha256 mismatch|Hash mismatch"
    elif tamper == "file-added":
        key = objects["MLmodel"].rsplit("/", 1)[0] + "/extra.py"
        s3.put_object(Bucket=bucket, Key=key, Body=b"print('planted')\n")
        expected = "Extra files"
    else:
        s3.delete_object(Bucket=bucket, Key=objects["requirements.txt"])
        expected = "Missing files"
    loader = _loader(production, tmp_path)
    with pytest.raises(rs.SignatureError, match=expected):
        rs.load_model(f"{mv.name}@prod", client=loader, verify=public)
    _nothing_cached(loader, mv)


def test_a_tampered_or_swapped_bundle_is_refused(production, keys, tmp_path):
    private, public = keys["a"]
    client, mv = _register(production, tmp_path, private)
    objects = _objects(production, client, mv)
    s3, bucket = production.moto.s3(), production.server.bucket
    bundle_key = objects[signing.SIGNATURE_FILE]
    original = s3.get_object(Bucket=bucket, Key=bundle_key)["Body"].read()
    loader = _loader(production, tmp_path)

    # One byte of the bundle edited: not the bundle the tag records.
    s3.put_object(Bucket=bucket, Key=bundle_key, Body=original.replace(b'"', b" ", 1))
    with pytest.raises(rs.SignatureError, match="not the one registered"):
        rs.load_model(f"{mv.name}@prod", client=loader, verify=public)
    _nothing_cached(loader, mv)

    # A bundle signed by another key over the same files, its tag rewritten to match (someone
    # with write access to both the store and the tags): the key does not match.
    other = tmp_path / "resigned"
    model_dir = client.pull(f"{mv.name}@prod")  # the trainer's cache: the files as registered
    shutil.copytree(model_dir, other)
    digest = signing.sign_model(other, keys["b"][0])
    s3.put_object(Bucket=bucket, Key=bundle_key, Body=(other / signing.SIGNATURE_FILE).read_bytes())
    client.set_tag(mv.ref, signing.SIGNATURE_TAG, digest)
    with pytest.raises(rs.SignatureError, match=r"Key mismatch|no valid signature"):
        rs.load_model(f"{mv.name}/{mv.version}", client=loader, verify=public)
    _nothing_cached(loader, mv)


def test_an_entry_cached_without_verification_is_checked_once_then_trusted(
    production, keys, tmp_path
):
    private, public = keys["a"]
    _, mv = _register(production, tmp_path, private)
    loader = _loader(production, tmp_path)
    loader.pull(f"{mv.name}@prod")  # no policy: cached unverified
    [entry] = [e for e in loader.cached_versions() if e.version.name == mv.name]
    assert entry.signed_by == ()
    loader.pull(f"{mv.name}@prod", verify=public)
    [entry] = [e for e in loader.cached_versions() if e.version.name == mv.name]
    assert entry.signed_by == (signing.key_file_id(public),)
    # Cached unverified, then refused: evicted.
    with pytest.raises(rs.SignatureError):
        loader.pull(f"{mv.name}@prod", verify=keys["b"][1])
    _nothing_cached(loader, mv)


def _cli(production, tmp_path: Path, *args: str, **env: str):
    from click.testing import CliRunner

    from registry_sdk.cli import cli

    environment = {
        "REGISTRY_SDK_CACHE_DIR": str(tmp_path / "cli-cache"),
        signing.VERIFY_KEY_ENV: "",
        signing.SIGNING_KEY_ENV: "",
        signing.SIGNING_CERTIFICATE_ENV: "",
        signing.SIGNING_CHAIN_ENV: "",
        **env,
    }
    return CliRunner().invoke(
        cli, ["--tracking-uri", production.uri, *args], env=environment, catch_exceptions=False
    )


def test_the_signed_gate_refuses_unsigned_versions_and_passes_signed_ones(
    production, keys, tmp_path
):
    private, public = keys["a"]
    _, unsigned = _register(production, tmp_path, None)
    _, signed = _register(production, tmp_path, private)

    refused = _cli(production, tmp_path, "check", unsigned.ref, "--require", "signed", "--json")
    assert refused.exit_code == 1, refused.output
    report = json.loads(refused.stdout)
    assert report["passed"] is False
    assert "is not signed" in report["gates"][0]["detail"]

    def gate(key: Path | None):
        env = {} if key is None else {signing.VERIFY_KEY_ENV: str(key)}
        return _cli(production, tmp_path, "check", signed.ref, "--require", "signed", **env)

    passed = gate(None)
    assert passed.exit_code == 0, passed.output
    assert "not verified" in passed.output  # no keys given: the tag only
    # With keys set, the gate verifies the files against them.
    verified = gate(public)
    assert verified.exit_code == 0, verified.output
    assert "and verified" in verified.output
    other = gate(keys["b"][1])
    assert other.exit_code == 1, other.output
    assert "no valid signature" in other.output


def test_registry_sign_then_verify_a_version_registered_unsigned(production, keys, tmp_path):
    private, public = keys["a"]
    client, mv = _register(production, tmp_path, None)
    client.pull(mv.ref)  # cached before it was signed

    before = _cli(production, tmp_path, "verify", mv.ref, "--key", str(public), "--json")
    assert before.exit_code == 1, before.output
    assert any("is not signed" in p for p in json.loads(before.stdout)["problems"])

    signed = _cli(production, tmp_path, "sign", mv.ref, "--key", str(private), "--json")
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["signed"] is True

    after = _cli(production, tmp_path, "verify", mv.ref, "--key", str(public), "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["signed_by"] == str(public)
    # The digest recorded at registration still holds: the bundle is outside it.
    assert json.loads(after.stdout)["ok"] is True
    # The trainer's cache held the version from before it was signed: fetched again, verified.
    model = client.load_model(mv.ref, verify=public)
    assert model.predict(X).tolist() == Scaled(2.0).predict(X).tolist()


def test_an_import_requires_every_version_signed_before_it_creates_anything(
    production, keys, tmp_path
):
    private, public = keys["a"]
    client, mv = _register(production, tmp_path, private)
    exported = client.export([mv.name], to=tmp_path / "export")
    target = rs.RegistryClient(
        f"sqlite:///{tmp_path / 'target.db'}", cache_dir=tmp_path / "target-cache"
    )

    with pytest.raises(rs.SignatureError, match="no valid signature"):
        target.import_(exported, verify=keys["b"][1])
    assert [m.name for m in target.search_models()] == []

    report = target.import_(exported, verify=public)
    assert report.created == {mv.ref: mv.ref}
    # Imported with its bundle and tag: it loads verified from the new registry.
    model = target.load_model(f"{mv.name}@prod", verify=public)
    assert model.predict(X).tolist() == Scaled(2.0).predict(X).tolist()


def test_a_version_signed_with_a_certificate_loads_verified_by_its_ca_in_a_fresh_process(
    production, pki, tmp_path
):
    a = pki["a"]
    _, mv = _register(production, tmp_path, SigningKey(a.key, a.certificate, a.chain))
    assert signing.SIGNATURE_TAG in mv.tags

    code = (
        "import json, sys, numpy as np, registry_sdk as rs\n"
        f"client = rs.RegistryClient({production.uri!r}, cache_dir=sys.argv[1])\n"
        f"model = rs.load_model({mv.name + '@prod'!r}, client=client, verify=sys.argv[2])\n"
        "[entry] = client.cached_versions()\n"
        "predicted = model.predict(np.arange(12.0).reshape(4, 3)).tolist()\n"
        "print(json.dumps([entry.signed_by, predicted]))\n"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fresh-cache"), str(a.ca)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    signed_by, predicted = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert signed_by == [signing.key_file_id(a.ca)]
    assert predicted == Scaled(2.0).predict(X).tolist()


def test_registry_sign_with_a_certificate_then_another_ca_refuses_it_and_its_own_verifies(
    production, pki, tmp_path
):
    a, b = pki["a"], pki["b"]
    _, mv = _register(production, tmp_path, None)
    args = ["--key", str(a.key), "--certificate", str(a.certificate), "--chain", str(a.chain[0])]
    signed = _cli(production, tmp_path, "sign", mv.ref, *args, "--json")
    assert signed.exit_code == 0, signed.output

    loader = _loader(production, tmp_path)
    with pytest.raises(rs.SignatureError, match=rf"{mv.ref}: no valid signature.*does not chain"):
        loader.pull(mv.ref, verify=b.ca)
    _nothing_cached(loader, mv)
    # The leaf's public key is no substitute for the CA.
    with pytest.raises(rs.SignatureError, match="signed with a certificate"):
        loader.pull(mv.ref, verify=a.public)
    _nothing_cached(loader, mv)

    refused = _cli(production, tmp_path, "verify", mv.ref, "--key", str(b.ca), "--json")
    assert refused.exit_code == 1, refused.output
    verified = _cli(production, tmp_path, "verify", mv.ref, "--key", str(a.ca), "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["signed_by"] == str(a.ca)

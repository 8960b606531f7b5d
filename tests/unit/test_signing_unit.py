"""Signing a model directory and verifying it, on local files (the library's own checks).

With a bare key pair (verified by the public key) and with a certificate a CA issued (verified
by the root CA's certificate).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import TYPE_CHECKING

import pytest

from registry_sdk import _outbox, signing
from registry_sdk._digest import IGNORED
from registry_sdk.errors import ConfigurationError, SignatureError
from registry_sdk.signing import SigningKey

pytest.importorskip("model_signing")
from tests.signing_keys import certificate_chain, key_pair

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def signed(tmp_path):
    model = tmp_path / "model"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "data" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    private, public = key_pair(tmp_path, "a")
    digest = signing.sign_model(model, private)
    return model, public, {signing.SIGNATURE_TAG: digest}, tmp_path


def test_a_signed_directory_verifies_with_its_key_and_names_it(signed):
    model, public, tags, _ = signed
    assert (model / signing.SIGNATURE_FILE).is_file()
    assert signing.verify_model(model, [public], label="m/1", tags=tags) == public


def test_the_bundle_is_outside_the_artifact_digest():
    assert signing.SIGNATURE_FILE in IGNORED


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda m: (m / "data" / "weights.bin").write_bytes(b"\x00" * 16384), "Hash mismatch"),
        (lambda m: (m / "planted.py").write_text("x = 1\n"), "Extra files"),
        (lambda m: (m / ".gitattributes").write_text("* binary\n"), "Extra files"),
        (lambda m: (m / "MLmodel").unlink(), "Missing files"),
    ],
)
def test_every_changed_added_or_removed_file_is_refused(signed, tamper, message):
    model, public, tags, _ = signed
    tamper(model)
    with pytest.raises(SignatureError, match=message):
        signing.verify_model(model, [public], label="m/1", tags=tags)


def test_a_symlink_in_the_model_is_refused(signed):
    model, public, tags, tmp_path = signed
    (tmp_path / "outside").write_text("secret")
    (model / "data" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(SignatureError, match="symlink"):
        signing.verify_model(model, [public], label="m/1", tags=tags)


def test_unsigned_other_key_and_edited_bundle_are_refused(signed):
    model, public, tags, tmp_path = signed
    _, other = key_pair(tmp_path, "b")
    with pytest.raises(SignatureError, match="no valid signature"):
        signing.verify_model(model, [other], label="m/1", tags=tags)
    with pytest.raises(SignatureError, match="is not signed"):
        signing.verify_model(model, [public], label="m/1", tags={})
    bundle = model / signing.SIGNATURE_FILE
    bundle.write_bytes(bundle.read_bytes() + b" ")
    with pytest.raises(SignatureError, match="not the one registered"):
        signing.verify_model(model, [public], label="m/1", tags=tags)


def test_keys_come_from_arguments_or_the_environment(monkeypatch, tmp_path, signed):
    _, public, _, _ = signed
    _, other = key_pair(tmp_path, "c")
    monkeypatch.delenv(signing.VERIFY_KEY_ENV, raising=False)
    monkeypatch.delenv(signing.SIGNING_KEY_ENV, raising=False)
    assert signing.verify_keys() == ()
    assert signing.signing_key() is None
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, f"{public}{os.pathsep}{other}")
    assert signing.verify_keys() == (public, other)
    assert signing.verify_keys(other) == (other,)
    with pytest.raises(ConfigurationError, match="not a readable file"):
        signing.verify_keys(tmp_path / "missing.pub")
    with pytest.raises(ConfigurationError, match="cannot sign"):
        signing.sign_model(tmp_path, public)  # a public key cannot sign


# ================================================================= certificates (PKI)


def _model(folder: Path) -> Path:
    model = folder / "model"
    (model / "data").mkdir(parents=True)
    (model / "MLmodel").write_text("flavors: {}\n")
    (model / "data" / "weights.bin").write_bytes(bytes(range(256)) * 16)
    return model


def _sign(model: Path, key) -> dict[str, str]:
    return {signing.SIGNATURE_TAG: signing.sign_model(model, key)}


def test_a_certificate_signature_verifies_with_the_root_ca_and_carries_the_chain(tmp_path):
    model, pki = _model(tmp_path), certificate_chain(tmp_path, "a")
    tags = _sign(model, SigningKey(pki.key, certificate=pki.certificate))
    bundle = json.loads((model / signing.SIGNATURE_FILE).read_text())
    assert "x509CertificateChain" in bundle["verificationMaterial"]
    assert signing.verify_model(model, [pki.ca], label="m/1", tags=tags) == pki.ca
    # Among other keys and CAs, the one that verifies it is named.
    other, (_, public) = certificate_chain(tmp_path, "b"), key_pair(tmp_path, "k")
    assert signing.verify_model(model, [public, other.ca, pki.ca], label="m/1", tags=tags) == (
        pki.ca
    )


def test_an_intermediate_is_embedded_and_the_root_alone_verifies(tmp_path):
    model, pki = _model(tmp_path), certificate_chain(tmp_path, "a", intermediate=True)
    tags = _sign(model, SigningKey(pki.key, certificate=pki.certificate, chain=pki.chain))
    assert signing.verify_model(model, [pki.ca], label="m/1", tags=tags) == pki.ca
    # The intermediate alone is no trust anchor: the chain must end at a root given.
    with pytest.raises(SignatureError, match="does not chain to a CA in it"):
        signing.verify_model(model, [pki.chain[0]], label="m/1", tags=tags)

    # Not embedded: a verifier's file holding intermediate and root verifies it, the root not.
    bare = _model(tmp_path / "bare")
    tags = _sign(bare, SigningKey(pki.key, certificate=pki.certificate))
    with pytest.raises(SignatureError, match="does not chain"):
        signing.verify_model(bare, [pki.ca], label="m/1", tags=tags)
    both = tmp_path / "cas.pem"
    both.write_bytes(pki.chain[0].read_bytes() + pki.ca.read_bytes())
    assert signing.verify_model(bare, [both], label="m/1", tags=tags) == both


def test_a_certificate_signature_is_refused_by_another_ca_and_by_public_keys(tmp_path):
    model, pki = _model(tmp_path), certificate_chain(tmp_path, "a")
    tags = _sign(model, SigningKey(pki.key, certificate=pki.certificate))
    other = certificate_chain(tmp_path, "b")
    with pytest.raises(SignatureError, match=r"m/1: no valid signature.*does not chain"):
        signing.verify_model(model, [other.ca], label="m/1", tags=tags)
    # Not even the leaf's own public key: a certificate signature is verified by its CA.
    with pytest.raises(SignatureError, match="signed with a certificate, which a public key"):
        signing.verify_model(model, [pki.public], label="m/1", tags=tags)
    # Nor the leaf certificate as if it were a CA.
    with pytest.raises(SignatureError, match="does not chain"):
        signing.verify_model(model, [pki.certificate], label="m/1", tags=tags)
    # Files changed after signing are refused by the right CA.
    (model / "data" / "weights.bin").write_bytes(b"\x00" * 16)
    with pytest.raises(SignatureError, match="Hash mismatch"):
        signing.verify_model(model, [pki.ca], label="m/1", tags=tags)


def test_a_key_signature_is_refused_by_a_ca(tmp_path):
    model, (private, public) = _model(tmp_path), key_pair(tmp_path, "k")
    tags = _sign(model, private)
    pki = certificate_chain(tmp_path, "a")
    with pytest.raises(SignatureError, match="signed with a bare key, which a CA certificate"):
        signing.verify_model(model, [pki.ca], label="m/1", tags=tags)
    assert signing.verify_model(model, [pki.ca, public], label="m/1", tags=tags) == public


# model-signing logs with the deprecated Logger.warn when a certificate names no key usage.
@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_a_certificate_not_for_signing_is_refused_when_signing_and_verifying(tmp_path):
    model, pki = _model(tmp_path), certificate_chain(tmp_path, "a", signing_usage=False)
    with pytest.raises(ConfigurationError, match="not issued for signing"):
        signing.sign_model(model, SigningKey(pki.key, certificate=pki.certificate))
    assert not (model / signing.SIGNATURE_FILE).exists()
    # Signed anyway (by model-signing itself): verifiers refuse it.
    import model_signing

    config = model_signing.signing.Config().use_certificate_signer(
        private_key=pki.key, signing_certificate=pki.certificate, certificate_chain=[pki.ca]
    )
    config.set_hashing_config(signing._hashing(model_signing)).sign(
        model, model / signing.SIGNATURE_FILE
    )
    digest = signing.hashlib.sha256((model / signing.SIGNATURE_FILE).read_bytes()).hexdigest()
    with pytest.raises(SignatureError, match="cannot be used for signing"):
        signing.verify_model(model, [pki.ca], label="m/1", tags={signing.SIGNATURE_TAG: digest})


def test_an_expired_or_mismatched_certificate_cannot_sign(tmp_path):
    model = _model(tmp_path)
    now = dt.datetime.now(dt.timezone.utc)
    expired = certificate_chain(
        tmp_path, "old", leaf_valid=(now - dt.timedelta(days=2), now - dt.timedelta(days=1))
    )
    with pytest.raises(ConfigurationError, match="not now"):
        signing.sign_model(model, SigningKey(expired.key, certificate=expired.certificate))
    a, b = certificate_chain(tmp_path, "a"), certificate_chain(tmp_path, "b")
    with pytest.raises(ConfigurationError, match="does not match"):
        signing.sign_model(model, SigningKey(a.key, certificate=b.certificate))
    assert not (model / signing.SIGNATURE_FILE).exists()


def test_signing_keys_from_arguments_and_the_environment(monkeypatch, tmp_path):
    pki = certificate_chain(tmp_path, "a", intermediate=True)
    for name in (
        signing.SIGNING_KEY_ENV,
        signing.SIGNING_CERTIFICATE_ENV,
        signing.SIGNING_CHAIN_ENV,
    ):
        monkeypatch.delenv(name, raising=False)
    assert signing.signing_key() is None
    assert signing.signing_key(str(pki.key)) == SigningKey(pki.key)
    given = SigningKey(str(pki.key), certificate=str(pki.certificate), chain=[str(pki.chain[0])])
    assert signing.signing_key(given) == SigningKey(pki.key, pki.certificate, pki.chain)
    with pytest.raises(ConfigurationError, match=r"signing certificate .*missing\.crt"):
        signing.signing_key(SigningKey(pki.key, certificate=tmp_path / "missing.crt"))
    with pytest.raises(ConfigurationError, match="without the signing certificate"):
        SigningKey(pki.key, chain=pki.chain)

    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(pki.key))
    assert signing.signing_key() == SigningKey(pki.key)
    monkeypatch.setenv(signing.SIGNING_CERTIFICATE_ENV, str(pki.certificate))
    monkeypatch.setenv(signing.SIGNING_CHAIN_ENV, f"{pki.chain[0]}{os.pathsep}{pki.ca}{os.pathsep}")
    assert signing.signing_key() == SigningKey(pki.key, pki.certificate, (pki.chain[0], pki.ca))
    # An argument is the whole choice: the environment's certificate does not join a key given.
    assert signing.signing_key(pki.key) == SigningKey(pki.key)
    monkeypatch.setenv(signing.SIGNING_CHAIN_ENV, f"{pki.chain[0]}{os.pathsep}{tmp_path / 'x'}")
    with pytest.raises(ConfigurationError, match=r"certificate chain file .* not a readable file"):
        signing.signing_key()
    monkeypatch.delenv(signing.SIGNING_CERTIFICATE_ENV)
    monkeypatch.setenv(signing.SIGNING_CHAIN_ENV, str(pki.chain[0]))
    with pytest.raises(ConfigurationError, match=f"{signing.SIGNING_CERTIFICATE_ENV} is not"):
        signing.signing_key()
    monkeypatch.delenv(signing.SIGNING_KEY_ENV)
    monkeypatch.delenv(signing.SIGNING_CHAIN_ENV)
    monkeypatch.setenv(signing.SIGNING_CERTIFICATE_ENV, str(pki.certificate))
    with pytest.raises(ConfigurationError, match=f"{signing.SIGNING_KEY_ENV} is not"):
        signing.signing_key()


def test_ca_certificates_are_verification_keys_from_the_environment(monkeypatch, tmp_path):
    pki, (_, public) = certificate_chain(tmp_path, "a"), key_pair(tmp_path, "k")
    monkeypatch.setenv(signing.VERIFY_KEY_ENV, f"{pki.ca}{os.pathsep}{public}")
    assert signing.verify_keys() == (pki.ca, public)
    with pytest.raises(ConfigurationError, match="PEM public key or CA certificate file"):
        signing.verify_keys(tmp_path / "missing.pem")


def _entry(folder: Path, **fields) -> _outbox.Entry:
    return _outbox.Entry(
        path=folder,
        key="k" * 32,
        name="m",
        tracking_uri="http://registry.example",
        registry_uri="http://registry.example",
        **fields,
    )


def test_an_outbox_entry_signs_with_its_certificate_chain_after_a_round_trip(tmp_path):
    pki = certificate_chain(tmp_path, "a", intermediate=True)
    folder = tmp_path / "entry"
    _model(folder)
    _entry(
        folder,
        sign_key=str(pki.key),
        sign_certificate=str(pki.certificate),
        sign_chain=[str(pki.chain[0])],
    ).save()
    stored = json.loads((folder / _outbox.ENTRY_FILE).read_text())
    assert (stored["sign_certificate"], stored["sign_chain"]) == (
        str(pki.certificate),
        [str(pki.chain[0])],
    )
    entry = _outbox.Entry.load(folder)
    assert entry.sign_chain == (str(pki.chain[0]),)
    _outbox._sign(entry)
    assert signing.verify_model(entry.model_path, [pki.ca], label="m/1", tags=entry.tags)
    assert _outbox.Entry.load(folder).tags == entry.tags


def test_an_entry_written_before_certificates_still_loads_and_signs_with_its_key(tmp_path):
    folder, (private, public) = tmp_path / "entry", key_pair(tmp_path, "k")
    _model(folder)
    old = _entry(folder, sign_key=str(private)).to_json()
    del old["sign_certificate"], old["sign_chain"]
    (folder / _outbox.ENTRY_FILE).write_text(json.dumps(old))
    entry = _outbox.Entry.load(folder)
    assert (entry.sign_key, entry.sign_certificate, entry.sign_chain) == (str(private), None, ())
    _outbox._sign(entry)
    assert signing.verify_model(entry.model_path, [public], label="m/1", tags=entry.tags)
    # A damaged chain is an unreadable entry (skipped by the outbox), not a chain of letters.
    (folder / _outbox.ENTRY_FILE).write_text(json.dumps({**old, "sign_chain": "ca.pem"}))
    with pytest.raises(TypeError, match="list of file paths"):
        _outbox.Entry.load(folder)

"""Signing a model directory and verifying it, on local files (the library's own checks)."""

from __future__ import annotations

import os

import pytest

from registry_sdk import signing
from registry_sdk._digest import IGNORED
from registry_sdk.errors import ConfigurationError, SignatureError

pytest.importorskip("model_signing")
from tests.signing_keys import key_pair


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

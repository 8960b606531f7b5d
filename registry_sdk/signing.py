"""Sign model versions and verify them, in the OpenSSF model-signing format.

A signature is a sigstore bundle made by the ``model-signing`` library (``pip install
'registry-sdk[signing]'``) over every file of the MLflow model directory, with an elliptic-curve
key pair of your own (PEM files). It is stored beside the model, as the file
:data:`SIGNATURE_FILE` in the version's artifact directory, and its sha256 in the version tag
:data:`SIGNATURE_TAG`: vanilla MLflow loads the model unchanged (it ignores the extra file).

Verification hashes the downloaded files again and checks them against the signed manifest:
a file changed, added or removed, a bundle edited or swapped, a signature by another key, or
none at all raises :class:`~registry_sdk.errors.SignatureError` before anything enters the
cache. Every file counts, git files included; only the bundle itself and
``registered_model_meta`` (which MLflow's loader writes into a model directory) are outside it.

Keys come from arguments or the environment: :data:`SIGNING_KEY_ENV` names the private key that
``@register`` signs with, :data:`VERIFY_KEY_ENV` one or more public keys (separated by
``os.pathsep``) that ``load_model``, ``pull``, ``watch`` and ``import_`` require a signature by.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from registry_sdk.errors import ConfigurationError, SignatureError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from registry_sdk.client import RefLike, RegistryClient
    from registry_sdk.entities import ModelVersion

__all__ = [
    "SIGNATURE_FILE",
    "SIGNATURE_TAG",
    "SIGNING_KEY_ENV",
    "VERIFY_KEY_ENV",
    "KeyPath",
    "key_file_id",
    "sign_model",
    "sign_version",
    "signing_key",
    "verify_keys",
    "verify_model",
]

#: The bundle's file name in the model directory (the version's artifacts).
SIGNATURE_FILE = "registry_sdk.sig"
#: The version tag holding the bundle's sha256.
SIGNATURE_TAG = "registry_sdk.signature.sha256"
#: The private key ``@register`` signs with, when ``sign=`` is not given.
SIGNING_KEY_ENV = "REGISTRY_SDK_SIGNING_KEY"
#: The public keys (``os.pathsep``-separated) a load requires a signature by, when ``verify=``
#: is not given.
VERIFY_KEY_ENV = "REGISTRY_SDK_VERIFY_KEY"
#: Paths outside the signature: the bundle, and what MLflow's loader writes into a model dir.
UNSIGNED = (SIGNATURE_FILE, "registered_model_meta")

#: A key: the path of a PEM file.
KeyPath = Union[str, "os.PathLike[str]"]


def _model_signing() -> Any:
    try:
        import model_signing
    except ImportError as exc:
        msg = (
            "signing and verifying models needs the model-signing library: "
            f"pip install 'registry-sdk[signing]' ({exc})"
        )
        raise ConfigurationError(msg) from None
    return model_signing


def signing_key(key: KeyPath | None = None) -> Path | None:
    """The private key to sign with: ``key``, else :data:`SIGNING_KEY_ENV`, else None."""
    raw = os.fspath(key) if key is not None else os.environ.get(SIGNING_KEY_ENV, "").strip()
    return _existing(raw, "signing key") if raw else None


def verify_keys(keys: KeyPath | Sequence[KeyPath] | None = None) -> tuple[Path, ...]:
    """The public keys a load requires a signature by: ``keys``, else :data:`VERIFY_KEY_ENV`.

    Empty when neither names one: nothing is verified.
    """
    if keys is None:
        raw = [p.strip() for p in os.environ.get(VERIFY_KEY_ENV, "").split(os.pathsep)]
    elif isinstance(keys, (str, os.PathLike)):
        raw = [os.fspath(keys)]
    else:
        raw = [os.fspath(k) for k in keys]
    return tuple(_existing(p, "verification key") for p in raw if p)


def _existing(raw: str, what: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        msg = f"the {what} {raw!r} is not a readable file; give the path of a PEM key file"
        raise ConfigurationError(msg)
    return path


def key_file_id(key: Path) -> str:
    """A key file's id, as a cache entry records who signed it: the sha256 of the file."""
    try:
        return hashlib.sha256(key.read_bytes()).hexdigest()
    except OSError as exc:
        msg = f"cannot read the key {key}: {exc}"
        raise ConfigurationError(msg) from None


def _hashing(model_signing: Any) -> Any:
    """Every file but :data:`UNSIGNED`, git files included, no symlinks, sha256 per file."""
    config = model_signing.hashing.Config().use_file_serialization(
        hashing_algorithm="sha256", allow_symlinks=False
    )
    return config.set_ignored_paths(paths=list(UNSIGNED), ignore_git_paths=False)


def sign_model(model_dir: Path, key: KeyPath) -> str:
    """Sign every file of ``model_dir`` with the private key ``key``; the bundle's sha256.

    The bundle is written to ``model_dir / SIGNATURE_FILE`` (replacing one that is there).

    Raises:
        ConfigurationError: model-signing is not installed, or ``key`` is no usable private key.
    """
    model_signing = _model_signing()
    target = model_dir / SIGNATURE_FILE
    target.unlink(missing_ok=True)
    try:
        config = model_signing.signing.Config()
        config = config.use_elliptic_key_signer(private_key=Path(os.fspath(key)))
        config.set_hashing_config(_hashing(model_signing)).sign(model_dir, target)
    except (ValueError, TypeError, OSError) as exc:
        target.unlink(missing_ok=True)
        msg = f"cannot sign {model_dir} with the key {os.fspath(key)!r}: {exc}"
        raise ConfigurationError(msg) from None
    return hashlib.sha256(target.read_bytes()).hexdigest()


def verify_model(
    model_dir: Path, keys: Sequence[Path], *, label: str, tags: Mapping[str, str]
) -> Path:
    """Check ``model_dir`` against its signature by one of ``keys``; the key that signed it.

    ``tags`` are the version's: the bundle must be the one whose sha256 :data:`SIGNATURE_TAG`
    records.

    Raises:
        SignatureError: no signature, a bundle other than the recorded one, a signature by none
            of ``keys``, or files that do not match it (each named).
        ConfigurationError: model-signing is not installed, or a key cannot be read.
    """
    model_signing = _model_signing()
    bundle = model_dir / SIGNATURE_FILE
    recorded = tags.get(SIGNATURE_TAG, "").strip().lower()
    if not recorded or not bundle.is_file() or bundle.is_symlink():
        msg = f"{label} is not signed (no {SIGNATURE_FILE} and {SIGNATURE_TAG} tag); refused"
        raise SignatureError(msg)
    actual = hashlib.sha256(bundle.read_bytes()).hexdigest()
    if actual != recorded:
        msg = (
            f"{label}: its signature bundle is not the one registered (sha256 {actual[:16]}..., "
            f"the {SIGNATURE_TAG} tag says {recorded[:16]}...); refused"
        )
        raise SignatureError(msg)
    failures = []
    for key in keys:
        try:
            config = model_signing.verifying.Config()
            config = config.use_elliptic_key_verifier(public_key=key)
            config.set_hashing_config(_hashing(model_signing)).verify(model_dir, bundle)
        except Exception as exc:  # noqa: BLE001 - the library raises ValueError and parse errors
            failures.append(f"{key}: {_first_line(exc)}")
            continue
        return key
    msg = f"{label}: no valid signature by the keys given; refused ({'; '.join(failures)})"
    raise SignatureError(msg)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def sign_version(client: RegistryClient, ref: RefLike, key: KeyPath) -> ModelVersion:
    """Sign a version already registered (by vanilla MLflow, or after a review) with ``key``.

    Its files are fetched through the cache (checked against the digest it records, if any),
    signed, and the bundle is uploaded beside them, then its sha256 recorded in the version's
    :data:`SIGNATURE_TAG`. A bundle already there is replaced. Returns the version as it is now.

    Raises:
        ConfigurationError: model-signing is not installed, or ``key`` is no usable private key.
    """
    import shutil
    import tempfile

    from registry_sdk import _upload
    from registry_sdk.refs import parse_ref

    mv = client.resolve(ref)
    cached = client.pull(f"{mv.name}/{mv.version}")
    uri = client.backend.get_download_uri(mv.name, mv.version)
    with tempfile.TemporaryDirectory(prefix="registry-sdk-sign-") as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(cached, copy, ignore=shutil.ignore_patterns(*UNSIGNED))
        digest = sign_model(copy, key)
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        shutil.copy2(copy / SIGNATURE_FILE, bundle / SIGNATURE_FILE)
        if _upload.is_proxied(uri):
            _upload.upload_directory(uri, client.settings.tracking_uri, str(bundle), None)
        else:
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )

            get_artifact_repository(uri).log_artifacts(str(bundle))  # type: ignore[no-untyped-call]
    client.backend.set_version_tag(mv.name, mv.version, SIGNATURE_TAG, digest)
    return client.resolve(parse_ref(f"{mv.name}/{mv.version}"))

"""Sign model versions and verify them, in the OpenSSF model-signing format.

A signature is a sigstore bundle made by the ``model-signing`` library (``pip install
'registry-sdk[signing]'``) over every file of the MLflow model directory, with an elliptic-curve
key pair of your own (PEM files), or with a private key and its certificate issued by a CA of
your own (:class:`SigningKey`: the bundle then carries the certificate chain, and verifiers
need only the CA's certificate). It is stored beside the model, as the file
:data:`SIGNATURE_FILE` in the version's artifact directory, and its sha256 in the version tag
:data:`SIGNATURE_TAG`: vanilla MLflow loads the model unchanged (it ignores the extra file).

Verification hashes the downloaded files again and checks them against the signed manifest:
a file changed, added or removed, a bundle edited or swapped, a signature by another key, or
none at all raises :class:`~registry_sdk.errors.SignatureError` before anything enters the
cache. Every file counts, git files included; only the bundle itself and
``registered_model_meta`` (which MLflow's loader writes into a model directory) are outside it.

Keys come from arguments or the environment: :data:`SIGNING_KEY_ENV` names the private key that
``@register`` signs with (:data:`SIGNING_CERTIFICATE_ENV` and :data:`SIGNING_CHAIN_ENV` its
certificate and the CAs to embed, for certificate signing), :data:`VERIFY_KEY_ENV` one or more
public keys or CA certificate files (separated by ``os.pathsep``) that ``load_model``, ``pull``,
``watch`` and ``import_`` require a signature by.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import attrs

from registry_sdk.errors import ConfigurationError, SignatureError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from registry_sdk.client import RefLike, RegistryClient
    from registry_sdk.entities import ModelVersion

__all__ = [
    "SIGNATURE_FILE",
    "SIGNATURE_TAG",
    "SIGNING_CERTIFICATE_ENV",
    "SIGNING_CHAIN_ENV",
    "SIGNING_KEY_ENV",
    "VERIFY_KEY_ENV",
    "KeyPath",
    "SigningKey",
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
#: The certificate (PEM) of the :data:`SIGNING_KEY_ENV` key: sign with a certificate chain.
SIGNING_CERTIFICATE_ENV = "REGISTRY_SDK_SIGNING_CERTIFICATE"
#: The CA certificates (PEM files, ``os.pathsep``-separated) embedded after that certificate.
SIGNING_CHAIN_ENV = "REGISTRY_SDK_SIGNING_CHAIN"
#: The public keys or CA certificate files (``os.pathsep``-separated) a load requires a
#: signature by, when ``verify=`` is not given.
VERIFY_KEY_ENV = "REGISTRY_SDK_VERIFY_KEY"
#: Paths outside the signature: the bundle, and what MLflow's loader writes into a model dir.
UNSIGNED = (SIGNATURE_FILE, "registered_model_meta")

#: A key: the path of a PEM file.
KeyPath = Union[str, "os.PathLike[str]"]
#: What starts a certificate in a PEM file: a verification file holding one is a CA's.
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _path(value: KeyPath) -> Path:
    return Path(os.fspath(value))


def _optional_path(value: KeyPath | None) -> Path | None:
    return None if value is None else _path(value)


def _paths(values: KeyPath | Iterable[KeyPath]) -> tuple[Path, ...]:
    if isinstance(values, (str, os.PathLike)):
        return (_path(values),)
    return tuple(_path(v) for v in values)


@attrs.frozen
class SigningKey:
    """What a model is signed with: a private key, and for certificate (PKI) signing its chain.

    With only ``private_key``, the signature is verified with the matching public key. With
    ``certificate``, the bundle carries the certificate (and ``chain``), and verifiers need only
    the certificate of the root CA that issued it.

    Attributes:
        private_key: the PEM private key, elliptic curve (P-256, P-384 or P-521).
        certificate: the PEM certificate of ``private_key``'s public key (the leaf), issued for
            signing: key usage ``digitalSignature`` or extended key usage ``codeSigning``.
            None: sign with the bare key.
        chain: PEM files of the CA certificates between ``certificate`` and the root that
            verifiers trust (intermediates; the root itself may be included, it is not
            needed), embedded in the bundle. Only with ``certificate``.

    Raises:
        ConfigurationError: a ``chain`` without a ``certificate``.
    """

    private_key: Path = attrs.field(converter=_path)
    certificate: Path | None = attrs.field(default=None, converter=_optional_path)
    chain: tuple[Path, ...] = attrs.field(default=(), converter=_paths)

    def __attrs_post_init__(self) -> None:
        if self.chain and self.certificate is None:
            msg = (
                "a certificate chain was given without the signing certificate; give the "
                "certificate of the private key too, or no chain to sign with the bare key"
            )
            raise ConfigurationError(msg)


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


def signing_key(key: KeyPath | SigningKey | None = None) -> SigningKey | None:
    """What to sign with: ``key``, else the environment, else None; every file checked to exist.

    ``key`` is a private key's path (signing with the bare key) or a :class:`SigningKey`. From
    the environment: the private key :data:`SIGNING_KEY_ENV`, with its certificate
    :data:`SIGNING_CERTIFICATE_ENV` and the CA files :data:`SIGNING_CHAIN_ENV` when set.

    Raises:
        ConfigurationError: a file that does not exist, or a certificate or chain without the
            private key (or a chain without the certificate) in the environment.
    """
    if isinstance(key, SigningKey):
        return SigningKey(
            _existing(os.fspath(key.private_key), "signing key", _PRIVATE),
            certificate=(
                None
                if key.certificate is None
                else _existing(os.fspath(key.certificate), "signing certificate", _CERTIFICATE)
            ),
            chain=tuple(
                _existing(os.fspath(c), "certificate chain file", _CERTIFICATE) for c in key.chain
            ),
        )
    if key is not None:
        return SigningKey(_existing(os.fspath(key), "signing key", _PRIVATE))
    raw = os.environ.get(SIGNING_KEY_ENV, "").strip()
    certificate = os.environ.get(SIGNING_CERTIFICATE_ENV, "").strip()
    chain = [p.strip() for p in os.environ.get(SIGNING_CHAIN_ENV, "").split(os.pathsep)]
    chain = [p for p in chain if p]
    if not raw:
        if certificate or chain:
            msg = (
                f"{SIGNING_CERTIFICATE_ENV if certificate else SIGNING_CHAIN_ENV} is set but "
                f"{SIGNING_KEY_ENV} is not: set it to the certificate's private key, or unset both"
            )
            raise ConfigurationError(msg)
        return None
    if chain and not certificate:
        msg = (
            f"{SIGNING_CHAIN_ENV} is set but {SIGNING_CERTIFICATE_ENV} is not: set it to the "
            f"certificate of {SIGNING_KEY_ENV}'s key, or unset {SIGNING_CHAIN_ENV} to sign with "
            "the bare key"
        )
        raise ConfigurationError(msg)
    return signing_key(SigningKey(raw, certificate=certificate or None, chain=chain))


def verify_keys(keys: KeyPath | Sequence[KeyPath] | None = None) -> tuple[Path, ...]:
    """The public keys or CA certificates a load requires a signature by.

    ``keys``, else :data:`VERIFY_KEY_ENV`. Each is a PEM file holding a public key (for
    signatures by the matching private key) or one or more CA certificates (for signatures by
    a certificate those CAs issued; the file must hold the root). Empty when neither names one:
    nothing is verified.
    """
    if keys is None:
        raw = [p.strip() for p in os.environ.get(VERIFY_KEY_ENV, "").split(os.pathsep)]
    elif isinstance(keys, (str, os.PathLike)):
        raw = [os.fspath(keys)]
    else:
        raw = [os.fspath(k) for k in keys]
    return tuple(_existing(p, "verification key", _VERIFIER) for p in raw if p)


_PRIVATE = "give the path of a PEM private key file"
_CERTIFICATE = "give the path of a PEM certificate file"
_VERIFIER = "give the path of a PEM public key or CA certificate file"


def _existing(raw: str, what: str, hint: str) -> Path:
    """``raw`` as an absolute path (a push from another directory must find it too)."""
    path = Path(raw).expanduser()
    if not path.is_file():
        msg = f"the {what} {raw!r} is not a readable file; {hint}"
        raise ConfigurationError(msg)
    return path.absolute()


def key_file_id(key: Path) -> str:
    """A key file's id, as a cache entry records who signed it: the sha256 of the file.

    Hashed once per file as it is now (its size and modification time): a warm load with
    ``verify=`` asks for it every time.
    """
    try:
        info = key.stat()
    except OSError as exc:
        msg = f"cannot read the key {key}: {exc}"
        raise ConfigurationError(msg) from None
    return _hashed_key(str(key), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _hashed_key(path: str, size: int, mtime_ns: int) -> str:  # noqa: ARG001 - the cache key
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        msg = f"cannot read the key {path}: {exc}"
        raise ConfigurationError(msg) from None


def _hashing(model_signing: Any) -> Any:
    """Every file but :data:`UNSIGNED`, git files included, no symlinks, sha256 per file."""
    config = model_signing.hashing.Config().use_file_serialization(
        hashing_algorithm="sha256", allow_symlinks=False
    )
    return config.set_ignored_paths(paths=list(UNSIGNED), ignore_git_paths=False)


def sign_model(model_dir: Path, key: KeyPath | SigningKey) -> str:
    """Sign every file of ``model_dir`` with ``key``; the bundle's sha256.

    ``key``: a private key's path, or a :class:`SigningKey` (with a certificate: the bundle
    carries it and its chain). The bundle is written to ``model_dir / SIGNATURE_FILE``
    (replacing one that is there).

    Raises:
        ConfigurationError: model-signing is not installed, a file does not exist, ``key`` is
            no usable private key, or its certificate is not for it, not for signing, or not
            valid now.
    """
    model_signing = _model_signing()
    signer = signing_key(key)
    assert signer is not None  # noqa: S101 - a key was given
    target = model_dir / SIGNATURE_FILE
    target.unlink(missing_ok=True)
    try:
        config = model_signing.signing.Config()
        if signer.certificate is None:
            config = config.use_elliptic_key_signer(private_key=signer.private_key)
        else:
            _check_signing_certificate(signer.certificate)
            config = config.use_certificate_signer(
                private_key=signer.private_key,
                signing_certificate=signer.certificate,
                # model-signing cannot read an empty chain: the certificate itself stands in
                # for one (verifiers find no issuer in it and look among the CAs they trust).
                certificate_chain=list(signer.chain or (signer.certificate,)),
            )
        config.set_hashing_config(_hashing(model_signing)).sign(model_dir, target)
    except (ValueError, TypeError, OSError) as exc:
        target.unlink(missing_ok=True)
        what = f"the key {os.fspath(signer.private_key)!r}"
        if signer.certificate is not None:
            what += f" and the certificate {os.fspath(signer.certificate)!r}"
        msg = f"cannot sign {model_dir} with {what}: {exc}"
        raise ConfigurationError(msg) from None
    return hashlib.sha256(target.read_bytes()).hexdigest()


def _check_signing_certificate(path: Path) -> None:
    """Refuse a certificate no verifier would accept, or one not valid now, before signing.

    Verifiers require key usage ``digitalSignature`` or extended key usage ``codeSigning``.
    They check the chain as of the certificate's start of validity, so signing with an expired
    one would succeed; it is refused here instead.
    """
    import datetime as dt

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        msg = (
            f"it is valid from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} to "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, not now (renew it, or "
            "check this machine's clock)"
        )
        raise ValueError(msg)
    extensions = certificate.extensions
    try:
        if extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return
    except x509.ExtensionNotFound:
        pass
    try:
        usages = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING in usages:
            return
    except x509.ExtensionNotFound:
        pass
    msg = (
        "the certificate is not issued for signing: it needs key usage digitalSignature or "
        "extended key usage codeSigning"
    )
    raise ValueError(msg)


def _holds_certificates(path: Path) -> bool:
    """Whether a verification file holds CA certificates (else it is a public key)."""
    try:
        return _PEM_CERTIFICATE in path.read_bytes()
    except OSError as exc:
        msg = f"cannot read the verification key {path}: {exc}"
        raise ConfigurationError(msg) from None


def _signed_with_certificate(bundle: bytes) -> bool | None:
    """Whether the bundle carries a certificate chain (False: a bare key; None: unreadable)."""
    try:
        material = json.loads(bundle)["verificationMaterial"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(material, dict):
        return None
    return "x509CertificateChain" in material


def verify_model(
    model_dir: Path, keys: Sequence[Path], *, label: str, tags: Mapping[str, str]
) -> Path:
    """Check ``model_dir`` against its signature by one of ``keys``; the key that signed it.

    Each of ``keys`` is a PEM public key (the signature must be by its private key) or a PEM
    file of CA certificates (the signature must be by a certificate for signing that chains to
    a root among them). ``tags`` are the version's: the bundle must be the one whose sha256
    :data:`SIGNATURE_TAG` records.

    Raises:
        SignatureError: no signature, a bundle other than the recorded one, a signature by none
            of ``keys`` (a certificate signature checked against a public key, or a key
            signature against a CA, included), or files that do not match it (each named).
        ConfigurationError: model-signing is not installed, or a key cannot be read.
    """
    model_signing = _model_signing()
    bundle = model_dir / SIGNATURE_FILE
    recorded = tags.get(SIGNATURE_TAG, "").strip().lower()
    if not recorded or not bundle.is_file() or bundle.is_symlink():
        msg = f"{label} is not signed (no {SIGNATURE_FILE} and {SIGNATURE_TAG} tag); refused"
        raise SignatureError(msg)
    content = bundle.read_bytes()
    actual = hashlib.sha256(content).hexdigest()
    if actual != recorded:
        msg = (
            f"{label}: its signature bundle is not the one registered (sha256 {actual[:16]}..., "
            f"the {SIGNATURE_TAG} tag says {recorded[:16]}...); refused"
        )
        raise SignatureError(msg)
    by_certificate = _signed_with_certificate(content)
    failures = []
    for key in keys:
        is_ca = _holds_certificates(key)
        if by_certificate is not None and by_certificate != is_ca:
            failures.append(
                f"{key}: signed with a certificate, which a public key does not verify "
                "(give the CA's certificate)"
                if by_certificate
                else f"{key}: signed with a bare key, which a CA certificate does not verify "
                "(give the public key)"
            )
            continue
        try:
            config = model_signing.verifying.Config()
            if is_ca:
                config = config.use_certificate_verifier(
                    certificate_chain=[key], log_fingerprints=False
                )
            else:
                config = config.use_elliptic_key_verifier(public_key=key)
            config.set_hashing_config(_hashing(model_signing)).verify(model_dir, bundle)
        except Exception as exc:  # noqa: BLE001 - the library raises ValueError, parse and X509 errors
            reason = _first_line(exc)
            if type(exc).__name__ == "X509StoreContextError":
                reason = f"the signing certificate does not chain to a CA in it ({reason})"
            failures.append(f"{key}: {reason}")
            continue
        return key
    msg = f"{label}: no valid signature by the keys given; refused ({'; '.join(failures)})"
    raise SignatureError(msg)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def sign_version(client: RegistryClient, ref: RefLike, key: KeyPath | SigningKey) -> ModelVersion:
    """Sign a version already registered (by vanilla MLflow, or after a review) with ``key``.

    ``key``: a private key's path, or a :class:`SigningKey` (with a certificate). Its files are
    fetched through the cache (checked against the digest it records, if any), signed, and the
    bundle is uploaded beside them, then its sha256 recorded in the version's
    :data:`SIGNATURE_TAG`. A bundle already there is replaced. Returns the version as it is now.

    Raises:
        ConfigurationError: model-signing is not installed, a file does not exist, or ``key``
            is no usable private key (or certificate, see :func:`sign_model`).
    """
    import shutil
    import tempfile

    from registry_sdk import _upload
    from registry_sdk.refs import parse_ref

    signer = signing_key(key)  # a missing file is reported before anything is fetched
    assert signer is not None  # noqa: S101 - a key was given
    mv = client.resolve(ref)
    cached = client.pull(f"{mv.name}/{mv.version}")
    uri = client.backend.get_download_uri(mv.name, mv.version)
    with tempfile.TemporaryDirectory(prefix="registry-sdk-sign-") as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(cached, copy, ignore=shutil.ignore_patterns(*UNSIGNED))
        digest = sign_model(copy, signer)
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

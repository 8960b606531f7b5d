"""Keys for the signing tests, made fresh (never a key kept in the tree).

Elliptic-curve key pairs, and certificate chains: a root CA, perhaps an intermediate, and a
leaf certificate for signing.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pathlib import Path


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """``folder/<name>.pem`` (private, PKCS#8) and ``folder/<name>.pub``; their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


class Pki(NamedTuple):
    """A root CA and a leaf certificate it issued (through an intermediate, if asked)."""

    #: The root CA's certificate: what verifiers trust.
    ca: Path
    #: The leaf's private key (PKCS#8), its certificate and its public key.
    key: Path
    certificate: Path
    public: Path
    #: The intermediate CA's certificate, when there is one (embedded when signing).
    chain: tuple[Path, ...]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    usage: bool = True,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(_usage(signing=not ca), critical=True)
        if not ca:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def certificate_chain(
    folder: Path,
    name: str,
    *,
    intermediate: bool = False,
    signing_usage: bool = True,
    leaf_valid: tuple[dt.datetime, dt.datetime] | None = None,
) -> Pki:
    """A fresh root CA ``folder/<name>-ca.pem`` and a leaf certificate for signing it issued.

    ``intermediate``: the root issues an intermediate CA that issues the leaf.
    ``signing_usage=False``: the leaf has neither key usage nor extended key usage.
    ``leaf_valid``: the leaf's validity (default: from a minute ago, for a day).
    """
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate(f"{name} root CA", root_key, None, ca=True, start=start, end=end)
    issuer = (root, root_key)
    chain: list[x509.Certificate] = []
    if intermediate:
        middle_key = ec.generate_private_key(ec.SECP256R1())
        middle = _certificate(
            f"{name} intermediate CA", middle_key, issuer, ca=True, start=start, end=end
        )
        issuer = (middle, middle_key)
        chain.append(middle)
    leaf_start, leaf_end = leaf_valid or (now - dt.timedelta(minutes=1), now + dt.timedelta(days=1))
    private, public = key_pair(folder, f"{name}-leaf")
    leaf_key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    leaf = _certificate(
        f"{name} signer",
        leaf_key,
        issuer,
        ca=False,
        usage=signing_usage,
        start=leaf_start,
        end=leaf_end,
    )
    ca_file, leaf_file = folder / f"{name}-ca.pem", folder / f"{name}-leaf.crt"
    ca_file.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    chain_files = []
    for number, certificate in enumerate(chain):
        path = folder / f"{name}-intermediate-{number}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        chain_files.append(path)
    return Pki(ca_file, private, leaf_file, public, tuple(chain_files))

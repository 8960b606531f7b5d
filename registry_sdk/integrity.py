"""Check a version's artifacts in the store against the digest it records, and seal old versions.

``@register`` records the digest of the artifact tree it uploads (``registry_sdk.artifacts.sha256``,
see :mod:`registry_sdk._digest` for the exact definition). Versions registered by other clients
carry none: :func:`seal` computes it from the artifacts as they are now and records it, after
which every load verifies against it. :func:`verify` downloads a version's artifacts into a
temporary directory (never into the cache) and compares them, for audits and CI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk import _digest
from registry_sdk.errors import CacheIntegrityError, SignatureError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from registry_sdk.client import RefLike, RegistryClient
    from registry_sdk.entities import ModelVersion

__all__ = ["Verification", "seal", "verify"]


@attrs.frozen(kw_only=True)
class Verification:
    """What :func:`verify` found for one version.

    Attributes:
        ref: the version checked (``name/version``).
        ok: the version records a digest and its artifacts in the store match it.
        sealed: the version records a digest at all.
        expected: the recorded digest, if any.
        actual: the digest of the artifacts in the store now.
        files: how many files the artifacts hold.
        size: their total size in bytes.
        problems: what differs (``"changed: model.pkl"``, ``"not sealed"``, ...).
        signed_by: the public key or CA certificate file whose signature the files matched,
            when keys were given.
    """

    ref: str
    ok: bool
    sealed: bool
    expected: str | None
    actual: str
    files: int
    size: int
    problems: tuple[str, ...] = ()
    signed_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = attrs.asdict(self)
        data["problems"] = list(self.problems)
        return data


def _records(
    client: RegistryClient, mv: ModelVersion, keys: Sequence[Path] = ()
) -> tuple[list[_digest.FileDigest], str | None, str | None]:
    """Download ``mv``'s artifacts into a temporary directory and hash them.

    With ``keys``, also check them against the version's signature: (records, the key that
    signed them or None, why not).
    """
    from registry_sdk._download import download

    uri = client.backend.get_download_uri(mv.name, mv.version)
    with tempfile.TemporaryDirectory(prefix="registry-sdk-verify-") as tmp:
        dest = Path(tmp) / "artifacts"
        download(uri, dest, backend=client.backend, settings=client.settings, label=mv.ref)
        records = _digest.tree_records(dest)
        if not keys:
            return records, None, None
        from registry_sdk import signing

        try:
            signer = signing.verify_model(dest, keys, label=mv.ref, tags=mv.tags)
        except SignatureError as exc:
            return records, None, str(exc)
        return records, str(signer), None


def verify(client: RegistryClient, ref: RefLike, *, keys: Sequence[Path] = ()) -> Verification:
    """Compare a version's artifacts in the store with the digest it records (nothing cached).

    With ``keys`` (public key or CA certificate files), the artifacts must also match the
    version's signature by one of them; a failure is one of the ``problems``.
    """
    mv = client.resolve(ref)
    records, signer, unsigned = _records(client, mv, keys)
    actual = _digest.tree_digest(records)
    expected = mv.tags.get(_digest.DIGEST_TAG) or None
    problems: list[str] = []
    if unsigned is not None:
        problems.append(unsigned)
    if expected is None:
        problems.append(f"not sealed: the version records no {_digest.DIGEST_TAG}")
    elif expected.strip().lower() != actual:
        problems.extend(_digest.differences(records, mv.tags) or ["the tree digest differs"])
    return Verification(
        ref=mv.ref,
        ok=not problems,
        sealed=expected is not None,
        expected=expected,
        actual=actual,
        files=len(records),
        size=sum(r.size for r in records),
        problems=tuple(problems),
        signed_by=signer,
    )


def seal(client: RegistryClient, ref: RefLike, *, force: bool = False) -> Verification:
    """Record the digest of a version's artifacts as they are in the store now.

    Sealing says "these files are the model": check them first (load and evaluate the version)
    if the store may have been written by others since registration. A version that already
    records a digest is only verified: a mismatch there means the store changed, and is
    refused unless ``force`` (e.g. after restoring the artifacts from a backup).

    Raises:
        CacheIntegrityError: the version is sealed and its artifacts no longer match (without
            ``force``); names what changed.
    """
    mv = client.resolve(ref)
    records, _, _ = _records(client, mv)
    tags = _digest.digest_tags(records)
    current = mv.tags.get(_digest.DIGEST_TAG)
    if current and current.strip().lower() == tags[_digest.DIGEST_TAG]:
        return verify_result(mv, records, current)
    if current and not force:
        found = _digest.differences(records, mv.tags) or ["the tree digest differs"]
        msg = (
            f"{mv.ref} is sealed and its artifacts in the store no longer match "
            f"({'; '.join(found)}); refusing to re-seal. Pass force=True (--force) only if "
            "the artifacts were restored on purpose"
        )
        raise CacheIntegrityError(msg)
    for key, value in tags.items():
        client.backend.set_version_tag(mv.name, mv.version, key, value)
    if _digest.FILES_TAG not in tags and _digest.FILES_TAG in mv.tags:
        client.backend.delete_version_tag(mv.name, mv.version, _digest.FILES_TAG)
    return verify_result(mv, records, tags[_digest.DIGEST_TAG])


def verify_result(
    mv: ModelVersion, records: list[_digest.FileDigest], expected: str
) -> Verification:
    """A successful :class:`Verification` of ``mv`` whose files are ``records``."""
    return Verification(
        ref=mv.ref,
        ok=True,
        sealed=True,
        expected=expected,
        actual=_digest.tree_digest(records),
        files=len(records),
        size=sum(r.size for r in records),
    )

"""The content digest of a model's artifact tree, recorded as version tags at registration.

``registry_sdk.artifacts.sha256`` is the sha256 of the canonical JSON text of the sorted list
``[[relative path, size, file sha256], ...]`` (paths in POSIX form, sorted by their UTF-8
bytes; JSON without spaces, non-ASCII kept as is). Any tool can recompute it::

    import hashlib, json, pathlib
    root = pathlib.Path("model")
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*")
         if p.is_file() and p != root / "registered_model_meta")
    listing = [[rel, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
               for rel, p in sorted(files, key=lambda item: item[0].encode())]
    print(hashlib.sha256(json.dumps(listing, separators=(",", ":"),
                                    ensure_ascii=False).encode()).hexdigest())

One file is left out everywhere: ``registered_model_meta`` at the top of the tree, which
MLflow's own loader writes into a model's directory (into the artifact store itself, when the
store is a directory the loader can write to) to note which registered version it loaded.

``registry_sdk.artifacts.files`` holds, when it fits in one tag, a short per-file listing
(``{path: "size:first 16 hex digits of sha256"}``) used only to *name* the file that changed
when the tree digest does not match; the tree digest alone decides.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from typing import TYPE_CHECKING

import attrs

from registry_sdk import _tags
from registry_sdk.errors import CacheIntegrityError, UnsafeArtifactError
from registry_sdk.signing import SIGNATURE_FILE

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

DIGEST_TAG = _tags.ARTIFACTS_SHA256
FILES_TAG = _tags.ARTIFACTS_FILES
#: Tag values must fit MLflow 2.x servers' 5000-character column.
MAX_TAG_VALUE = 5000
_CHUNK = 1 << 20
_SHORT = 16
#: Never part of a digest: what MLflow's loader writes into the model directory it loads, and
#: the signature bundle (checked against its own tag; it may be added to a version later).
IGNORED = frozenset({"registered_model_meta", SIGNATURE_FILE})
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: O_NONBLOCK: a FIFO swapped in after a walk must not block the open; fstat then refuses it.
READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
#: Opening each folder relative to its parent (openat) with O_NOFOLLOW, where the OS can.
_BENEATH = bool(_NOFOLLOW and _DIRECTORY and os.open in os.supports_dir_fd)
#: What opening a path through a symlink with O_NOFOLLOW fails with (EMLINK on FreeBSD).
LINK_ERRNOS = frozenset({errno.ELOOP, errno.ENOTDIR, errno.EMLINK})


@attrs.frozen
class FileDigest:
    """One file of an artifact tree: its POSIX path relative to the root, size and sha256."""

    path: str
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content (never follows a symlink)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_beneath(root: Path, parts: Sequence[str]) -> int:
    """Open ``root/parts...`` for reading without following a symlink anywhere below ``root``.

    A folder or the file swapped for a symlink after a walk fails with an ``OSError`` whose
    errno is in :data:`LINK_ERRNOS`; the caller decides what that means. ``root`` itself may
    be a link. Check the result with ``fstat``: it may still be a FIFO or a device.
    """
    if _BENEATH:
        folder = os.open(root, os.O_RDONLY | _DIRECTORY)
        try:
            for part in parts[:-1]:
                child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=folder)
                os.close(folder)
                folder = child
            return os.open(parts[-1], READ_FLAGS, dir_fd=folder)
        finally:
            os.close(folder)
    here = root  # no openat: check each folder, then open the file itself without following
    for part in parts[:-1]:
        here = here / part
        if not stat.S_ISDIR(here.lstat().st_mode):
            raise OSError(errno.ELOOP, "a folder on its path is a link", str(here))
    return os.open(here / parts[-1], READ_FLAGS)


def walk_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, refusing symlinks and special files anywhere below it.

    Raises:
        UnsafeArtifactError: a symlink, FIFO, socket or device below ``root`` (named).
    """
    out: list[Path] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = folder / entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    rel = path.relative_to(root).as_posix()
                    msg = f"{rel} under {root} is a symlink; artifact trees may hold only files"
                    raise UnsafeArtifactError(msg)
                if stat.S_ISDIR(mode):
                    pending.append(path)
                elif stat.S_ISREG(mode):
                    out.append(path)
                else:
                    rel = path.relative_to(root).as_posix()
                    msg = f"{rel} under {root} is not a regular file (a FIFO, socket or device)"
                    raise UnsafeArtifactError(msg)
    return sorted(out)


def tree_records(root: Path) -> list[FileDigest]:
    """Hash every file under ``root`` (see :func:`walk_files` for what is refused)."""
    return [
        FileDigest(p.relative_to(root).as_posix(), p.stat().st_size, sha256_file(p))
        for p in walk_files(root)
    ]


def tree_digest(records: Iterable[FileDigest]) -> str:
    """The digest of an artifact tree from its file records (see the module docstring)."""
    records = [r for r in records if r.path not in IGNORED]
    listing = [[r.path, r.size, r.sha256] for r in sorted(records, key=lambda r: r.path.encode())]
    text = json.dumps(listing, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def digest_tags(records: Iterable[FileDigest]) -> dict[str, str]:
    """The version tags recording ``records``: the digest, and the short listing if it fits."""
    records = [r for r in records if r.path not in IGNORED]
    tags = {DIGEST_TAG: tree_digest(records)}
    short = {r.path: f"{r.size}:{r.sha256[:_SHORT]}" for r in records}
    text = json.dumps(short, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if len(text) <= MAX_TAG_VALUE:
        tags[FILES_TAG] = text
    return tags


def _short_listing(tags: Mapping[str, str]) -> dict[str, str] | None:
    try:
        listing = json.loads(tags.get(FILES_TAG, ""))
    except ValueError:
        return None
    if not isinstance(listing, dict) or not all(isinstance(v, str) for v in listing.values()):
        return None
    return listing


def differences(records: Iterable[FileDigest], tags: Mapping[str, str]) -> list[str]:
    """What differs from the registered listing: ``["changed: a", "added: b", ...]`` (best effort).

    Empty when the version carries no short listing (too many files for one tag).
    """
    listing = _short_listing(tags)
    if listing is None:
        return []
    have = {r.path: f"{r.size}:{r.sha256[:_SHORT]}" for r in records if r.path not in IGNORED}
    out = [f"changed: {p}" for p in sorted(set(have) & set(listing)) if have[p] != listing[p]]
    out += [f"added: {p}" for p in sorted(set(have) - set(listing))]
    out += [f"removed: {p}" for p in sorted(set(listing) - set(have))]
    return out


def check(records: Iterable[FileDigest], tags: Mapping[str, str], *, label: str) -> bool:
    """Compare an artifact tree with the digest recorded on its version.

    Returns:
        True when the version carries a digest and the tree matches it; False when the version
        carries none (registered without registry_sdk, and not sealed).

    Raises:
        CacheIntegrityError: the tree does not match the recorded digest; names the files
            that differ when the version carries a short listing.
    """
    expected = tags.get(DIGEST_TAG)
    if not expected:
        return False
    records = list(records)
    actual = tree_digest(records)
    if actual == expected.strip().lower():
        return True
    found = differences(records, tags)
    detail = (
        "; ".join(found)
        if found
        else f"{len(records)} files; the version records no per-file listing to name which"
    )
    msg = (
        f"the artifacts of {label} do not match the digest recorded at registration "
        f"({DIGEST_TAG}={expected[:16]}..., got {actual[:16]}...): {detail}. The artifact "
        "store holds files other than those registered; nothing was cached"
    )
    raise CacheIntegrityError(msg)

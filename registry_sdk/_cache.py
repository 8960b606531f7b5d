"""The on-disk model cache: verified, atomic, shared safely between processes.

Layout under ``cache_dir``::

    <registry-id>/<escaped-name>/versions/<n>/manifest.json   sha256 + size of every file, metadata
    <registry-id>/<escaped-name>/versions/<n>/artifacts/...   the MLflow model, as downloaded
    <registry-id>/<escaped-name>/versions/<n>/fast/...        optional fast-load form (see loading)
    <registry-id>/<escaped-name>/refs/<alias>                 the last resolution of the alias

A version is filled into a temporary directory under a file lock and renamed into place, so a
reader never sees half a model and two processes filling the same version download it once.
Every directory is private to the user (0700), every file 0600, and a cache directory that
another user owns or may write to is refused. Names are escaped (see ``_escape``), so no model
name or alias can point outside the cache.

What an entry's manifest guarantees:

* It is sealed with an HMAC-SHA256 under a random key kept in ``<cache_dir>/.key`` (0600): a
  manifest written by anything but this cache's own code (records edited to match planted
  files, an entry copied in from another cache) is refused.
* Each file's record holds its sha256, size, modification and change times and inode. Any
  write to a file moves its change time (``ctime``), even when the size and the modification
  time are put back, and a replaced file has a new inode: the cheap check compares all of
  them and hashes a file only when one differs. Bit rot without a write is caught only by the
  full check (``verify_cache``).
* It records the version's identity (creation time, run and source) and the digest of its
  artifact tree; a loader that gets fresher metadata from the registry compares both, so a
  model deleted and re-created under the same name is never served from the old entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs

from registry_sdk._config import absolute_store_uri as canonical_registry_uri
from registry_sdk._digest import FileDigest, sha256_file, tree_digest, walk_files
from registry_sdk.entities import ModelVersion
from registry_sdk.errors import CacheIntegrityError, RegistryError, RegistryUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "ARTIFACTS",
    "FAST",
    "KEY_FILE",
    "MANIFEST",
    "CachedVersion",
    "FileRecord",
    "ModelCache",
    "canonical_registry_uri",
    "check_private_dir",
    "registry_id",
    "sha256_file",
    "version_identity",
]

MANIFEST = "manifest.json"
ARTIFACTS = "artifacts"
FAST = "fast"
_FORMAT = 2
KEY_FILE = ".key"
_KEY_BYTES = 32
_MAX_COMPONENT = 120
logger = logging.getLogger("registry_sdk.cache")

#: How long a process waits for another one filling the same version.
LOCK_TIMEOUT_S = 600.0
#: A version's entry, or a temp dir a fill of it left (``.tmp-<n>-<random>``).
_VERSION_ENTRY = re.compile(r"(?:\.tmp-)?(\d{1,18})(?:-[0-9a-f]{8})?")
#: In a fill's temp dir while its download may be resumed: what it downloads (sealed).
_RESUME = ".resume"
#: An escape sequence quote() made (kept as is), or an ASCII capital (escaped in turn).
_CAPITAL = re.compile(r"%[0-9A-F]{2}|[A-Z]")


def _escape(component: str) -> str:
    """A single, safe path component for any string (names, aliases, registry ids).

    Percent-escaping, with ``+`` for ``%``: MLflow's loaders take a local path for a URI and
    decode any ``%XX`` in it. Injective: ``quote`` is, and never outputs ``+``; a leading ``.``
    becomes ``+2E`` (as if quote escaped dots); the empty and the shortened forms contain
    ``+-``, which no other form does (there, ``+`` is always followed by two hex digits).
    Capitals are escaped too (``C`` -> ``+43``) and so is a trailing ``.``: case-insensitive
    file systems (macOS, Windows) would otherwise give ``Churn`` and ``churn`` one folder,
    and Windows drops a trailing dot (``x.`` would be ``x``).
    """
    escaped = quote(component, safe="", errors="surrogatepass")
    escaped = _CAPITAL.sub(lambda m: m[0] if m[0][0] == "%" else f"%{ord(m[0]):02X}", escaped)
    escaped = escaped.replace("%", "+")
    if escaped.startswith("."):
        escaped = "+2E" + escaped[1:]
    if escaped.endswith("."):
        escaped = escaped[:-1] + "+2E"
    if not escaped:
        escaped = "+-"
    if len(escaped) > _MAX_COMPONENT:
        digest = hashlib.sha256(component.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        escaped = f"{escaped[:80]}+-{digest}"
    return escaped


def registry_id(registry_uri: str) -> str:
    """A readable, collision-free directory name for a registry URI (credentials never in it)."""
    from registry_sdk.errors import redact

    clean = redact(canonical_registry_uri(registry_uri))
    readable = "".join(c if c.isalnum() or c in "-." else "_" for c in clean)[:48].strip("_")
    digest = hashlib.sha256(clean.encode()).hexdigest()[:12]
    return _escape(f"{readable}-{digest}")


def _load_key(root: Path) -> bytes:
    """The cache's manifest key, created on first use (0600, never following a symlink)."""
    path = root / KEY_FILE
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | nofollow)
        except FileNotFoundError:
            _private_dir(root)
            tmp = root / f".key.{uuid.uuid4().hex}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(os.urandom(_KEY_BYTES))
            try:
                os.link(tmp, path)  # atomic and exclusive: the first writer's key wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
            continue
        except OSError as exc:  # a symlink (ELOOP) or unreadable
            msg = f"the cache key {path} cannot be read safely ({exc}); remove it to start over"
            raise CacheIntegrityError(msg) from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            key = fh.read(_KEY_BYTES + 1)
        private = not hasattr(os, "getuid") or (st.st_uid == os.getuid() and not st.st_mode & 0o077)
        if len(key) != _KEY_BYTES or not private:
            msg = (
                f"the cache key {path} is not a private {_KEY_BYTES}-byte file of yours; "
                "remove it (the cache is filled again) or use another cache directory"
            )
            raise CacheIntegrityError(msg)
        return key
    msg = f"the cache key {path} keeps disappearing; is another program removing it?"
    raise CacheIntegrityError(msg)


def _seal(key: bytes, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, body.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def version_identity(mv: ModelVersion) -> tuple[str, str | None, str]:
    """What tells two versions with the same name and number apart (a re-created model)."""
    return (mv.created_at.isoformat(), mv.run_id, mv.source)


def check_private_dir(path: Path, *, what: str = "cache directory") -> None:
    """Refuse a directory that other users could write to, or that is not ours (POSIX).

    A directory owned by someone else, or writable by group or others, may hold planted files:
    a forged cache entry or outbox entry. Missing directories are fine (they are created 0700).

    Raises:
        CacheIntegrityError: ``path`` (or the symlink it is) belongs to another user, or group
            or others may write to it; says how to fix it.
    """
    if not hasattr(os, "getuid"):  # Windows: ACLs, not modes; the user profile is private
        return
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            st = path.stat()
        except OSError:
            return
    if not stat.S_ISDIR(st.st_mode):
        msg = f"the {what} {path} exists but is not a directory"
        raise CacheIntegrityError(msg)
    uid = os.getuid()
    if st.st_uid != uid:
        msg = (
            f"the {what} {path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
            "files in it could have been planted. Use a directory of your own "
            "(REGISTRY_SDK_CACHE_DIR or cache_dir=)"
        )
        raise CacheIntegrityError(msg)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        msg = (
            f"the {what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
            f"files in it could have been planted. Run `chmod go-w {path}` or use a private "
            "directory (REGISTRY_SDK_CACHE_DIR or cache_dir=)"
        )
        raise CacheIntegrityError(msg)


def _private_dir(path: Path) -> Path:
    # Not mkdir(parents=True): that gives the missing parents the default mode, not 0700.
    missing = []
    current = path
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


@attrs.frozen
class FileRecord:
    """What the manifest knows of one file.

    Its content hash and size, and the stat fields that move on any write (``ctime_ns``) or
    replacement (``inode``).
    """

    sha256: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path, sha256: str | None = None) -> FileRecord:
        """The record of ``path`` as it is now (hashing it unless ``sha256`` is given)."""
        st = path.lstat()
        return cls(
            sha256=sha256 or sha256_file(path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            inode=st.st_ino,
        )

    def same_stat(self, st: os.stat_result) -> bool:
        """Whether ``st`` shows the file untouched since it was recorded."""
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
        )


@attrs.frozen
class CachedVersion:
    """A complete, verified cache entry for one model version."""

    path: Path
    version: ModelVersion
    files: dict[str, FileRecord]
    fast: dict[str, Any] | None
    created_at: float
    #: The digest of the artifact tree, and whether it matched the one the version records.
    digest: str = ""
    digest_verified: bool = False
    #: The ids of the public keys whose signature of the artifacts was verified
    #: (:func:`registry_sdk.signing.key_file_id`), when any was asked for.
    signed_by: tuple[str, ...] = ()

    @property
    def artifacts(self) -> Path:
        """The MLflow model directory."""
        return self.path / ARTIFACTS

    def artifact_records(self) -> list[FileDigest]:
        """The manifest's records of the artifact files (paths relative to ``artifacts/``)."""
        prefix = ARTIFACTS + "/"
        return [
            FileDigest(rel[len(prefix) :], r.size, r.sha256)
            for rel, r in self.files.items()
            if rel.startswith(prefix)
        ]

    def check(self, *, full: bool = False) -> list[str]:
        """Files that do not match the manifest: cheap (stat fields, hash on doubt) or full.

        Also lists files on disk that the manifest does not know (planted next to the model).
        """
        return self.check_detail(full=full)[0]

    def check_detail(self, *, full: bool = False) -> tuple[list[str], list[str]]:
        """``(bad files, files whose stat moved but whose content still matches)``."""
        bad: list[str] = []
        moved: list[str] = []
        for rel, record in self.files.items():
            file = self.path / rel
            try:
                st = file.lstat()
            except OSError:
                bad.append(rel)
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_size != record.size:
                bad.append(rel)
                continue
            if full or not record.same_stat(st):
                try:
                    same = sha256_file(file) == record.sha256
                except OSError:
                    same = False
                if not same:
                    bad.append(rel)
                elif not record.same_stat(st):
                    moved.append(rel)
        # Without a description the fast form is never read (a fill killed before recording it
        # leaves one behind; the next add_fast_form replaces it).
        for folder in (ARTIFACTS, FAST) if self.fast is not None else (ARTIFACTS,):
            root = self.path / folder
            try:
                present = {f"{folder}/{p.relative_to(root).as_posix()}" for p in walk_files(root)}
            except (OSError, CacheIntegrityError):
                bad.append(folder)
                continue
            bad.extend(sorted(present - set(self.files)))
        return bad, moved


class ModelCache:
    """The cache of one registry under ``root``.

    Raises:
        CacheIntegrityError: ``root`` belongs to another user or others may write to it.
    """

    def __init__(self, root: Path, registry_uri: str) -> None:
        self.root = root
        self.base = root / registry_id(registry_uri)
        check_private_dir(root)
        check_private_dir(self.base)
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        """The key that seals this cache's manifests (read or created on first use)."""
        if self._key is None:
            self._key = _load_key(self.root)
        return self._key

    def model_dir(self, name: str) -> Path:
        """The directory of one registered model."""
        return self.base / _escape(name)

    def version_dir(self, name: str, version: int) -> Path:
        """The directory of one version."""
        return self.model_dir(name) / "versions" / str(int(version))

    # ------------------------------------------------------------------------ reading

    def get(self, name: str, version: int) -> CachedVersion | None:
        """The cached version if complete; None if absent (a partial fill is never visible).

        An entry of an older cache format is absent too (it is filled again).

        Raises:
            CacheIntegrityError: the manifest is not one this cache wrote (its seal does not
                match: edited, forged or copied from another cache) or has another shape.
        """
        path = self.version_dir(name, version)
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            return None
        seal = data.pop("hmac", None)
        if not isinstance(seal, str) or not hmac.compare_digest(seal, _seal(self.key, data)):
            msg = (
                f"the cache manifest of {name}/{version} at {path} was not written by this "
                "cache (its seal does not match): it was edited or copied from elsewhere"
            )
            raise CacheIntegrityError(msg)
        try:
            entry = CachedVersion(
                path=path,
                version=ModelVersion.from_json(data["model_version"]),
                files={k: FileRecord(**v) for k, v in data["files"].items()},
                fast=data.get("fast"),
                created_at=float(data.get("created_at", 0.0)),
                digest=str(data.get("digest", "")),
                digest_verified=bool(data.get("digest_verified", False)),
                signed_by=tuple(str(k) for k in data.get("signed_by", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # any shape but ours
            msg = f"the cache manifest of {name}/{version} at {path} is unreadable: {exc}"
            raise CacheIntegrityError(msg) from None
        if (entry.version.name, entry.version.version) != (name, int(version)):
            msg = (
                f"the cache manifest at {path} describes {entry.version.ref}, not {name}/{version}"
            )
            raise CacheIntegrityError(msg)
        return entry

    def versions(self) -> Iterator[CachedVersion]:
        """Every complete cached version of this registry (forged entries are skipped)."""
        for _, found in self.scan():
            if isinstance(found, CachedVersion):
                yield found

    def scan(self) -> Iterator[tuple[str, CachedVersion | CacheIntegrityError]]:
        """``(ref, entry or why it is refused)`` for every version directory with a manifest.

        Unreadable manifests are left out, as :meth:`get` treats them as absent.
        """
        if not self.base.is_dir():
            return
        for model in sorted(self.base.iterdir()):
            versions = model / "versions"
            if not versions.is_dir():
                continue
            for vdir in sorted(versions.iterdir()):
                if not (vdir.is_dir() and vdir.name.isdigit() and (vdir / MANIFEST).is_file()):
                    continue
                try:
                    manifest = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
                    mv = ModelVersion.from_json(manifest["model_version"])
                except (OSError, ValueError, KeyError, TypeError, RegistryError):
                    continue  # unreadable: absent, as for get(); a load fills it again
                if self.version_dir(mv.name, mv.version) != vdir:
                    continue  # misplaced: get() of this directory's version refuses it
                try:
                    cached = self.get(mv.name, mv.version)
                except CacheIntegrityError as exc:
                    yield mv.ref, exc
                    continue
                if cached is not None:
                    yield mv.ref, cached

    # ------------------------------------------------------------------------ filling

    def lock(self, name: str, version: int) -> Any:
        """A lock for filling one version, between processes and between threads."""
        from filelock import FileLock

        vdir = self.version_dir(name, version)
        _private_dir(vdir.parent)
        # A new lock object per call, each with its own descriptor: two threads of one process
        # exclude each other as two processes do. (One object shared with thread_local=False
        # would let a second thread in as a re-entry of the first one's hold.)
        return FileLock(str(vdir) + ".lock", timeout=LOCK_TIMEOUT_S, mode=0o600)

    def _usable(self, name: str, version: int) -> CachedVersion | None:
        try:
            existing = self.get(name, version)
        except CacheIntegrityError:
            return None
        return existing if existing is not None and not existing.check() else None

    def fill(
        self,
        mv: ModelVersion,
        download: Callable[[Path], Mapping[str, str] | None],
        *,
        verify: Callable[[list[FileDigest]], bool] | None = None,
        inspect: Callable[[Path], Sequence[str]] | None = None,
        replace: bool = False,
        resume_key: str | None = None,
    ) -> CachedVersion:
        """Download ``mv`` into the cache once: under a lock, into a temp dir, then rename.

        ``download(dest)`` must put the model's artifacts into ``dest``; it may return the
        sha256 of files it hashed as it wrote them (relative path below ``dest``), which are then
        not read again. ``verify(records)``
        gets the hashed artifact files before anything is renamed into place; it raises to
        refuse them (nothing is cached) and returns whether they matched a recorded digest.
        ``inspect(artifacts_dir)`` then sees the files in place, also before anything is renamed:
        it raises to refuse them (a signature check) and returns the ids of the keys whose
        signature it verified (the entry's ``signed_by``). Another process that filled the same
        version while we waited for the lock wins; we use its entry, unless ``replace`` (the
        entry is known stale: a re-created model).

        ``resume_key`` (the digest recorded on the version, which ``verify`` checks) makes the
        fill resumable: the temp dir of a fill of the same version and key that was killed, or
        that failed for want of the server (:class:`RegistryUnavailableError`), is taken up
        again, and ``download`` goes on from what it holds. Should the result not verify, the
        version is downloaded once more from scratch.
        """
        with self.lock(mv.name, mv.version):
            existing = self._usable(mv.name, mv.version)
            same = existing is not None and (
                version_identity(existing.version) == version_identity(mv)
            )
            if existing is not None and same and not replace:
                return existing
            final = self.version_dir(mv.name, mv.version)
            marker = None if resume_key is None else self._resume_marker(mv, resume_key)
            # A fill killed mid-download leaves its temp dir behind (an eviction, its trash).
            # We hold the version's lock, so no live process is using them: the one marked
            # for this very download is taken up again, the others removed.
            tmp, adopted = self._leftovers(final, marker)
            try:
                self._fill_into(tmp, mv, download, (verify, inspect), marker, adopted=adopted)
            except CacheIntegrityError:
                if not adopted:
                    raise
                logger.info("%s: the resumed download did not verify; downloading again", mv.ref)
                tmp, _ = self._leftovers(final, None)
                self._fill_into(tmp, mv, download, (verify, inspect), marker, adopted=False)
            if final.exists():
                # A corrupt or stale entry: move it aside, then out of the way.
                trash = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
                final.replace(trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp.replace(final)
        entry = self.get(mv.name, mv.version)
        if entry is None:  # pragma: no cover - we just wrote it under the lock
            msg = f"the cache entry of {mv.ref} vanished right after it was written"
            raise CacheIntegrityError(msg)
        return entry

    def _resume_marker(self, mv: ModelVersion, resume_key: str) -> str:
        """What a resumable temp dir of ``mv`` holds in :data:`_RESUME`: sealed with the key."""
        payload: dict[str, Any] = {"identity": list(version_identity(mv)), "key": resume_key}
        payload["hmac"] = _seal(self.key, payload)
        return json.dumps(payload, sort_keys=True)

    def _leftovers(self, final: Path, marker: str | None) -> tuple[Path, bool]:
        """Clear what killed fills of ``final`` left; return the temp dir to fill.

        That is a leftover marked with ``marker`` (the newest, if several) that holds nothing
        but folders and regular files (then True: taken up again), else a new one.
        """
        adopted = None
        leftovers = sorted(
            final.parent.glob(f".tmp-{final.name}-*"),
            key=lambda path: path.lstat().st_mtime,
            reverse=True,
        )
        for leftover in leftovers:
            if adopted is None and marker is not None and self._resumable(leftover, marker):
                adopted = leftover
            else:
                shutil.rmtree(leftover, ignore_errors=True)
        for trash in final.parent.glob(f".old-{final.name}-*"):
            shutil.rmtree(trash, ignore_errors=True)
        if adopted is not None:
            return adopted, True
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        _private_dir(tmp)
        return tmp, False

    @staticmethod
    def _resumable(leftover: Path, marker: str) -> bool:
        try:
            if not stat.S_ISDIR(leftover.lstat().st_mode):
                return False
            fd = os.open(leftover / _RESUME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as fh:
                found = fh.read(len(marker) + 1)
            if not hmac.compare_digest(found, marker.encode("utf-8")):
                return False
            walk_files(leftover)  # refuses a symlink or a special file anywhere below
        except (OSError, ValueError, RegistryError):
            return False
        return True

    def _fill_into(
        self,
        tmp: Path,
        mv: ModelVersion,
        download: Callable[[Path], Mapping[str, str] | None],
        checks: tuple[
            Callable[[list[FileDigest]], bool] | None, Callable[[Path], Sequence[str]] | None
        ],
        marker: str | None,
        *,
        adopted: bool,
    ) -> None:
        """Download into ``tmp`` and write its manifest; ``tmp`` is removed unless resumable."""
        keep = False
        try:
            if marker is not None and not adopted:
                fd = os.open(tmp / _RESUME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(marker)
            try:
                hashed = download(tmp / ARTIFACTS) or {}
            except (RegistryUnavailableError, KeyboardInterrupt):
                keep = marker is not None  # the next fill goes on from here
                raise
            (tmp / _RESUME).unlink(missing_ok=True)
            records = self._records(tmp, {f"{ARTIFACTS}/{r}": h for r, h in hashed.items()})
            artifacts = [
                FileDigest(rel[len(ARTIFACTS) + 1 :], r.size, r.sha256)
                for rel, r in records.items()
                if rel.startswith(ARTIFACTS + "/")
            ]
            verify, inspect = checks
            # The signature first: a file changed, added or removed is refused as unsigned.
            signed_by = tuple(inspect(tmp / ARTIFACTS)) if inspect is not None else ()
            verified = verify(artifacts) if verify is not None else False
            self._write_manifest(
                tmp,
                mv,
                fast=None,
                files=records,
                digest=tree_digest(artifacts),
                digest_verified=verified,
                signed_by=signed_by,
            )
        except BaseException:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def _records(vdir: Path, hashed: Mapping[str, str] | None = None) -> dict[str, FileRecord]:
        """Hash every file under ``vdir`` (refusing symlinks and special files) and lock it down.

        ``hashed``: the sha256 of files hashed as they were written, by relative path.
        """
        files: dict[str, FileRecord] = {}
        known = hashed or {}
        for file in walk_files(vdir):
            rel = file.relative_to(vdir).as_posix()
            if rel == MANIFEST or rel.startswith(f".{MANIFEST}."):
                continue
            file.chmod(0o600)
            files[rel] = FileRecord.of(file, known.get(rel))
        for folder in (p for p in vdir.rglob("*") if p.is_dir() and not p.is_symlink()):
            folder.chmod(0o700)
        return files

    def _write_manifest(
        self,
        vdir: Path,
        mv: ModelVersion,
        fast: dict[str, Any] | None,
        files: dict[str, FileRecord],
        digest: str,
        *,
        digest_verified: bool,
        signed_by: Sequence[str] = (),
    ) -> None:
        payload = {
            "format": _FORMAT,
            "model_version": mv.to_json(),
            "files": {rel: attrs.asdict(record) for rel, record in sorted(files.items())},
            "fast": fast,
            "created_at": time.time(),
            "digest": digest,
            "digest_verified": digest_verified,
            "signed_by": sorted(set(signed_by)),
        }
        payload["hmac"] = _seal(self.key, payload)
        tmp = vdir / f".{MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, indent=1, sort_keys=True))
        tmp.replace(vdir / MANIFEST)

    def rewrite(
        self,
        entry: CachedVersion,
        *,
        version: ModelVersion | None = None,
        files: dict[str, FileRecord] | None = None,
        fast: dict[str, Any] | None = None,
        digest_verified: bool | None = None,
        signed_by: Sequence[str] = (),
    ) -> CachedVersion:
        """Rewrite an entry's manifest under its lock (new metadata, refreshed stat fields).

        Records are only ever taken from ``entry`` (already trusted) or given by the caller
        after it hashed the files: a rewrite never blesses a change it did not check.
        """
        with self.lock(entry.version.name, entry.version.version):
            current = self.get(entry.version.name, entry.version.version)
            if current is None or current.path != entry.path:
                return entry
            self._write_manifest(
                current.path,
                version or current.version,
                fast=current.fast if fast is None else fast,
                files={**current.files, **(files or {})},
                digest=current.digest,
                digest_verified=current.digest_verified
                if digest_verified is None
                else digest_verified,
                signed_by=(*current.signed_by, *signed_by),
            )
            refreshed = self.get(entry.version.name, entry.version.version)
        return refreshed or entry

    def add_fast_form(self, entry: CachedVersion, write: Callable[[Path], dict[str, Any]]) -> None:
        """Add a fast-load form to a complete entry, under the version's lock.

        ``write(dir)`` writes the form's files into ``dir`` and returns its description; the
        manifest is then rewritten to cover them.
        """
        with self.lock(entry.version.name, entry.version.version):
            current = self.get(entry.version.name, entry.version.version)
            if current is None or current.fast is not None:
                return
            tmp = current.path / f".{FAST}-{uuid.uuid4().hex[:8]}"
            _private_dir(tmp)
            try:
                description = write(tmp)
                target = current.path / FAST
                if target.exists():
                    shutil.rmtree(target, ignore_errors=True)
                tmp.replace(target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            folder = current.path / FAST
            files = dict(current.files)
            for file in walk_files(folder):
                file.chmod(0o600)
                files[f"{FAST}/{file.relative_to(folder).as_posix()}"] = FileRecord.of(file)
            self._write_manifest(
                current.path,
                current.version,
                fast=description,
                files=files,
                digest=current.digest,
                digest_verified=current.digest_verified,
                signed_by=current.signed_by,
            )

    def prune(self, keep: int) -> list[CachedVersion]:
        """Remove all but the newest ``keep`` cached versions of each model.

        A version that a cached alias points at is never removed. Returns what was removed.
        """
        if keep < 0:
            msg = f"keep must be 0 or more, got {keep}"
            raise ValueError(msg)
        by_model: dict[str, list[CachedVersion]] = {}
        for entry in self.versions():
            by_model.setdefault(entry.version.name, []).append(entry)
        removed = []
        for name, entries in by_model.items():
            pinned = self.pinned_versions(name)
            newest_first = sorted(entries, key=lambda e: e.version.version, reverse=True)
            for entry in newest_first[keep:]:
                if entry.version.version not in pinned:
                    self.evict(name, entry.version.version)
                    removed.append(entry)
        return removed

    def size(self, entry: CachedVersion) -> int:
        """Bytes on disk of one entry, per its manifest."""
        return sum(record.size for record in entry.files.values())

    def evict(self, name: str, version: int) -> None:
        """Remove one cached version (under its lock), and what unfinished fills of it kept."""
        with self.lock(name, version):
            vdir = self.version_dir(name, version)
            if vdir.exists():
                trash = vdir.parent / f".old-{vdir.name}-{uuid.uuid4().hex[:8]}"
                vdir.replace(trash)
                shutil.rmtree(trash, ignore_errors=True)
            for prefix in (".tmp", ".old"):
                for leftover in vdir.parent.glob(f"{prefix}-{vdir.name}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)

    def evict_model(self, name: str) -> None:
        """Remove every cached version of a model, kept partial downloads and its aliases."""
        mdir = self.model_dir(name)
        versions = mdir / "versions"
        if versions.is_dir():
            numbers = set()
            for path in versions.iterdir():
                found = _VERSION_ENTRY.fullmatch(path.name)
                if found is not None and path.is_dir() and not path.is_symlink():
                    numbers.add(int(found[1]))
            for number in sorted(numbers):
                self.evict(name, number)
        shutil.rmtree(mdir / "refs", ignore_errors=True)

    # ------------------------------------------------------------------------ alias refs

    def remember(self, name: str, alias: str, version: int) -> None:
        """Record that ``name@alias`` resolved to ``version`` just now."""
        refs = _private_dir(self.model_dir(name) / "refs")
        path = refs / _escape(alias)
        tmp = refs / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
        payload = {"alias": alias, "version": int(version), "resolved_at": time.time()}
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(path)

    def recall(self, name: str, alias: str) -> tuple[int, float] | None:
        """The last recorded resolution of ``name@alias``: (version, epoch seconds)."""
        path = self.model_dir(name) / "refs" / _escape(alias)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return int(data["version"]), float(data["resolved_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def pinned_versions(self, name: str) -> set[int]:
        """Versions that some cached alias of ``name`` points at (never pruned)."""
        refs = self.model_dir(name) / "refs"
        out: set[int] = set()
        if refs.is_dir():
            for file in refs.iterdir():
                try:
                    out.add(int(json.loads(file.read_text(encoding="utf-8"))["version"]))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return out

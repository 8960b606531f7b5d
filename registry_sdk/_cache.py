"""The on-disk model cache: verified, atomic, shared safely between processes.

Layout under ``cache_dir``::

    <registry-id>/<escaped-name>/versions/<n>/manifest.json   sha256 + size of every file, metadata
    <registry-id>/<escaped-name>/versions/<n>/artifacts/...   the MLflow model, as downloaded
    <registry-id>/<escaped-name>/versions/<n>/fast/...        optional fast-load form (see loading)
    <registry-id>/<escaped-name>/refs/<alias>                 the last resolution of the alias

A version is filled into a temporary directory under a file lock and renamed into place, so a
reader never sees half a model and two processes filling the same version download it once.
Every directory is private to the user (0700), every file 0600. Names are escaped (see
``_escape``), so no model name or alias can point outside the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs

from registry_sdk.entities import ModelVersion
from registry_sdk.errors import CacheIntegrityError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

MANIFEST = "manifest.json"
ARTIFACTS = "artifacts"
FAST = "fast"
_FORMAT = 1
_MAX_COMPONENT = 120
_CHUNK = 1 << 20
#: How long a process waits for another one filling the same version.
LOCK_TIMEOUT_S = 600.0
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

    clean = redact(registry_uri)
    readable = "".join(c if c.isalnum() or c in "-." else "_" for c in clean)[:48].strip("_")
    digest = hashlib.sha256(clean.encode()).hexdigest()[:12]
    return _escape(f"{readable}-{digest}")


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
    """What the manifest knows of one file."""

    sha256: str
    size: int
    mtime_ns: int


@attrs.frozen
class CachedVersion:
    """A complete, verified cache entry for one model version."""

    path: Path
    version: ModelVersion
    files: dict[str, FileRecord]
    fast: dict[str, Any] | None
    created_at: float

    @property
    def artifacts(self) -> Path:
        """The MLflow model directory."""
        return self.path / ARTIFACTS

    def check(self, *, full: bool = False) -> list[str]:
        """Files that do not match the manifest: cheap (size and mtime, hash on doubt) or full."""
        bad: list[str] = []
        for rel, record in self.files.items():
            file = self.path / rel
            try:
                st = file.stat()
            except OSError:
                bad.append(rel)
                continue
            doubt = full or st.st_mtime_ns != record.mtime_ns
            if st.st_size != record.size or (doubt and sha256_file(file) != record.sha256):
                bad.append(rel)
        return bad


class ModelCache:
    """The cache of one registry under ``root``."""

    def __init__(self, root: Path, registry_uri: str) -> None:
        self.root = root
        self.base = root / registry_id(registry_uri)

    def model_dir(self, name: str) -> Path:
        """The directory of one registered model."""
        return self.base / _escape(name)

    def version_dir(self, name: str, version: int) -> Path:
        """The directory of one version."""
        return self.model_dir(name) / "versions" / str(int(version))

    # ------------------------------------------------------------------------ reading

    def get(self, name: str, version: int) -> CachedVersion | None:
        """The cached version if complete; None if absent (a partial fill is never visible)."""
        path = self.version_dir(name, version)
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        try:
            return CachedVersion(
                path=path,
                version=ModelVersion.from_json(data["model_version"]),
                files={k: FileRecord(**v) for k, v in data["files"].items()},
                fast=data.get("fast"),
                created_at=float(data.get("created_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # any shape but ours
            msg = f"the cache manifest of {name}/{version} at {path} is unreadable: {exc}"
            raise CacheIntegrityError(msg) from None

    def versions(self) -> Iterator[CachedVersion]:
        """Every complete cached version of this registry."""
        if not self.base.is_dir():
            return
        for model in sorted(self.base.iterdir()):
            versions = model / "versions"
            if not versions.is_dir():
                continue
            for vdir in sorted(versions.iterdir()):
                if vdir.is_dir() and vdir.name.isdigit() and (vdir / MANIFEST).is_file():
                    try:
                        manifest = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue  # unreadable: absent, as for get(); a load fills it again
                    mv = ModelVersion.from_json(manifest["model_version"])
                    cached = self.get(mv.name, mv.version)
                    if cached is not None:
                        yield cached

    # ------------------------------------------------------------------------ filling

    def lock(self, name: str, version: int) -> Any:
        """An inter-process lock for filling one version."""
        from filelock import FileLock

        vdir = self.version_dir(name, version)
        _private_dir(vdir.parent)
        return FileLock(str(vdir) + ".lock", timeout=LOCK_TIMEOUT_S, mode=0o600)

    def fill(
        self,
        mv: ModelVersion,
        download: Callable[[Path], None],
    ) -> CachedVersion:
        """Download ``mv`` into the cache once: under a lock, into a temp dir, then rename.

        ``download(dest)`` must put the model's artifacts into ``dest``. Another process that
        filled the version while we waited for the lock wins; we use its entry.
        """
        with self.lock(mv.name, mv.version):
            existing = self.get(mv.name, mv.version)
            if existing is not None and not existing.check():
                return existing
            final = self.version_dir(mv.name, mv.version)
            # A fill killed mid-download leaves its temp dir behind (an eviction, its trash).
            # We hold the version's lock, so no live process is using them: remove them.
            for stale in (".tmp", ".old"):
                for leftover in final.parent.glob(f"{stale}-{final.name}-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
            tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
            _private_dir(tmp)
            try:
                download(tmp / ARTIFACTS)
                self._write_manifest(tmp, mv, fast=None)
                if final.exists():
                    # A corrupt entry: move it aside, then out of the way.
                    trash = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
                    final.replace(trash)
                    shutil.rmtree(trash, ignore_errors=True)
                tmp.replace(final)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        entry = self.get(mv.name, mv.version)
        if entry is None:  # pragma: no cover - we just wrote it under the lock
            msg = f"the cache entry of {mv.ref} vanished right after it was written"
            raise CacheIntegrityError(msg)
        return entry

    def _write_manifest(
        self,
        vdir: Path,
        mv: ModelVersion,
        fast: dict[str, Any] | None,
        known: dict[str, FileRecord] | None = None,
    ) -> None:
        # Files the manifest already covers keep their records: a rewrite never blesses a change.
        files = {rel: attrs.asdict(record) for rel, record in (known or {}).items()}
        for file in sorted(p for p in vdir.rglob("*") if p.is_file() and p.name != MANIFEST):
            file.chmod(0o600)
            st = file.stat()
            rel = file.relative_to(vdir).as_posix()
            if rel in files:
                continue
            files[rel] = {
                "sha256": sha256_file(file),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
            }
        for folder in (p for p in vdir.rglob("*") if p.is_dir()):
            folder.chmod(0o700)
        payload = {
            "format": _FORMAT,
            "model_version": mv.to_json(),
            "files": files,
            "fast": fast,
            "created_at": time.time(),
        }
        tmp = vdir / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(vdir / MANIFEST)

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
            self._write_manifest(
                current.path, current.version, fast=description, known=current.files
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
        """Remove one cached version (under its lock)."""
        with self.lock(name, version):
            vdir = self.version_dir(name, version)
            if vdir.exists():
                trash = vdir.parent / f".old-{vdir.name}-{uuid.uuid4().hex[:8]}"
                vdir.replace(trash)
                shutil.rmtree(trash, ignore_errors=True)

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

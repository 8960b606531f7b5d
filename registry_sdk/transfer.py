"""Export, import and copy between registries: lossless, verifiable, resumable, exactly once.

An export is a directory holding these and nothing else::

    manifest.json                          format, source registry, sha256 of every other file
    models/<escaped name>/model.json       description, tags (alias history included), aliases
    models/<escaped name>/versions/<n>/version.json   tags, description, source, stage, times
    models/<escaped name>/versions/<n>/run.json       the run's params, metrics, tags (lineage)
    models/<escaped name>/versions/<n>/artifacts/...  the model files

``<n>`` is a decimal version number. Only directories and regular files: an export holding a
symlink, FIFO, socket or device anywhere, a file or directory the format does not have, or a
manifest path that is absolute, contains ``..``, a backslash or NUL, or is not normalized is
refused (:class:`ExportIntegrityError` naming the path), as is one whose files do not match the
manifest or whose artifacts do not match the digest (``registry_sdk.artifacts.sha256``) their
version was registered with.

Exporting checks each version's downloaded artifacts against that digest too, and writes the
manifest last: an export that fails has no manifest, and no import accepts it.

Importing checks all of this before creating anything in the target, and also that no alias
the target already has would move to another version: that is refused
(:class:`ImportConflictError`) unless ``move_aliases=True``, and each such move is then logged
in the target's alias history. The target model's own tags and description win over the
export's (missing ones are added); a stage already set on a version is left alone. Version
numbers may differ in the target: each imported version carries ``registry_sdk.imported_from``
(source registry, name and version), aliases and the alias history are mapped to the new
numbers, and a version is found again by its idempotency key, so importing twice, or again
after an interruption, creates each version exactly once.

What the checks prove, and what not: the manifest is not signed, so an export is only as
trustworthy as whoever wrote it; it can hold any model files (and loading a model can run its
code). The checks guarantee that what an import uploads are the export's own files as they were
verified, never a file elsewhere on the importing machine reached through a link.

The export is read twice: once to verify it, then to upload each version. So that a change made
in between (by someone else who can write to the export) cannot reach the target, each version's
artifacts are copied into a private temporary directory before upload, every file opened
without following a symlink (on POSIX each directory on its path too) and hashed while copied;
what is uploaded is that copy, which matches the manifest. A change caught there stops the
import after the versions before it were created; run it again once the export is intact. The
JSON files are read once, during verification. The temporary directory (``TMPDIR``) needs room
for the largest version. On platforms without ``dir_fd`` (Windows) the directories on a file's
path are checked with ``lstat`` just before it is opened, which leaves a narrow window there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs

from registry_sdk import _digest, _tags
from registry_sdk._cache import _escape
from registry_sdk._digest import FileDigest
from registry_sdk._isolation import no_warnings
from registry_sdk.entities import AliasEvent, ModelVersion
from registry_sdk.errors import (
    AlreadyExistsError,
    CacheIntegrityError,
    ModelNotFoundError,
    NotFoundError,
    RegistryError,
    redact,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from registry_sdk.client import RegistryClient
    from registry_sdk.entities import RegisteredModel
    from registry_sdk.signing import KeyPath

__all__ = [
    "ExportIntegrityError",
    "ImportConflictError",
    "ImportReport",
    "copy",
    "export",
    "import_",
    "verify_export",
]

logger = logging.getLogger("registry_sdk.transfer")
FORMAT = 1
MANIFEST = "manifest.json"
IMPORTED_FROM = _tags.PREFIX + "imported_from"
IMPORT_KEY = _tags.PREFIX + "import_key"
IMPORT_EXPERIMENT = "registry_sdk-imports"

_CHUNK = 1 << 20
#: Far above any real model.json (100,000 alias moves are ~20 MiB) or version.json.
_MAX_JSON = 256 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What ``_escape`` produces (older forms used ``%``); never ``.``-led, so never ``.``/``..``.
_MODEL_DIR = re.compile(r"[A-Za-z0-9_~+%-][A-Za-z0-9_.~+%-]*")
_VERSION_DIR = re.compile(r"0|[1-9][0-9]*")
_M = rf"models/{_MODEL_DIR.pattern}"
_V = rf"{_M}/versions/(?:{_VERSION_DIR.pattern})"
#: The export format: every directory and file it may hold (anything below ``artifacts/``).
_FORMAT_DIRS = re.compile(rf"models|{_M}|{_M}/versions|{_V}|{_V}/artifacts(?:/.+)?", re.DOTALL)
_FORMAT_FILES = re.compile(
    rf"{re.escape(MANIFEST)}|{_M}/model\.json|{_V}/(?:version|run)\.json|{_V}/artifacts/.+",
    re.DOTALL,
)
_ARTIFACT = re.compile(rf"{_V}/artifacts/.+", re.DOTALL)
_VERSION_PATH = re.compile(_V)


class ExportIntegrityError(CacheIntegrityError):
    """An export is not what its manifest and the format say: names the file or path.

    A file is missing, extra, or does not match the manifest's checksum; the export holds a
    symlink, special file or a path the format does not have; or a version's artifacts do not
    match the digest it was registered with.
    """


class ImportConflictError(AlreadyExistsError):
    """An import would move aliases the target registry already has to other versions.

    Lists each alias, the version it holds now and the one it would move to. Nothing was
    imported; ``import_(..., move_aliases=True)`` (``registry import --move-aliases``) moves
    them and logs each move in the alias history.
    """


@attrs.frozen
class ImportReport:
    """What an import did: ``created`` and ``existing`` map ``name/source version`` to target."""

    created: dict[str, str]
    existing: dict[str, str]
    aliases: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


# ================================================================================ export


def export(client: RegistryClient, names: Sequence[str] | None, to: Path) -> Path:
    """Write every version of ``names`` (default: all models) to directory ``to``.

    ``to`` must be new or empty. The manifest is written last.

    Raises:
        FileExistsError: ``to`` holds an export or other files already.
        CacheIntegrityError: a version's artifacts do not match the digest recorded at its
            registration (names the files); no manifest is written.
    """
    from registry_sdk._progress import Progress

    to = Path(to)
    _prepare_destination(to)
    chosen = list(names) if names else [m.name for m in client.search_models()]
    files: dict[str, str] = {}
    progress = Progress(f"export to {to}", len(chosen))
    try:
        for name in chosen:
            model = client.get_model(name)
            mrel = f"models/{_escape(name)}"
            files[f"{mrel}/model.json"] = _write_json(
                to / mrel / "model.json",
                {
                    "name": model.name,
                    "description": model.description,
                    "tags": dict(model.tags),
                    "aliases": dict(model.aliases),
                },
            )
            for mv in sorted(client.search_versions(name), key=lambda v: v.version):
                _export_version(client, mv, to, f"{mrel}/versions/{mv.version}", files)
            progress.advance(1)
    finally:
        progress.close()
    _write_manifest(client, to, chosen, files)
    return to


def _prepare_destination(to: Path) -> None:
    if (to / MANIFEST).exists():
        msg = f"{to} already holds an export; choose an empty directory"
        raise FileExistsError(msg)
    if to.exists() and not to.is_dir():
        msg = f"{to} exists and is not a directory; an export goes into a new or empty directory"
        raise FileExistsError(msg)
    if to.exists() and any(to.iterdir()):
        msg = (
            f"{to} is not empty: an export goes into a new or empty directory, so that it holds "
            f"nothing but what it lists (an export that failed leaves its files there without "
            f"{MANIFEST}; remove them first)"
        )
        raise FileExistsError(msg)
    to.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: Any) -> str:
    """Write ``data`` as JSON; return the sha256 of the bytes written."""
    payload = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return hashlib.sha256(payload).hexdigest()


def _export_version(
    client: RegistryClient, mv: ModelVersion, to: Path, vrel: str, files: dict[str, str]
) -> None:
    """Write one version's JSON files and artifacts, checked against its recorded digest."""
    from registry_sdk._download import download

    files[f"{vrel}/version.json"] = _write_json(to / vrel / "version.json", mv.to_json())
    if mv.run_id:
        try:
            run = client.backend.get_run(mv.run_id)
            files[f"{vrel}/run.json"] = _write_json(
                to / vrel / "run.json", run.to_dict() | {"tags": dict(run.tags)}
            )
        except NotFoundError:
            logger.warning("run %s of %s is gone; exporting without it", mv.run_id, mv.ref)
    uri = client.backend.get_download_uri(mv.name, mv.version)
    dest = to / vrel / "artifacts"
    download(uri, dest, backend=client.backend, settings=client.settings, label=mv.ref)
    records = _digest.tree_records(dest) if dest.exists() else []
    try:
        _digest.check(records, mv.tags, label=mv.ref)
    except CacheIntegrityError:
        msg = (
            f"{mv.ref}: the artifacts downloaded from {redact(uri)} do not match the digest "
            f"recorded at registration ({_mismatch(records, mv.tags)}). The artifact store "
            f"holds files other than those registered; the export stops here without writing "
            f"{MANIFEST}, so {to} is not an export (remove it)"
        )
        raise CacheIntegrityError(msg) from None
    for record in records:
        files[f"{vrel}/artifacts/{record.path}"] = record.sha256


def _mismatch(records: Sequence[FileDigest], tags: Any, prefix: str = "") -> str:
    """``registry_sdk.artifacts.sha256=abc...: changed: <prefix>a; added: ...`` (best effort)."""
    expected = str(tags.get(_digest.DIGEST_TAG, ""))[:16]
    found = []
    for item in _digest.differences(records, tags):
        kind, _, rel = item.partition(": ")
        found.append(f"{kind}: {prefix}{rel}")
    detail = (
        "; ".join(found)
        if found
        else f"{len(records)} files; the version records no per-file listing to name which"
    )
    return f"{_digest.DIGEST_TAG}={expected}...: {detail}"


def _write_manifest(
    client: RegistryClient, to: Path, models: list[str], files: dict[str, str]
) -> None:
    _write_json(
        to / MANIFEST,
        {
            "format": FORMAT,
            "source_registry": redact(client.registry_uri),
            "exported_at": time.time(),
            "models": models,
            "files": dict(sorted(files.items())),
        },
    )


# ================================================================================ verification


@attrs.frozen
class _Version:
    rel: str  # models/<m>/versions/<n>
    info: ModelVersion
    run: dict[str, Any]
    key: str  # the import key: the version is found again in the target by it
    artifacts: tuple[FileDigest, ...]  # paths relative to <rel>/artifacts


@attrs.frozen
class _Model:
    rel: str  # models/<m>
    name: str
    description: str | None
    tags: dict[str, str]
    aliases: dict[str, int]
    versions: tuple[_Version, ...]


@attrs.frozen
class _Bundle:
    """An export as verified: its JSON files as read then, and the digests of its artifacts."""

    root: Path
    manifest: dict[str, Any]
    source: str
    models: tuple[_Model, ...]


def verify_export(path: Path) -> dict[str, Any]:
    """Check an export completely, as an import does before creating anything; return its manifest.

    Raises:
        ExportIntegrityError: a file is missing, unexpected or changed; a symlink, special file,
            or a file, directory or manifest path the format does not allow; artifacts that do
            not match their version's recorded digest. Names the path.
    """
    return _read_bundle(Path(path)).manifest


def _read_bundle(root: Path) -> _Bundle:
    manifest = _read_manifest(root)
    expected: dict[str, str] = manifest["files"]
    dirs, present = _walk(root)
    for rel in sorted(set(expected) - present):
        msg = f"export file {rel} is missing from {root}"
        raise ExportIntegrityError(msg)
    for rel in sorted(present - set(expected)):
        msg = f"export file {rel} is not in the manifest of {root} (added after export?)"
        raise ExportIntegrityError(msg)
    blobs: dict[str, bytes] = {}
    digests: dict[str, FileDigest] = {}
    for rel, digest in sorted(expected.items()):
        with _open_regular(root, rel) as fh:
            if _ARTIFACT.fullmatch(rel):
                size, actual = _hash_stream(fh)
            else:
                blobs[rel] = _read_small(fh, rel, root)
                size, actual = len(blobs[rel]), hashlib.sha256(blobs[rel]).hexdigest()
        if actual != digest:
            msg = f"export file {rel} does not match its sha256 in the manifest: it was modified"
            raise ExportIntegrityError(msg)
        digests[rel] = FileDigest(rel, size, actual)
    source = str(manifest.get("source_registry", "unknown"))
    models = tuple(
        _read_model(root, mrel, dirs, blobs, digests, source)
        for mrel in sorted(d for d in dirs if d.count("/") == 1)
    )
    names = [m.name for m in models]
    for name in sorted({n for n in names if names.count(n) > 1}):
        msg = f"export {root} holds model {name!r} twice (in more than one models/ directory)"
        raise ExportIntegrityError(msg)
    return _Bundle(root, manifest, source, models)


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        with _open_regular(root, MANIFEST) as fh:
            raw = _read_small(fh, MANIFEST, root)
    except ExportIntegrityError as exc:
        msg = f"not an export: {exc}"
        raise ExportIntegrityError(msg) from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        msg = f"{root} is not an export: its {MANIFEST} is not JSON ({exc})"
        raise ExportIntegrityError(msg) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        msg = f"{root}: export format {found!r} is not supported (need {FORMAT})"
        raise ExportIntegrityError(msg)
    files = manifest.get("files") or {}
    if not isinstance(files, dict):
        msg = f"{root}: the manifest's files must map paths to sha256 digests"
        raise ExportIntegrityError(msg)
    for rel, digest in files.items():
        problem = _path_problem(rel) or _layout_problem(rel, is_dir=False)
        if problem:
            msg = (
                f"manifest entry {rel!r} of {root} {problem}; an export names its files by "
                "normalized relative POSIX paths inside the export format"
            )
            raise ExportIntegrityError(msg)
        if rel == MANIFEST:
            msg = f"manifest entry {rel!r} of {root}: the manifest cannot list itself"
            raise ExportIntegrityError(msg)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            msg = f"manifest entry {rel!r} of {root}: {digest!r} is not a sha256 hex digest"
            raise ExportIntegrityError(msg)
    return manifest | {"files": dict(files)}


def _path_problem(rel: object) -> str | None:
    """Why ``rel`` is not a plain, normalized, relative POSIX path; None when it is."""
    if not isinstance(rel, str) or not rel:
        return "is not a non-empty string"
    if "\x00" in rel:
        return "contains NUL"
    if "\\" in rel:
        return "contains a backslash"
    if rel.startswith("/") or PureWindowsPath(rel).anchor:
        return "is absolute"
    parts = rel.split("/")
    if ".." in parts:
        return "contains '..'"
    if any(part in {"", "."} for part in parts):
        return "is not normalized (an empty or '.' component)"
    return None


def _layout_problem(rel: str, *, is_dir: bool) -> str | None:
    """Why the export format has no such file (or directory) ``rel``; None when it has."""
    expected, other = (_FORMAT_DIRS, _FORMAT_FILES) if is_dir else (_FORMAT_FILES, _FORMAT_DIRS)
    if expected.fullmatch(rel):
        return None
    parts = rel.split("/")
    if parts[0] == "models" and len(parts) > 1 and not _MODEL_DIR.fullmatch(parts[1]):
        return "has a model directory whose name is not an escaped model name"
    if parts[2:3] == ["versions"] and len(parts) > 3 and not _VERSION_DIR.fullmatch(parts[3]):  # noqa: PLR2004 - models/<m>/versions/<n>
        return "has a version directory whose name is not a decimal version number"
    if other.fullmatch(rel):
        kind, wanted = ("directory", "file") if is_dir else ("file", "directory")
        return f"is a {kind} where the export format has a {wanted}"
    return "is not part of the export format (see registry_sdk.transfer)"


def _walk(root: Path) -> tuple[set[str], set[str]]:
    """Every directory and regular file below ``root`` (relative POSIX paths), refusing links.

    Like :func:`registry_sdk._digest.walk_files`, but over the whole export, directories
    included, and with the export's error and naming.
    """
    dirs: set[str] = set()
    files: set[str] = set()
    pending = [""]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(root / folder if folder else root) as entries:
                found = [(e.name, e.stat(follow_symlinks=False).st_mode) for e in entries]
        except OSError as exc:
            msg = f"export {root}: cannot list {folder or '.'}: {exc.strerror}"
            raise ExportIntegrityError(msg) from None
        for name, mode in found:
            rel = f"{folder}/{name}" if folder else name
            if stat.S_ISLNK(mode):
                msg = (
                    f"export entry {rel} is a symlink; an export holds only directories and "
                    f"regular files (importing it would copy whatever it points at): {root}"
                )
                raise ExportIntegrityError(msg)
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                msg = (
                    f"export entry {rel} is not a regular file or directory (a FIFO, socket or "
                    f"device); an export holds only directories and regular files: {root}"
                )
                raise ExportIntegrityError(msg)
            is_dir = stat.S_ISDIR(mode)
            if rel == MANIFEST and not is_dir:
                continue
            problem = _path_problem(rel) or _layout_problem(rel, is_dir=is_dir)
            if problem:
                msg = f"export entry {rel} of {root} {problem}"
                raise ExportIntegrityError(msg)
            if is_dir:
                dirs.add(rel)
                pending.append(rel)
            else:
                files.add(rel)
    return dirs, files


@contextlib.contextmanager
def _open_regular(root: Path, rel: str) -> Iterator[BinaryIO]:
    """Open export file ``rel`` for reading, never through a symlink, only if it is regular."""
    try:
        fd = _digest.open_beneath(root, rel.split("/"))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            problem = "is missing"
        elif exc.errno in _digest.LINK_ERRNOS:
            problem = "is a symlink or lies under one (an export holds no links)"
        else:
            problem = f"cannot be read: {exc.strerror}"
        msg = f"export file {rel} of {root} {problem}"
        raise ExportIntegrityError(msg) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            msg = f"export file {rel} of {root} is not a regular file"
            raise ExportIntegrityError(msg)
        yield fh


def _read_small(fh: BinaryIO, rel: str, root: Path) -> bytes:
    """The whole of a JSON file of the export, refusing one too large to be what it says."""
    data = fh.read(_MAX_JSON + 1)
    if len(data) > _MAX_JSON:
        msg = f"export file {rel} of {root} is over {_MAX_JSON >> 20} MiB: not an export's JSON"
        raise ExportIntegrityError(msg)
    return data


def _hash_stream(fh: BinaryIO, sink: BinaryIO | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return size, digest.hexdigest()


def _json_object(root: Path, rel: str, blobs: dict[str, bytes]) -> dict[str, Any]:
    if rel not in blobs:
        msg = f"export {root} lacks {rel}, which the format requires"
        raise ExportIntegrityError(msg)
    try:
        data = json.loads(blobs[rel].decode("utf-8"))
    except ValueError as exc:
        msg = f"export file {rel} of {root} is not JSON: {exc}"
        raise ExportIntegrityError(msg) from None
    if not isinstance(data, dict):
        msg = f"export file {rel} of {root} must hold a JSON object"
        raise ExportIntegrityError(msg)
    return data


def _read_model(
    root: Path,
    mrel: str,
    dirs: set[str],
    blobs: dict[str, bytes],
    digests: dict[str, FileDigest],
    source: str,
) -> _Model:
    info = _json_object(root, f"{mrel}/model.json", blobs)
    name, description = info.get("name"), info.get("description")
    tags, aliases = info.get("tags") or {}, info.get("aliases") or {}
    if (
        not isinstance(name, str)
        or not isinstance(description, (str, type(None)))
        or not isinstance(tags, dict)
        or not all(isinstance(v, str) for v in tags.values())
        or not isinstance(aliases, dict)
        or not all(isinstance(v, (int, str)) and str(v).isdecimal() for v in aliases.values())
    ):
        msg = (
            f"export file {mrel}/model.json of {root} is malformed: it needs a name, an "
            "optional description, string tags and aliases mapping to version numbers"
        )
        raise ExportIntegrityError(msg)
    vdirs = [d for d in dirs if d.startswith(f"{mrel}/") and _VERSION_PATH.fullmatch(d)]
    versions = [
        _read_version(root, vrel, name, blobs, digests, source)
        for vrel in sorted(vdirs, key=lambda d: int(d.rsplit("/", 1)[1]))
    ]
    return _Model(
        rel=mrel,
        name=name,
        description=description,
        tags=dict(tags),
        aliases={str(a): int(v) for a, v in aliases.items()},
        versions=tuple(versions),
    )


def _read_version(
    root: Path,
    vrel: str,
    name: str,
    blobs: dict[str, bytes],
    digests: dict[str, FileDigest],
    source: str,
) -> _Version:
    try:
        mv = ModelVersion.from_json(_json_object(root, f"{vrel}/version.json", blobs))
    except ExportIntegrityError:
        raise
    except RegistryError as exc:
        msg = f"export file {vrel}/version.json of {root} is malformed: {exc}"
        raise ExportIntegrityError(msg) from None
    if mv.name != name or str(mv.version) != vrel.rsplit("/", 1)[1]:
        msg = (
            f"export file {vrel}/version.json of {root} describes {mv.ref}, not version "
            f"{vrel.rsplit('/', 1)[1]} of {name!r} as its directory says"
        )
        raise ExportIntegrityError(msg)
    run = _json_object(root, f"{vrel}/run.json", blobs) if f"{vrel}/run.json" in blobs else {}
    key = _import_key(source, name, mv.version, mv.tags.get(_tags.IDEMPOTENCY_KEY))
    if "'" in key and '"' in key:
        msg = f"export file {vrel}/version.json of {root}: its idempotency key has both quotes"
        raise ExportIntegrityError(msg)
    prefix = f"{vrel}/artifacts/"
    records = tuple(
        attrs.evolve(d, path=d.path[len(prefix) :])
        for rel, d in sorted(digests.items())
        if rel.startswith(prefix)
    )
    try:
        _digest.check(records, mv.tags, label=mv.ref)
    except CacheIntegrityError:
        msg = (
            f"export {root}: the artifacts of {mv.ref} do not match the digest it was "
            f"registered with ({_mismatch(records, mv.tags, prefix)}). The export was made "
            "from changed files or edited afterwards, manifest included; nothing was imported"
        )
        raise ExportIntegrityError(msg) from None
    return _Version(rel=vrel, info=mv, run=run, key=key, artifacts=records)


# ================================================================================ import


def _import_key(source: str, name: str, version: int, original: str | None) -> str:
    if original:
        return original
    return hashlib.sha256(f"{source}|{name}|{version}".encode()).hexdigest()[:32]


def _find_run(tracking: Any, experiment_id: str, key: str) -> str | None:
    from registry_sdk.client import _quote

    # Only a FINISHED run has all its artifacts: one left RUNNING was interrupted mid-upload.
    runs = tracking.search_runs(
        [experiment_id],
        filter_string=f"tags.`{IMPORT_KEY}` = {_quote(key)} AND attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _stage(bundle: _Bundle, version: _Version, dest: Path) -> None:
    """Copy ``version``'s artifacts to ``dest`` as verified: a changed file stops the import."""
    for record in version.artifacts:
        rel = f"{version.rel}/artifacts/{record.path}"
        target = dest.joinpath(*record.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with _open_regular(bundle.root, rel) as src, target.open("xb") as out:
            size, digest = _hash_stream(src, out)
        if (size, digest) != (record.size, record.sha256):
            msg = (
                f"export file {rel} changed after {bundle.root} was verified; nothing of it "
                "was uploaded. Run the import again once the export is intact"
            )
            raise ExportIntegrityError(msg)


def _upload(
    client: RegistryClient, bundle: _Bundle, version: _Version, key: str
) -> tuple[str, str]:
    """Create (once) a run in the target holding the version's params, metrics and artifacts."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking.artifact_utils import get_artifact_uri

    from registry_sdk import _run_artifacts, _tracking

    # Bound to the target's tracking URI, its HTTP under the client's timeouts and retries.
    tracking = _tracking.tracking_client(client)
    run_info = version.run
    experiment_name = run_info.get("experiment_name") or IMPORT_EXPERIMENT
    experiment = tracking.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else tracking.create_experiment(experiment_name)
    )
    run_id = _find_run(tracking, experiment_id, key)
    if run_id is None:
        with tempfile.TemporaryDirectory(prefix="registry-sdk-import-") as tmp:
            staged = Path(tmp) / "artifacts"
            staged.mkdir()
            _stage(bundle, version, staged)
            tags = {
                k: v
                for k, v in (run_info.get("tags") or {}).items()
                if not str(k).startswith("mlflow.")
            }
            tags[IMPORT_KEY] = key
            tags["mlflow.runName"] = f"import {version.info.ref}"
            run = tracking.create_run(experiment_id, tags=tags)
            run_id = run.info.run_id
            root = str(run.info.artifact_uri)
            now = int(time.time() * 1000)
            params = [Param(k, str(v)) for k, v in (run_info.get("params") or {}).items()]
            metrics = [
                Metric(k, float(v), now, 0) for k, v in (run_info.get("metrics") or {}).items()
            ]
            for start in range(0, max(len(params), len(metrics), 1), 100):
                tracking.log_batch(
                    run_id,
                    metrics=metrics[start : start + 100],
                    params=params[start : start + 100],
                    tags=[RunTag(IMPORT_KEY, key)] if start == 0 else [],
                )
            _run_artifacts.log_artifacts(
                tracking, client.tracking_uri, run_id, root, str(staged), "model"
            )
        tracking.set_terminated(run_id, "FINISHED")
    uri = get_artifact_uri(run_id, "model", tracking_uri=client.tracking_uri)  # type: ignore[no-untyped-call]
    return run_id, str(uri)


def _remap_history(tags: dict[str, str], mapping: dict[int, int]) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if key.startswith(_tags.ALIAS_LOG_PREFIX):
            try:
                event = AliasEvent.from_tag_value("", value)
            except RegistryError:
                out[key] = value
                continue
            event = attrs.evolve(
                event,
                from_version=mapping.get(event.from_version, event.from_version)
                if event.from_version is not None
                else None,
                to_version=mapping.get(event.to_version, event.to_version)
                if event.to_version is not None
                else None,
            )
            out[key] = event.to_tag_value()
        else:
            out[key] = value
    return out


@attrs.frozen
class _Plan:
    """One model of an import, as the target holds it before anything is created."""

    model: _Model
    name: str  # in the target
    existing: RegisteredModel | None
    found: dict[int, ModelVersion]  # source version -> the target version imported earlier
    conflicts: tuple[str, ...]


def _plan(client: RegistryClient, model: _Model, rename: dict[str, str]) -> _Plan:
    from registry_sdk.refs import validate_alias, validate_model_name

    name = validate_model_name(rename.get(model.name, model.name))
    for alias in model.aliases:
        validate_alias(alias)
    try:
        existing: RegisteredModel | None = client.backend.get_model(name)
    except ModelNotFoundError:
        existing = None
    found: dict[int, ModelVersion] = {}
    if existing is not None:
        for version in model.versions:
            hit = client.find_version_by_key(name, version.key)
            if hit is not None:
                found[version.info.version] = hit
    conflicts = []
    in_bundle = {v.info.version for v in model.versions}
    for alias, source_version in sorted(model.aliases.items()):
        current = existing.aliases.get(alias) if existing is not None else None
        if current is None or source_version not in in_bundle:
            continue
        hit = found.get(source_version)
        if hit is not None and hit.version == current:
            continue
        to = (
            f"{name}/{hit.version} (imported earlier from {model.name}/{source_version})"
            if hit is not None
            else f"a new version imported from {model.name}/{source_version}"
        )
        conflicts.append(f"{name}@{alias} holds {name}/{current}, would move to {to}")
    return _Plan(model, name, existing, found, tuple(conflicts))


def _conflict_error(path: Path, conflicts: Sequence[str]) -> ImportConflictError:
    msg = (
        f"importing {path} would move aliases the target registry already has: "
        f"{'; '.join(conflicts)}. Nothing was imported. To move them (each move is logged in "
        "the alias history), call import_(..., move_aliases=True) or run "
        "`registry import --move-aliases`; to keep them, import the model under another name "
        "(import_(..., rename={...}))"
    )
    return ImportConflictError(msg)


def import_(
    client: RegistryClient,
    path: Path,
    *,
    rename: dict[str, str] | None = None,
    move_aliases: bool = False,
    verify: KeyPath | Sequence[KeyPath] | None = None,
) -> ImportReport:
    """Recreate an export in ``client``'s registry; see the module docstring.

    Args:
        client: the target registry.
        path: the export directory.
        rename: source model name -> name in the target.
        move_aliases: move aliases the target already has to the imported versions (logged in
            the alias history) instead of refusing the import.
        verify: public keys or CA certificates one of which must have signed each version (default
            ``REGISTRY_SDK_VERIFY_KEY``; none: not checked), before anything is created.

    Raises:
        ExportIntegrityError: the export is damaged, unsafe or not in the format (names the
            path); nothing was created.
        ImportConflictError: aliases in the target would move and ``move_aliases`` is false;
            nothing was created.
        SignatureError: a signature was required and a version is unsigned, signed by another
            key, or its files do not match it; nothing was created.
    """
    from registry_sdk import signing

    path = Path(path)
    bundle = _read_bundle(path)
    keys = signing.verify_keys(verify)
    for model in bundle.models if keys else ():
        for version in model.versions:
            label = f"{model.name}/{version.info.version} in {path}"
            artifacts = path / version.rel / "artifacts"
            signing.verify_model(artifacts, keys, label=label, tags=version.info.tags)
    client.backend.open_for_writes()  # an import into the embedded default creates it
    plans = [_plan(client, model, rename or {}) for model in bundle.models]
    conflicts = [c for plan in plans for c in plan.conflicts]
    if conflicts and not move_aliases:
        raise _conflict_error(path, conflicts)
    report = ImportReport(created={}, existing={}, aliases={})
    for plan in plans:
        _import_model(client, bundle, plan, report, move_aliases=move_aliases)
    return report


def _import_model(
    client: RegistryClient,
    bundle: _Bundle,
    plan: _Plan,
    report: ImportReport,
    *,
    move_aliases: bool,
) -> None:
    model, name = plan.model, plan.name
    if plan.existing is None:
        client.create_model(name, description=model.description, exist_ok=True)
    elif model.description and not plan.existing.description:
        client.update_model(name, description=model.description)
    mapping = {
        version.info.version: _import_version(client, bundle, plan, version, report)
        for version in model.versions
    }
    _import_tags(client, name, _remap_history(model.tags, mapping))
    # Aliases follow the mapping. A new one is set without a history event (the history came
    # along); one that moves (only with move_aliases) gets an event of its own.
    current_aliases = client.get_model(name).aliases
    for alias, version_number in sorted(model.aliases.items()):
        target = mapping.get(version_number)
        if target is None:
            continue
        current = current_aliases.get(alias)
        if current is None:
            client.backend.set_alias(name, alias, target)
        elif current != target:
            if not move_aliases:  # moved by someone else while this import ran
                conflict = f"{name}@{alias} holds {name}/{current}, would move to {name}/{target}"
                raise _conflict_error(bundle.root, [conflict])
            client.set_alias(name, alias, target, reason=f"import from {bundle.source}")
        report.aliases[f"{name}@{alias}"] = f"{name}/{target}"


def _import_tags(client: RegistryClient, name: str, tags: dict[str, str]) -> None:
    """Add the model tags the target lacks; one it has already keeps the target's value."""
    current = client.get_model(name).tags
    for key, value in tags.items():
        if key not in current:
            client.backend.set_model_tag(name, key, value)
        elif current[key] != value:
            logger.warning(
                "%s: kept the target's value of model tag %s (the export has another)", name, key
            )


def _import_version(
    client: RegistryClient, bundle: _Bundle, plan: _Plan, version: _Version, report: ImportReport
) -> int:
    """Create (once) one version in the target; return its number there."""
    mv, name = version.info, plan.name
    label = f"{plan.model.name}/{mv.version}"
    found = plan.found.get(mv.version)
    if found is not None:
        new = found
        report.existing[label] = found.ref
    else:
        run_id, artifact_uri = _upload(client, bundle, version, version.key)
        tags = {k: v for k, v in mv.tags.items() if k != _tags.IDEMPOTENCY_KEY}
        tags[IMPORTED_FROM] = json.dumps(
            {"registry": bundle.source, "name": plan.model.name, "version": mv.version},
            sort_keys=True,
        )
        new = client.create_version(
            name,
            artifact_uri,
            run_id=run_id,
            tags=tags,
            description=mv.description,
            idempotency_key=version.key,
        )
        report.created[label] = new.ref
    # A version found again gets the stage only if it has none: an interrupted import may have
    # made it without reaching this step, but a stage set since is the target's own.
    if mv.current_stage not in ("None", "") and new.current_stage in ("None", ""):
        with no_warnings():
            client.backend.transition_stage(
                name, new.version, mv.current_stage, archive_existing=False
            )
    return new.version


def copy(
    client: RegistryClient,
    ref: str,
    *,
    to_client: RegistryClient,
    name: str | None = None,
    alias: str | None = None,
) -> ModelVersion:
    """Copy one version to another registry, keeping its lineage tags and its provenance.

    Raises:
        CacheIntegrityError: the version's artifacts do not match its recorded digest;
            nothing was created in the target.
    """
    mv = client.resolve(ref)
    with tempfile.TemporaryDirectory(prefix="registry-sdk-copy-") as tmp:
        staging = Path(tmp) / "export"
        _export_one(client, mv, staging)
        report = import_(to_client, staging, rename={mv.name: name} if name else None)
    target_name = name or mv.name
    label = f"{mv.name}/{mv.version}"
    target_ref = report.created.get(label) or report.existing[label]
    copied = to_client.get_version(target_ref)
    if alias:
        to_client.set_alias(
            target_name, alias, copied.version, reason=f"copied from {redact(client.registry_uri)}"
        )
        copied = to_client.get_version(target_ref)
    return copied


def _export_one(client: RegistryClient, mv: ModelVersion, to: Path) -> None:
    """An export holding just ``mv`` (no aliases, no history: a copy promotes one version)."""
    _prepare_destination(to)
    mrel = f"models/{_escape(mv.name)}"
    model = client.get_model(mv.name)
    files = {
        f"{mrel}/model.json": _write_json(
            to / mrel / "model.json",
            {"name": mv.name, "description": model.description, "tags": {}, "aliases": {}},
        )
    }
    _export_version(client, mv.with_aliases(()), to, f"{mrel}/versions/{mv.version}", files)
    _write_manifest(client, to, [mv.name], files)

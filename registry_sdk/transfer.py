"""Export, import and copy between registries: lossless, verifiable, resumable, exactly once.

An export is a directory::

    manifest.json                          format, source registry, sha256 of every other file
    models/<escaped name>/model.json       description, tags (alias history included), aliases
    models/<escaped name>/versions/<n>/version.json   tags, description, source, stage, times
    models/<escaped name>/versions/<n>/run.json       the run's params, metrics, tags (lineage)
    models/<escaped name>/versions/<n>/artifacts/...  the model files

Importing verifies every checksum before creating anything. Version numbers may differ in the
target: each imported version carries ``registry_sdk.imported_from`` (source registry, name and
version), aliases and the alias history are mapped to the new numbers, and a version is found
again by its idempotency key, so importing twice, or again after an interruption, creates each
version exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk import _tags
from registry_sdk._cache import _escape, sha256_file
from registry_sdk.entities import AliasEvent, ModelVersion
from registry_sdk.errors import CacheIntegrityError, NotFoundError, RegistryError, redact

if TYPE_CHECKING:
    from collections.abc import Sequence

    from registry_sdk.client import RegistryClient

__all__ = ["ExportIntegrityError", "ImportReport", "copy", "export", "import_"]

logger = logging.getLogger("registry_sdk.transfer")
FORMAT = 1
MANIFEST = "manifest.json"
IMPORTED_FROM = _tags.PREFIX + "imported_from"
IMPORT_KEY = _tags.PREFIX + "import_key"
IMPORT_EXPERIMENT = "registry_sdk-imports"


class ExportIntegrityError(CacheIntegrityError):
    """A file of an export is missing, extra, or does not match the manifest's checksum."""


@attrs.frozen
class ImportReport:
    """What an import did: ``created`` and ``existing`` map ``name/source version`` to target."""

    created: dict[str, str]
    existing: dict[str, str]
    aliases: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


# ================================================================================ export


def export(client: RegistryClient, names: Sequence[str] | None, to: Path) -> Path:
    """Write every version of ``names`` (default: all models) to directory ``to``."""
    from registry_sdk._download import download
    from registry_sdk._progress import Progress

    to = Path(to)
    if (to / MANIFEST).exists():
        msg = f"{to} already holds an export; choose an empty directory"
        raise FileExistsError(msg)
    to.mkdir(parents=True, exist_ok=True)
    chosen = list(names) if names else [m.name for m in client.search_models()]
    progress = Progress(f"export to {to}", len(chosen))
    for name in chosen:
        model = client.get_model(name)
        mdir = to / "models" / _escape(name)
        _write_json(
            mdir / "model.json",
            {
                "name": model.name,
                "description": model.description,
                "tags": dict(model.tags),
                "aliases": dict(model.aliases),
            },
        )
        for mv in sorted(client.search_versions(name), key=lambda v: v.version):
            vdir = mdir / "versions" / str(mv.version)
            _write_json(vdir / "version.json", mv.to_json())
            if mv.run_id:
                try:
                    run = client.backend.get_run(mv.run_id)
                    _write_json(vdir / "run.json", run.to_dict() | {"tags": dict(run.tags)})
                except NotFoundError:
                    logger.warning("run %s of %s is gone; exporting without it", mv.run_id, mv.ref)
            uri = client.backend.get_download_uri(mv.name, mv.version)
            download(
                uri,
                vdir / "artifacts",
                backend=client.backend,
                settings=client.settings,
                label=mv.ref,
            )
        progress.advance(1)
    progress.close()
    # Only the top-level manifest is left out: a model may have a file of that name too.
    files = {
        p.relative_to(to).as_posix(): sha256_file(p)
        for p in sorted(to.rglob("*"))
        if p.is_file() and p.relative_to(to).as_posix() != MANIFEST
    }
    _write_json(
        to / MANIFEST,
        {
            "format": FORMAT,
            "source_registry": redact(client.registry_uri),
            "exported_at": time.time(),
            "models": chosen,
            "files": files,
        },
    )
    return to


# ================================================================================ import


def verify_export(path: Path) -> dict[str, Any]:
    """Check every file against the manifest before anything is imported; return the manifest.

    Raises:
        ExportIntegrityError: a file is missing, unexpected or changed; names the file.
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        msg = f"{path} is not an export: its {MANIFEST} is missing or unreadable ({exc})"
        raise ExportIntegrityError(msg) from None
    if manifest.get("format") != FORMAT:
        msg = f"{path}: export format {manifest.get('format')!r} is not supported (need {FORMAT})"
        raise ExportIntegrityError(msg)
    expected: dict[str, str] = manifest.get("files") or {}
    present = {
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.relative_to(path).as_posix() != MANIFEST
    }
    for rel in sorted(set(expected) - present):
        msg = f"export file {rel} is missing from {path}"
        raise ExportIntegrityError(msg)
    for rel in sorted(present - set(expected)):
        msg = f"export file {rel} is not in the manifest of {path} (added after export?)"
        raise ExportIntegrityError(msg)
    for rel, digest in sorted(expected.items()):
        if sha256_file(path / rel) != digest:
            msg = f"export file {rel} does not match its sha256 in the manifest: it was modified"
            raise ExportIntegrityError(msg)
    return dict(manifest)


def _import_key(source: str, name: str, version: int, original: str | None) -> str:
    if original:
        return original
    return hashlib.sha256(f"{source}|{name}|{version}".encode()).hexdigest()[:32]


def _find_run(tracking: Any, experiment_id: str, key: str) -> str | None:
    # Only a FINISHED run has all its artifacts: one left RUNNING was interrupted mid-upload.
    runs = tracking.search_runs(
        [experiment_id],
        filter_string=f"tags.`{IMPORT_KEY}` = '{key}' AND attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _upload(client: RegistryClient, vdir: Path, key: str, mv: ModelVersion) -> tuple[str, str]:
    """Create (once) a run in the target holding the version's params, metrics and artifacts."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking.artifact_utils import get_artifact_uri

    tracking = mlflow.MlflowClient(tracking_uri=client.tracking_uri)
    run_info: dict[str, Any] = {}
    if (vdir / "run.json").is_file():
        run_info = json.loads((vdir / "run.json").read_text(encoding="utf-8"))
    experiment_name = run_info.get("experiment_name") or IMPORT_EXPERIMENT
    experiment = tracking.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else tracking.create_experiment(experiment_name)
    )
    run_id = _find_run(tracking, experiment_id, key)
    if run_id is None:
        tags = {
            k: v for k, v in (run_info.get("tags") or {}).items() if not k.startswith("mlflow.")
        }
        tags[IMPORT_KEY] = key
        tags["mlflow.runName"] = f"import {mv.ref}"
        run = tracking.create_run(experiment_id, tags=tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        params = [Param(k, str(v)) for k, v in (run_info.get("params") or {}).items()]
        metrics = [Metric(k, float(v), now, 0) for k, v in (run_info.get("metrics") or {}).items()]
        for start in range(0, max(len(params), len(metrics), 1), 100):
            tracking.log_batch(
                run_id,
                metrics=metrics[start : start + 100],
                params=params[start : start + 100],
                tags=[RunTag(IMPORT_KEY, key)] if start == 0 else [],
            )
        tracking.log_artifacts(run_id, str(vdir / "artifacts"), "model")
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


def import_(
    client: RegistryClient, path: Path, *, rename: dict[str, str] | None = None
) -> ImportReport:
    """Recreate an export in ``client``'s registry; see the module docstring."""
    path = Path(path)
    manifest = verify_export(path)
    source = str(manifest.get("source_registry", "unknown"))
    created: dict[str, str] = {}
    existing: dict[str, str] = {}
    aliases: dict[str, str] = {}
    models = path / "models"  # absent from the export of an empty registry
    for mdir in sorted(models.iterdir()) if models.is_dir() else []:
        info = json.loads((mdir / "model.json").read_text(encoding="utf-8"))
        source_name = info["name"]
        name = (rename or {}).get(source_name, source_name)
        client.create_model(name, description=info.get("description"), exist_ok=True)
        mapping: dict[int, int] = {}
        # A model without versions is exported without a versions directory.
        vroot = mdir / "versions"
        vdirs = sorted(vroot.iterdir(), key=lambda p: int(p.name)) if vroot.is_dir() else []
        for vdir in vdirs:
            mv = ModelVersion.from_json(json.loads((vdir / "version.json").read_text("utf-8")))
            key = _import_key(source, source_name, mv.version, mv.tags.get(_tags.IDEMPOTENCY_KEY))
            provenance = json.dumps(
                {"registry": source, "name": source_name, "version": mv.version}, sort_keys=True
            )
            found = client.find_version_by_key(name, key)
            label = f"{source_name}/{mv.version}"
            if found is not None:
                new = found
                existing[label] = found.ref
            else:
                run_id, artifact_uri = _upload(client, vdir, key, mv)
                tags = {k: v for k, v in mv.tags.items() if k != _tags.IDEMPOTENCY_KEY}
                tags[IMPORTED_FROM] = provenance
                new = client.create_version(
                    name,
                    artifact_uri,
                    run_id=run_id,
                    tags=tags,
                    description=mv.description,
                    idempotency_key=key,
                )
                created[label] = new.ref
            mapping[mv.version] = new.version
            # Checked for a version found again too: an interrupted import may have made it
            # without reaching this step.
            if mv.current_stage not in ("None", "") and new.current_stage != mv.current_stage:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    client.backend.transition_stage(
                        name, new.version, mv.current_stage, archive_existing=False
                    )
        # Model tags, with the alias history mapped to the new version numbers.
        current_tags = client.get_model(name).tags
        for key, value in _remap_history(dict(info.get("tags") or {}), mapping).items():
            if current_tags.get(key) != value:
                client.backend.set_model_tag(name, key, value)
        # Aliases follow the mapping; set without a new history event (the history came along).
        current_aliases = client.get_model(name).aliases
        for alias, version in sorted((info.get("aliases") or {}).items()):
            target = mapping.get(int(version))
            if target is None:
                continue
            if current_aliases.get(alias) != target:
                client.backend.set_alias(name, alias, target)
            aliases[f"{name}@{alias}"] = f"{name}/{target}"
    return ImportReport(created=created, existing=existing, aliases=aliases)


def copy(
    client: RegistryClient,
    ref: str,
    *,
    to_client: RegistryClient,
    name: str | None = None,
    alias: str | None = None,
) -> ModelVersion:
    """Copy one version to another registry, keeping its lineage tags and its provenance."""
    import tempfile

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
    from registry_sdk._download import download

    mdir = to / "models" / _escape(mv.name)
    model = client.get_model(mv.name)
    _write_json(
        mdir / "model.json",
        {"name": mv.name, "description": model.description, "tags": {}, "aliases": {}},
    )
    vdir = mdir / "versions" / str(mv.version)
    _write_json(vdir / "version.json", mv.with_aliases(()).to_json())
    if mv.run_id:
        try:
            run = client.backend.get_run(mv.run_id)
            _write_json(vdir / "run.json", run.to_dict() | {"tags": dict(run.tags)})
        except NotFoundError:
            pass
    uri = client.backend.get_download_uri(mv.name, mv.version)
    download(
        uri, vdir / "artifacts", backend=client.backend, settings=client.settings, label=mv.ref
    )
    files = {
        p.relative_to(to).as_posix(): sha256_file(p) for p in sorted(to.rglob("*")) if p.is_file()
    }
    _write_json(
        to / MANIFEST,
        {
            "format": FORMAT,
            "source_registry": redact(client.registry_uri),
            "exported_at": time.time(),
            "models": [mv.name],
            "files": files,
        },
    )

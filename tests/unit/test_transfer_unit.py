"""Export, import and copy on embedded SQLite registries: no server, tiny hand-made artifacts.

Each test gets fresh registries under ``tmp_path`` and works in ``tmp_path`` (an embedded store
puts new experiments' artifacts under ``./mlruns``). Versions point at small directories of
made-up files; nothing here loads a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import warnings
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import fluent

import registry_sdk as rs
from registry_sdk import _digest, _tags, lifecycle, transfer
from registry_sdk._backends.local import LocalBackend
from registry_sdk.cli import cli
from registry_sdk.entities import AliasEvent
from registry_sdk.errors import CacheIntegrityError
from registry_sdk.transfer import ExportIntegrityError, ImportReport

IMPORTED_FROM = _tags.PREFIX + "imported_from"
ALIAS_LOG = _tags.ALIAS_LOG_PREFIX


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No MLFLOW_* / REGISTRY_SDK_* variable leaks in; ./mlruns lands in tmp; MLflow restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store with MLflow's schema: migrating one takes seconds, copying it does not."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)
        with client_for(path.parent, "template", f"sqlite:///{path}") as client:
            assert list(client.search_models()) == []
    return path


@pytest.fixture
def registry(tmp_path: Path, template_db: Path):
    """``registry(label)``: a fresh, empty embedded registry in ``tmp_path``."""

    def make(label: str) -> rs.RegistryClient:
        path = tmp_path / f"{label}.db"
        shutil.copyfile(template_db, path)
        return client_for(tmp_path, label, f"sqlite:///{path}")

    return make


def client_for(tmp_path: Path, label: str, uri: str) -> rs.RegistryClient:
    return rs.RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=tmp_path / f"cache-{label}",
        offline=False,
        timeout=30,
        max_retries=1,
    )


def artifacts(tmp_path: Path, label: str, files: dict[str, bytes]) -> Path:
    """A directory of made-up model files for one version."""
    root = tmp_path / "sources" / label
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def model_files(n: int) -> dict[str, bytes]:
    return {
        "MLmodel": f"flavors: {{}}\nversion: {n}\n".encode(),
        "weights.bin": bytes(range(256)) * (n + 1),
        "sub/notes.txt": f"version {n}".encode(),
    }


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stored_artifacts(client: rs.RegistryClient, name: str, version: int) -> dict[str, str]:
    """sha256 of each file behind a version, as vanilla MLflow finds them (local stores only)."""
    vanilla = mlflow.MlflowClient(
        tracking_uri=client.tracking_uri, registry_uri=client.registry_uri
    )
    uri = vanilla.get_model_version_download_uri(name, str(version))
    path = Path(uri.removeprefix("file://"))
    assert path.is_dir(), uri
    return hashes(path)


def version_count(client: rs.RegistryClient, name: str) -> int:
    return len(list(client.search_versions(name)))


def stage(client: rs.RegistryClient, ref: str, to: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow deprecates stages; the export still has them
        client.transition_stage(ref, to)


class ImportInterruptedError(Exception):
    """Stands for a crash of the importing process at the point where it is raised."""


# ============================================================================ pure helpers


def event(alias: str, frm: int | None, to: int | None, at: int = 1_700_000_000_000) -> str:
    payload = {"alias": alias, "from": frm, "to": to, "by": "me", "at": at}
    return json.dumps(payload | {"reason": "why", "forced": False})


def test_remap_history_maps_both_ends_of_each_logged_move_and_nothing_else():
    tags = {
        f"{ALIAS_LOG}0001.a": event("prod", None, 1),
        f"{ALIAS_LOG}0002.b": event("prod", 1, 2),
        f"{ALIAS_LOG}0003.c": event("prod", 2, None),
        f"{ALIAS_LOG}0004.d": "not json at all",
        "team": "search",
        "owner.note": '{"from": 1, "to": 2}',  # JSON, but not an alias log entry
    }

    out = transfer._remap_history(tags, {1: 7, 2: 9})

    moved = [f"{ALIAS_LOG}0001.a", f"{ALIAS_LOG}0002.b", f"{ALIAS_LOG}0003.c"]
    parsed = {key: json.loads(out[key]) for key in moved}
    assert [(parsed[key]["from"], parsed[key]["to"]) for key in moved] == [
        (None, 7),
        (7, 9),
        (9, None),
    ]
    for key, value in parsed.items():
        original = json.loads(tags[key])
        assert {k: v for k, v in value.items() if k not in {"from", "to"}} == {
            k: v for k, v in original.items() if k not in {"from", "to"}
        }
    assert out[f"{ALIAS_LOG}0004.d"] == "not json at all"
    assert out["team"] == "search"
    assert out["owner.note"] == '{"from": 1, "to": 2}'


def test_remap_history_with_the_identity_mapping_leaves_entries_byte_for_byte_equal():
    tags = {
        f"{ALIAS_LOG}{at}.x": AliasEvent.from_tag_value("m", event("a", 3, 4, at)).to_tag_value()
        for at in (1_700_000_000_001, 1_795_742_412_334, 1_795_742_413_999)
    }
    assert transfer._remap_history(tags, {3: 3, 4: 4}) == tags


def test_import_key_reuses_the_original_key_else_derives_a_stable_one():
    assert transfer._import_key("sqlite:///a.db", "m", 3, "k" * 32) == "k" * 32
    derived = transfer._import_key("sqlite:///a.db", "m", 3, None)
    assert derived == transfer._import_key("sqlite:///a.db", "m", 3, None)
    others = {
        transfer._import_key("sqlite:///b.db", "m", 3, None),
        transfer._import_key("sqlite:///a.db", "n", 3, None),
        transfer._import_key("sqlite:///a.db", "m", 4, None),
    }
    assert derived not in others
    assert len(others) == 3


def test_import_report_to_dict_is_json_ready():
    report = ImportReport(created={"m/1": "m/4"}, existing={"m/2": "m/5"}, aliases={"m@p": "m/5"})
    assert json.loads(json.dumps(report.to_dict())) == {
        "created": {"m/1": "m/4"},
        "existing": {"m/2": "m/5"},
        "aliases": {"m@p": "m/5"},
    }


# ============================================================================ verification


def handmade_export(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = {"format": transfer.FORMAT, "source_registry": "x", "files": hashes(root)}
    (root / transfer.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return root


HANDMADE = {
    "models/m/model.json": b'{"name": "m"}',
    "models/m/versions/1/version.json": b'{"name": "m", "version": "1"}',
    "models/m/versions/1/artifacts/weights.bin": b"\x00\x01\x02\x03",
}


def test_verify_export_accepts_an_intact_export_and_returns_its_manifest(tmp_path):
    root = handmade_export(tmp_path / "export", HANDMADE)
    manifest = transfer.verify_export(root)
    assert set(manifest["files"]) == set(HANDMADE)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("modified", "models/m/versions/1/artifacts/weights.bin"),
        ("added", "models/m/versions/1/artifacts/extra.py"),
        ("deleted", "models/m/versions/1/version.json"),
    ],
)
def test_verify_export_names_the_damaged_file(tmp_path, damage, named):
    root = handmade_export(tmp_path / "export", HANDMADE)
    target = root / named
    if damage == "modified":
        data = bytearray(target.read_bytes())
        data[2] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "added":
        target.write_text("print('hi')\n", encoding="utf-8")
    else:
        target.unlink()

    with pytest.raises(ExportIntegrityError) as caught:
        transfer.verify_export(root)
    assert named in str(caught.value)


def test_verify_export_rejects_a_missing_manifest_and_an_unknown_format(tmp_path):
    root = handmade_export(tmp_path / "export", HANDMADE)
    manifest = json.loads((root / transfer.MANIFEST).read_text(encoding="utf-8"))
    (root / transfer.MANIFEST).write_text(json.dumps(manifest | {"format": 99}), encoding="utf-8")
    with pytest.raises(ExportIntegrityError, match="format 99"):
        transfer.verify_export(root)
    (root / transfer.MANIFEST).unlink()
    with pytest.raises(ExportIntegrityError, match=r"manifest\.json"):
        transfer.verify_export(root)


# ============================================================================ export and import


def test_export_refuses_a_directory_that_already_holds_an_export(registry, tmp_path):
    source = registry("source")
    source.create_model("m")
    source.export(["m"], to=tmp_path / "export")
    with pytest.raises(FileExistsError):
        source.export(["m"], to=tmp_path / "export")


def test_a_model_without_versions_is_exported_and_imported(registry, tmp_path):
    source = registry("source")
    source.create_model("empty", description="nothing trained yet", tags={"team": "search"})
    source.create_model("m")
    source.create_version("m", str(artifacts(tmp_path, "m1", model_files(1))))

    target = registry("target")
    report = target.import_(source.export(None, to=tmp_path / "export"))

    assert report.created == {"m/1": "m/1"}
    empty = target.get_model("empty")
    assert (empty.description, dict(empty.tags)) == ("nothing trained yet", {"team": "search"})
    assert version_count(target, "empty") == 0


def test_the_export_of_an_empty_registry_imports_as_nothing(registry, tmp_path):
    export = registry("source").export(None, to=tmp_path / "export")
    target = registry("target")
    report = target.import_(export)
    assert report.to_dict() == {"created": {}, "existing": {}, "aliases": {}}
    assert list(target.search_models()) == []


def test_import_renames_and_shifts_version_numbers_and_remaps_aliases_and_history(
    registry, tmp_path
):
    source = registry("source")
    source.create_model("m", description="a model")
    for n in (1, 2, 3):
        source.create_version("m", str(artifacts(tmp_path, f"m{n}", model_files(n))))
    source.set_alias("m", "prod", 1, reason="first")
    source.promote("m/2", to="prod", reason="better")
    source.set_alias("m", "prod", 3, reason="newest")
    source.rollback("m", "prod", reason="broke")
    source.set_alias("m", "canary", 3)
    source.delete_alias("m", "canary", reason="done")
    stage(source, "m/1", "Archived")
    source.update_version("m/2", description="the good one")
    source.set_tag("m/2", "reviewed", "yes")

    # The target already holds two versions of the model: imported ones become 3, 4 and 5.
    target = registry("target")
    target.create_model("model-b")
    for n in (1, 2):
        target.create_version("model-b", str(artifacts(tmp_path, f"b{n}", model_files(10 + n))))
    export = source.export(["m"], to=tmp_path / "export")
    report = transfer.import_(target, export, rename={"m": "model-b"})

    assert report.created == {"m/1": "model-b/3", "m/2": "model-b/4", "m/3": "model-b/5"}
    assert report.aliases == {"model-b@prod": "model-b/4"}
    mapping = {1: 3, 2: 4, 3: 5}
    src, tgt = source.get_model("m"), target.get_model("model-b")
    assert dict(tgt.aliases) == {a: mapping[v] for a, v in src.aliases.items()} == {"prod": 4}

    def moves(model):
        return [
            (e.alias, e.from_version, e.to_version, e.reason, e.at, e.external)
            for e in lifecycle.history(model)
        ]

    def mapped(v):
        return None if v is None else mapping[v]

    assert moves(tgt) == [
        (alias, mapped(frm), mapped(to), reason, at, external)
        for alias, frm, to, reason, at, external in moves(src)
    ]
    assert len(moves(tgt)) == 6
    # Rollback in the target walks the remapped history, as it would have in the source.
    assert lifecycle.previous_holder(tgt, "prod") == mapping[lifecycle.previous_holder(src, "prod")]
    for n, new in mapping.items():
        old_mv, new_mv = source.get_version("m", n), target.get_version("model-b", new)
        assert json.loads(new_mv.tags[IMPORTED_FROM]) == {
            "registry": source.registry_uri,
            "name": "m",
            "version": n,
        }
        assert {k: v for k, v in new_mv.tags.items() if k != IMPORTED_FROM} == dict(old_mv.tags)
        assert (new_mv.description, new_mv.current_stage) == (
            old_mv.description,
            old_mv.current_stage,
        )
        assert stored_artifacts(target, "model-b", new) == hashes(tmp_path / "sources" / f"m{n}")
    assert target.get_version("model-b", 3).current_stage == "Archived"

    again = transfer.import_(target, export, rename={"m": "model-b"})
    assert (again.created, again.existing) == ({}, report.created)
    assert version_count(target, "model-b") == 5
    assert len(moves(target.get_model("model-b"))) == 6


def test_an_artifact_named_like_the_manifest_is_checked_and_copied_like_any_other(
    registry, tmp_path
):
    files = model_files(1) | {"manifest.json": b'{"layers": 3}'}
    source = registry("source")
    source.create_model("m")
    source.create_version("m", str(artifacts(tmp_path, "m1", files)))

    export = source.export(["m"], to=tmp_path / "export")
    listed = json.loads((export / transfer.MANIFEST).read_text(encoding="utf-8"))["files"]
    nested = "models/m/versions/1/artifacts/manifest.json"
    assert nested in listed
    (export / nested).write_bytes(b'{"layers": 4}')
    with pytest.raises(ExportIntegrityError, match=re.escape(nested)):
        registry("tampered").import_(export)

    target = registry("target")
    copied = source.copy("m/1", to_client=target, alias="prod")
    assert stored_artifacts(target, "m", copied.version) == hashes(tmp_path / "sources" / "m1")


def test_an_import_interrupted_during_an_upload_uploads_everything_when_run_again(
    registry, tmp_path, monkeypatch
):
    source = registry("source")
    source.create_model("m")
    source.create_version("m", str(artifacts(tmp_path, "m1", model_files(1))))
    export = source.export(["m"], to=tmp_path / "export")
    target = registry("target")

    def upload_one_file_then_die(self, run_id, local_dir, artifact_path=None):
        self.log_artifact(run_id, str(Path(local_dir) / "MLmodel"), artifact_path)
        raise ImportInterruptedError

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "log_artifacts", upload_one_file_then_die)
        with pytest.raises(ImportInterruptedError):
            target.import_(export)
    assert version_count(target, "m") == 0

    report = target.import_(export)

    assert report.created == {"m/1": "m/1"}
    assert stored_artifacts(target, "m", 1) == hashes(tmp_path / "sources" / "m1")


def test_an_import_interrupted_before_the_stage_was_set_sets_it_when_run_again(
    registry, tmp_path, monkeypatch
):
    source = registry("source")
    source.create_model("m")
    source.create_version("m", str(artifacts(tmp_path, "m1", model_files(1))))
    stage(source, "m/1", "Production")
    export = source.export(["m"], to=tmp_path / "export")
    target = registry("target")

    def die(*_args, **_kwargs):
        raise ImportInterruptedError

    with monkeypatch.context() as patch:
        patch.setattr(LocalBackend, "transition_stage", die)
        with pytest.raises(ImportInterruptedError):
            target.import_(export)
    assert version_count(target, "m") == 1

    report = target.import_(export)

    assert report.existing == {"m/1": "m/1"}
    assert target.get_version("m/1").current_stage == "Production"


def test_nothing_is_written_when_verification_fails(registry, tmp_path):
    source = registry("source")
    source.create_model("m", tags={"team": "search"})
    for n in (1, 2):
        source.create_version("m", str(artifacts(tmp_path, f"m{n}", model_files(n))))
    export = source.export(["m"], to=tmp_path / "export")
    # The last file the import would reach: everything before it would be written already.
    (export / "models/m/versions/2/artifacts/weights.bin").write_bytes(b"changed")

    target = registry("target")
    with pytest.raises(ExportIntegrityError, match=re.escape("versions/2/artifacts/weights.bin")):
        target.import_(export)

    assert list(target.search_models()) == []
    vanilla = mlflow.MlflowClient(tracking_uri=target.tracking_uri)
    assert [e.name for e in vanilla.search_experiments()] == ["Default"]
    assert_no_artifacts_written(tmp_path)


def test_copy_records_provenance_sets_the_alias_once_and_never_duplicates(registry, tmp_path):
    source = registry("source")
    source.create_model("m")
    for n in (1, 2):
        source.create_version(
            "m",
            str(artifacts(tmp_path, f"m{n}", model_files(n))),
            tags={f"{_tags.METRICS_PREFIX}acc": str(0.5 + n / 10), _tags.GIT_COMMIT: "abc"},
        )
    source.set_alias("m", "staging", 2)
    target = registry("target")

    first = source.copy("m@staging", to_client=target, alias="prod")
    second = source.copy("m@staging", to_client=target, alias="prod")

    assert first.version == second.version == 1
    assert version_count(target, "m") == 1
    assert dict(target.get_model("m").aliases) == {"prod": 1}
    assert json.loads(first.tags[IMPORTED_FROM])["version"] == 2
    assert first.tags[_tags.GIT_COMMIT] == "abc"
    assert stored_artifacts(target, "m", 1) == hashes(tmp_path / "sources" / "m2")

    expected = hashes(tmp_path / "sources" / "m1")
    renamed = source.copy("m/1", to_client=target, name="m-archive")
    assert (renamed.name, renamed.version, renamed.aliases) == ("m-archive", 1, ())
    assert json.loads(renamed.tags[IMPORTED_FROM]) == {
        "registry": source.registry_uri,
        "name": "m",
        "version": 1,
    }
    shutil.rmtree(tmp_path / "sources")  # the copy holds its own files, not links to these
    assert stored_artifacts(target, "m-archive", 1) == expected


# ============================================================================ hostile exports

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- importer's own key, never to be uploaded"


def secret_home(tmp_path: Path) -> Path:
    """A stand-in for the importer's ~/.ssh: a directory holding one secret file."""
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    (home / "id_ed25519").write_bytes(SECRET)
    return home


def assert_no_artifacts_written(tmp_path: Path) -> None:
    """Nothing under ``./mlruns``: MLflow 2's SQL store creates that root, empty, when opened."""
    mlruns = tmp_path / "mlruns"
    written = [p for p in mlruns.rglob("*") if not p.is_dir()] if mlruns.exists() else []
    assert written == []


def reseal(export: Path) -> None:
    """Rewrite the manifest to match the export as it now is, the way a crafted bundle would."""
    manifest = json.loads((export / transfer.MANIFEST).read_text(encoding="utf-8"))
    manifest["files"] = {
        rel: digest for rel, digest in hashes(export).items() if rel != transfer.MANIFEST
    }
    (export / transfer.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def assert_nothing_created(target: rs.RegistryClient, tmp_path: Path) -> None:
    assert list(target.search_models()) == []
    vanilla = mlflow.MlflowClient(tracking_uri=target.tracking_uri)
    assert [e.name for e in vanilla.search_experiments()] == ["Default"]
    assert vanilla.search_runs(["0"]) == []
    assert_no_artifacts_written(tmp_path)


def assert_secret_only_at_home(tmp_path: Path) -> None:
    """No regular file under ``tmp_path`` but the original holds the secret (links are skipped)."""
    holders = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.is_symlink() and SECRET in p.read_bytes()
    ]
    assert holders == [tmp_path / "home" / ".ssh" / "id_ed25519"]


def one_version_export(registry, tmp_path: Path, *, digest: bool = False) -> Path:
    source = registry("source")
    source.create_model("m")
    root = artifacts(tmp_path, "m1", model_files(1))
    tags = _digest.digest_tags(_digest.tree_records(root)) if digest else None
    source.create_version("m", str(root), tags=tags)
    return source.export(["m"], to=tmp_path / "export")


ARTIFACTS_1 = "models/m/versions/1/artifacts"


def test_an_export_whose_artifacts_directory_is_a_symlink_is_refused_and_leaks_nothing(
    registry, tmp_path
):
    export = one_version_export(registry, tmp_path)
    home = secret_home(tmp_path)
    shutil.rmtree(export / ARTIFACTS_1)
    (export / ARTIFACTS_1).symlink_to(home, target_is_directory=True)
    reseal(export)
    target = registry("target")

    with pytest.raises(ExportIntegrityError, match=f"{re.escape(ARTIFACTS_1)} is a symlink"):
        transfer.import_(target, export)

    assert_nothing_created(target, tmp_path)
    assert_secret_only_at_home(tmp_path)


def test_an_export_holding_a_symlink_to_a_file_is_refused_even_when_the_manifest_matches(
    registry, tmp_path
):
    export = one_version_export(registry, tmp_path)
    home = secret_home(tmp_path)
    link = export / ARTIFACTS_1 / "weights.bin"
    link.unlink()
    link.symlink_to(home / "id_ed25519")
    reseal(export)  # as if the author knew the file's sha256: a well-known system file, say
    target = registry("target")

    with pytest.raises(ExportIntegrityError, match=f"{re.escape(ARTIFACTS_1)}/weights.bin"):
        transfer.import_(target, export)

    assert_nothing_created(target, tmp_path)
    assert_secret_only_at_home(tmp_path)


def test_a_fifo_next_to_the_model_files_is_refused(registry, tmp_path):
    export = one_version_export(registry, tmp_path)
    os.mkfifo(export / "models/m/pipe")
    target = registry("target")

    with pytest.raises(ExportIntegrityError, match=re.escape("models/m/pipe")):
        transfer.import_(target, export)

    assert_nothing_created(target, tmp_path)


def test_a_version_directory_that_is_not_a_number_is_refused_before_anything_is_created(
    registry, tmp_path
):
    export = one_version_export(registry, tmp_path)
    (export / "models/m/versions/1").rename(export / "models/m/versions/latest")
    reseal(export)
    target = registry("target")

    with pytest.raises(ExportIntegrityError, match=re.escape("models/m/versions/latest")):
        transfer.import_(target, export)

    assert_nothing_created(target, tmp_path)


@pytest.mark.parametrize(
    "shape",
    [
        "symlinked-model-dir",
        "symlinked-manifest",
        "fifo-in-artifacts",
        "socket-in-artifacts",
        "file-outside-models",
        "directory-for-version-json",
        "leading-zero-version",
        "stray-empty-directory",
    ],
)
def test_verify_export_refuses_what_the_format_does_not_have(tmp_path, shape):
    root = handmade_export(tmp_path / "export", HANDMADE)
    elsewhere = handmade_export(tmp_path / "elsewhere", HANDMADE)
    named = {
        "symlinked-model-dir": "models/m",
        "symlinked-manifest": "manifest.json",
        "fifo-in-artifacts": f"{ARTIFACTS_1}/pipe",
        "socket-in-artifacts": f"{ARTIFACTS_1}/s",
        "file-outside-models": "notes.txt",
        "directory-for-version-json": "models/m/versions/2/version.json",
        "leading-zero-version": "models/m/versions/01",
        "stray-empty-directory": "models/m/versions/1/extra",
    }[shape]
    if shape == "symlinked-model-dir":
        shutil.rmtree(root / "models/m")
        (root / "models/m").symlink_to(elsewhere / "models/m", target_is_directory=True)
    elif shape == "symlinked-manifest":
        (tmp_path / "m.json").write_bytes((root / transfer.MANIFEST).read_bytes())
        (root / transfer.MANIFEST).unlink()
        (root / transfer.MANIFEST).symlink_to(tmp_path / "m.json")
    elif shape == "fifo-in-artifacts":
        os.mkfifo(root / named)
    elif shape == "socket-in-artifacts":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(root / named))
        server.close()
    elif shape == "file-outside-models":
        (root / named).write_bytes(b"hi")
        reseal(root)
    elif shape == "directory-for-version-json":
        (root / named).mkdir(parents=True)
    elif shape == "leading-zero-version":
        (root / "models/m/versions/1").rename(root / named)
        reseal(root)
    else:
        (root / named).mkdir()

    with pytest.raises(ExportIntegrityError) as caught:
        transfer.verify_export(root)
    assert named in str(caught.value)
    assert "missing" not in str(caught.value)  # the reason, not a side effect of it


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (f"{ARTIFACTS_1}/../../../../../secret", r"\.\."),
        ("/etc/passwd", "absolute"),
        (f"{ARTIFACTS_1}\\weights.bin", "backslash"),
        (f"{ARTIFACTS_1}/./weights.bin", "not normalized"),
        (f"{ARTIFACTS_1}//weights.bin", "not normalized"),
        (f"{ARTIFACTS_1}/weights\x00.bin", "NUL"),
    ],
)
def test_verify_export_refuses_a_manifest_path_that_is_not_a_plain_relative_path(
    tmp_path, path, reason
):
    root = handmade_export(tmp_path / "export", HANDMADE)
    (tmp_path / "secret").write_bytes(SECRET)
    manifest = json.loads((root / transfer.MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][path] = hashlib.sha256(SECRET).hexdigest()
    (root / transfer.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ExportIntegrityError, match=reason) as caught:
        transfer.verify_export(root)
    assert repr(path) in str(caught.value)


def test_artifacts_swapped_for_a_symlink_after_verification_are_never_uploaded(
    registry, tmp_path, monkeypatch
):
    export = one_version_export(registry, tmp_path)
    home = secret_home(tmp_path)
    target = registry("target")
    create_model = rs.RegistryClient.create_model

    def swap_then_create(self, *args, **kwargs):
        # The import checked the export already; now someone who can write to it strikes.
        for path in (export / ARTIFACTS_1).iterdir():
            if path.is_file():
                path.unlink()
                path.symlink_to(home / "id_ed25519")
        return create_model(self, *args, **kwargs)

    monkeypatch.setattr(rs.RegistryClient, "create_model", swap_then_create)
    with pytest.raises(ExportIntegrityError, match=re.escape(ARTIFACTS_1)):
        transfer.import_(target, export)

    assert version_count(target, "m") == 0
    assert_secret_only_at_home(tmp_path)


# ============================================================================ recorded digests


def test_exporting_a_version_whose_stored_files_were_tampered_with_fails_without_a_manifest(
    registry, tmp_path
):
    source = registry("source")
    source.create_model("m")
    root = artifacts(tmp_path, "m1", model_files(1))
    source.create_version("m", str(root), tags=_digest.digest_tags(_digest.tree_records(root)))
    (root / "weights.bin").write_bytes(b"swapped in the artifact store")

    with pytest.raises(CacheIntegrityError, match=r"changed: weights\.bin"):
        source.export(["m"], to=tmp_path / "export")
    assert not (tmp_path / "export" / transfer.MANIFEST).exists()

    target = registry("target")
    with pytest.raises(CacheIntegrityError, match=r"changed: weights\.bin"):
        source.copy("m/1", to_client=target, alias="prod")
    assert list(target.search_models()) == []


def test_importing_artifacts_that_differ_from_the_recorded_digest_is_refused(registry, tmp_path):
    export = one_version_export(registry, tmp_path, digest=True)
    pristine = Path(shutil.copytree(export, tmp_path / "pristine"))
    (export / ARTIFACTS_1 / "weights.bin").write_bytes(b"backdoored weights")
    reseal(export)  # the manifest alone cannot tell: it was rewritten too
    target = registry("target")

    with pytest.raises(ExportIntegrityError, match=re.escape(f"{ARTIFACTS_1}/weights.bin")):
        transfer.import_(target, export)
    assert_nothing_created(target, tmp_path)

    report = transfer.import_(target, pristine)
    imported = target.get_version(report.created["m/1"])
    original = json.loads((pristine / "models/m/versions/1/version.json").read_text("utf-8"))
    recorded = {t["key"]: t["value"] for t in original["tags"]}
    assert imported.tags[_digest.DIGEST_TAG] == recorded[_digest.DIGEST_TAG]
    stored = Path(
        mlflow.MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri)
        .get_model_version_download_uri("m", "1")
        .removeprefix("file://")
    )
    assert _digest.check(_digest.tree_records(stored), imported.tags, label="m/1") is True


# ============================================================================ existing target state


def test_an_import_that_would_move_an_existing_alias_is_refused_until_asked_to(registry, tmp_path):
    export = one_version_export(registry, tmp_path)
    target = registry("target")
    target.create_model("m")
    target.create_version("m", str(artifacts(tmp_path, "t1", model_files(7))))
    target.set_alias("m", "prod", 1, reason="serving")
    source_prod = json.loads((export / "models/m/model.json").read_text("utf-8"))
    source_prod["aliases"] = {"prod": 1}
    (export / "models/m/model.json").write_text(json.dumps(source_prod), encoding="utf-8")
    reseal(export)
    before = dict(target.get_model("m").tags)

    with pytest.raises(transfer.ImportConflictError) as caught:
        transfer.import_(target, export)
    message = str(caught.value)
    assert "m@prod" in message
    assert "m/1" in message
    assert "move_aliases=True" in message
    assert "--move-aliases" in message
    assert isinstance(caught.value, rs.AlreadyExistsError)
    assert version_count(target, "m") == 1
    assert dict(target.get_model("m").aliases) == {"prod": 1}
    assert dict(target.get_model("m").tags) == before
    vanilla = mlflow.MlflowClient(tracking_uri=target.tracking_uri)
    assert [e.name for e in vanilla.search_experiments()] == ["Default"]

    report = transfer.import_(target, export, move_aliases=True)

    assert report.created == {"m/1": "m/2"}
    assert dict(target.get_model("m").aliases) == {"prod": 2}
    last = lifecycle.history(target.get_model("m"))[-1]
    assert (last.alias, last.from_version, last.to_version) == ("prod", 1, 2)
    assert lifecycle.previous_holder(target.get_model("m"), "prod") == 1

    # The same export again: prod already holds the version it maps to, so nothing moves.
    again = transfer.import_(target, export)
    assert (again.created, again.existing) == ({}, {"m/1": "m/2"})
    assert dict(target.get_model("m").aliases) == {"prod": 2}


def test_an_alias_moved_in_the_target_after_an_import_is_not_moved_back_by_the_next(
    registry, tmp_path
):
    source = registry("source")
    source.create_model("m")
    for n in (1, 2):
        source.create_version("m", str(artifacts(tmp_path, f"m{n}", model_files(n))))
    source.set_alias("m", "prod", 1)
    export = source.export(["m"], to=tmp_path / "export")
    target = registry("target")
    transfer.import_(target, export)
    target.set_alias("m", "prod", 2, reason="the target's own decision")

    with pytest.raises(transfer.ImportConflictError, match=r"m@prod"):
        transfer.import_(target, export)
    assert dict(target.get_model("m").aliases) == {"prod": 2}


def test_an_import_keeps_the_target_models_own_tags_description_and_stages(registry, tmp_path):
    source = registry("source")
    source.create_model("m", description="from source", tags={"owner": "search", "new": "x"})
    source.create_version("m", str(artifacts(tmp_path, "m1", model_files(1))))
    stage(source, "m/1", "Production")
    export = source.export(["m"], to=tmp_path / "export")

    target = registry("target")
    target.create_model("m", tags={"owner": "platform"})
    transfer.import_(target, export)
    model = target.get_model("m")
    assert (model.tags["owner"], model.tags["new"]) == ("platform", "x")
    assert model.description == "from source"  # the target had none: filled in
    assert target.get_version("m/1").current_stage == "Production"

    target.update_model("m", description="the target's own words")
    stage(target, "m/1", "Archived")
    transfer.import_(target, export)
    assert target.get_model("m").description == "the target's own words"
    assert target.get_version("m/1").current_stage == "Archived"


def test_the_cli_refuses_to_move_aliases_without_the_flag_and_moves_them_with_it(
    registry, tmp_path
):
    source = registry("source")
    source.create_model("m")
    source.create_version("m", str(artifacts(tmp_path, "m1", model_files(1))))
    source.set_alias("m", "prod", 1)
    export = source.export(["m"], to=tmp_path / "export")
    target = registry("target")
    target.create_model("m")
    target.create_version("m", str(artifacts(tmp_path, "t1", model_files(7))))
    target.set_alias("m", "prod", 1)
    uri = target.tracking_uri
    runner = CliRunner()

    refused = runner.invoke(cli, ["--tracking-uri", uri, "import", str(export)])
    assert refused.exit_code == 6, refused.output
    assert "--move-aliases" in refused.output
    assert version_count(target, "m") == 1

    moved = runner.invoke(cli, ["--tracking-uri", uri, "import", str(export), "--move-aliases"])
    assert moved.exit_code == 0, moved.output
    assert "alias    m@prod -> m/2" in moved.stdout
    assert dict(target.get_model("m").aliases) == {"prod": 2}


def test_export_refuses_a_directory_that_holds_other_files(registry, tmp_path):
    source = registry("source")
    source.create_model("m")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "train.py").write_text("print('hi')\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not empty"):
        source.export(["m"], to=tmp_path / "project")
    assert not (tmp_path / "project" / transfer.MANIFEST).exists()

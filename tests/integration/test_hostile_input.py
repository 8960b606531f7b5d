"""Hostile model names and aliases, and a tampered cache, against the production shape.

* Names and aliases crafted to escape the cache directory (``../``, absolute paths, NUL,
  over-long names, separators of other systems) are refused before any request is sent.
* Names that only *look* like paths (fullwidth dots and solidus, the division slash U+2215,
  percent-escapes, the cache's own escape form, device names, 256 characters) are valid in
  MLflow: they register, load and predict, each in its own directory inside the cache, and
  nothing is written outside the cache (the parent directory is snapshotted before and after).
* Everything the cache holds is private to the user: directories 0700, files 0600.
* A cache entry that does not match its manifest (a changed file, a file replaced by a
  symlink, a missing file, a fast-load form swapped for a malicious pickle, an unreadable
  manifest, a manifest forged to match planted files) is never loaded: fetched again when
  online, refused when offline.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import registry_sdk as rs
from registry_sdk._cache import FAST, MANIFEST, sha256_file
from registry_sdk.loading import cache_for
from registry_sdk.refs import parse_ref, validate_alias, validate_model_name

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Fixtures ``production`` and ``auth_server`` (helpers are imported inside functions).
pytest_plugins = ["_production"]
pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

#: Names that would escape the cache, or that no registry should accept: refused locally.
REFUSED_NAMES = {
    "parent": "../evil",
    "parents": "../../../../etc/passwd",
    "absolute": "/etc/passwd",
    "inner-parent": "ok/../../evil",
    "dot": ".",
    "dot-dot": "..",
    "nul": "evil\x00name",
    "nul-then-parent": "\x00../evil",
    "too-long": "x" * 257,
    "too-long-unicode": "\u00e9" * 257,
    "backslash": "..\\..\\evil",
    "windows-drive": "C:\\Windows\\evil",
    "colon": "a:b",
    "newline": "evil\nname",
    "leading-space": " evil",
    "zero-width-space": "e\u200bvil",
    "right-to-left-override": "evil\u202etxt.exe",
    "ideographic-space": "evil\u3000name",
}
#: Aliases that would escape ``refs/`` (or are not aliases): refused locally.
REFUSED_ALIASES = {
    "parent": "../prod",
    "dot-dot": "..",
    "slash": "a/b",
    "absolute": "/prod",
    "nul": "prod\x00",
    "fullwidth-dots": "\uff0e\uff0e",
    "division-slash": "\u2215prod",
    "too-long": "p" * 256,
    "newline": "prod\n",
    "empty": "",
    "version-like": "v7",
    "latest": "latest",
    "space": "pr od",
}
#: Names MLflow accepts that only look dangerous: they must stay inside the cache.
ACCEPTED_NAMES = {
    "fullwidth-dots-and-slash": "\uff0e\uff0e\uff0f\uff0e\uff0e\uff0fetc",
    "division-slash": "\u2215etc\u2215passwd",
    "fraction-slash": "\u2044tmp\u2044evil",
    "one-dot-leaders": "\u2024\u2024",
    "percent-escapes": "%2e%2e%2fetc%2fpasswd",
    "cache-escape-form": "+2E+2E+2Fetc",
    "dot-prefixed": ".hidden",
    "trailing-dot": "evil.",
    "no-trailing-dot": "evil",  # Windows would take "evil." for "evil"
    "capitals": "Hostile",
    "lower-case": "hostile",  # macOS and Windows would take "Hostile" for "hostile"
    "windows-device": "CON",
    "home": "~root",
    "shell-variable": "$HOME",
    "max-length-ascii": "a" * 256,
    "max-length-unicode": "\u00e9" * 256,
    "max-length-fullwidth": "\uff0e\uff0f" * 128,
}


def _snapshot(root: Path, *, skip: Path) -> dict[str, tuple[int, int] | str]:
    """Every path under ``root`` but ``skip`` (and what is under it).

    Files map to (size, mtime), folders to "dir": a folder's own mtime changes when ``skip``
    is created in it, which is allowed.
    """
    out: dict[str, tuple[int, int] | str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d != skip]
        out.update({str(here / d): "dir" for d in dirs})
        for name in files:
            st = (here / name).lstat()
            out[str(here / name)] = (st.st_size, st.st_mtime_ns)
    return out


def _tree(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            yield Path(folder) / name


@dataclass
class Registry:
    uri: str
    base: rs.ModelVersion
    X: Any

    def client(self, cache: Path, **kwargs: Any) -> rs.RegistryClient:
        options = {"timeout": 60, "max_retries": 3, **kwargs}
        return rs.RegistryClient(self.uri, registry_uri=self.uri, cache_dir=cache, **options)


@pytest.fixture(scope="module")
def registry(production, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A base version (a model predicting 5 everywhere), then one version of every odd name."""
    from _production import make_trainer, training_data

    setup = tmp_path_factory.mktemp("hostile-setup")
    X, y = training_data()
    with rs.RegistryClient(production.uri, cache_dir=setup, timeout=60, max_retries=3) as admin:
        train = make_trainer(f"hostile-base-{uuid.uuid4().hex[:6]}", admin)
        train(X, y, 5)
        base = train.last_version
        assert base is not None
        for name in ACCEPTED_NAMES.values():
            admin.create_model(name, exist_ok=True)
            made = admin.create_version(
                name,
                base.source,
                run_id=base.run_id,
                model_id=base.source.removeprefix("models:/"),
            )
            admin.set_alias(name, "prod", made.version)
    return Registry(production.uri, base, X)


@pytest.fixture
def dead_client(tmp_path: Path) -> Iterator[rs.RegistryClient]:
    """A client whose registry does not exist: a request would fail with 'unavailable'."""
    from _production import free_port

    with rs.RegistryClient(
        f"http://127.0.0.1:{free_port()}",
        cache_dir=tmp_path / "work" / "cache",
        timeout=2,
        max_retries=0,
    ) as client:
        yield client


# ================================================================== refused before any request


@pytest.mark.parametrize("name", REFUSED_NAMES.values(), ids=REFUSED_NAMES.keys())
def test_a_name_that_could_escape_is_refused_before_any_request(name, dead_client, tmp_path):
    from _production import make_trainer

    before = _snapshot(tmp_path, skip=tmp_path / "nothing")
    with pytest.raises(rs.InvalidReferenceError):
        validate_model_name(name)
    for ref in (f"{name}@prod", f"{name}/1", f"models:/{name}@latest", f"{name}/Production"):
        with pytest.raises(rs.InvalidReferenceError):
            parse_ref(ref)
        # Invalid, not "unavailable": refused before the (dead) registry was contacted.
        with pytest.raises(rs.InvalidReferenceError):
            dead_client.load_model(ref)
        with pytest.raises(rs.InvalidReferenceError):
            dead_client.pull(ref)
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.create_model(name)
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.get_version(name, 1)
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.set_alias(name, "prod", 1)
    with pytest.raises(rs.InvalidReferenceError):
        make_trainer(name, dead_client)
    assert _snapshot(tmp_path, skip=tmp_path / "nothing") == before  # nothing written anywhere


@pytest.mark.parametrize("alias", REFUSED_ALIASES.values(), ids=REFUSED_ALIASES.keys())
def test_an_alias_that_could_escape_is_refused_before_any_request(alias, dead_client, tmp_path):
    from _production import make_trainer

    before = _snapshot(tmp_path, skip=tmp_path / "nothing")
    with pytest.raises(rs.InvalidReferenceError):
        validate_alias(alias)
    if alias.lower() != "latest":  # "m@latest" is the newest version, a valid reference
        with pytest.raises(rs.InvalidReferenceError):
            parse_ref(f"model@{alias}")
        with pytest.raises(rs.InvalidReferenceError):
            dead_client.load_model(f"model@{alias}")
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.set_alias("model", alias, 1)
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.delete_alias("model", alias)
    with pytest.raises(rs.InvalidReferenceError):
        dead_client.promote("model/1", to=alias)
    with pytest.raises(rs.InvalidReferenceError):
        make_trainer("model", dead_client, alias=alias)
    assert _snapshot(tmp_path, skip=tmp_path / "nothing") == before


# ================================================================== odd but valid names


def test_names_that_look_like_paths_load_inside_the_cache_and_nowhere_else(registry, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sentinel.txt").write_text("outside the cache", encoding="utf-8")
    cache = work / "cache"  # created by the SDK
    before = _snapshot(tmp_path, skip=cache)
    with registry.client(cache) as client:
        for name in ACCEPTED_NAMES.values():
            model = client.load_model(f"{name}@prod")
            assert np.all(model.predict(registry.X) == 5.0), name
            assert model.version.name == name
            pulled = client.pull(f"models:/{name}/{model.version.version}").resolve()
            assert pulled.is_relative_to(cache.resolve()), (name, pulled)
        store = cache_for(client)
        model_dirs = {name: store.model_dir(name) for name in ACCEPTED_NAMES.values()}
        # Offline, the recorded resolutions are enough: same versions, no network.
        offline = client.with_offline(offline=True)
        for name in ACCEPTED_NAMES.values():
            assert np.all(offline.load_model(f"{name}@prod").predict(registry.X) == 5.0)
    assert _snapshot(tmp_path, skip=cache) == before
    for name, folder in model_dirs.items():
        assert folder.parent == store.base, name  # one level below the registry's folder
        assert folder.name not in {".", ".."}
        assert os.sep not in folder.name
        assert len(folder.name.encode()) <= 255  # a single component any file system takes
        assert folder.is_dir()
    assert len(set(model_dirs.values())) == len(model_dirs)  # no two names share a folder
    # ...not even on a case-insensitive file system (macOS, Windows), nor one that drops a
    # trailing dot (Windows).
    folded = {folder.name.casefold().rstrip(".") for folder in model_dirs.values()}
    assert len(folded) == len(model_dirs)
    assert not [p for p in _tree(cache) if p.is_symlink()]


def test_everything_in_the_cache_is_private_to_the_user(registry, tmp_path):
    cache = tmp_path / "fresh" / "cache"
    with registry.client(cache) as client:
        for name in list(ACCEPTED_NAMES.values())[:3]:
            client.load_model(f"{name}@prod")
            client.load_model(f"{name}@prod")  # the second load writes nothing new
        assert client.cached_versions()
    loose = []
    for path in [cache, *_tree(cache)]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode != wanted:
            loose.append((str(path.relative_to(tmp_path)), oct(mode)))
    assert not loose


# ================================================================== entries that do not verify


@pytest.fixture
def filled(registry, tmp_path) -> Iterator[tuple[rs.RegistryClient, Path]]:
    """A client whose cache holds the base version, loaded twice (so with its fast form)."""
    with registry.client(tmp_path / "cache") as client:
        ref = registry.base.ref
        client.load_model(ref)
        client.load_model(ref)
        entry = cache_for(client).get(registry.base.name, registry.base.version)
        assert entry is not None
        assert entry.fast is not None
        yield client, entry.path


def _load(client: rs.RegistryClient, registry: Registry, *, offline: bool) -> Any:
    return rs.load_model(registry.base.ref, client=client, offline=offline)


def _flip(path: Path, *, keep_mtime: bool) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _biggest_artifact(entry_path: Path) -> Path:
    files = [p for p in (entry_path / "artifacts").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def _changed(path: Path, *_: Path) -> None:
    _flip(path, keep_mtime=False)


def _changed_keeping_size_and_mtime(path: Path, *_: Path) -> None:
    _flip(path, keep_mtime=True)


def _replaced_keeping_size_and_mtime(path: Path, outside: Path) -> None:
    before = path.stat()
    forged = outside / "forged"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    forged.write_bytes(bytes(data))
    os.utime(forged, ns=(before.st_atime_ns, before.st_mtime_ns))
    forged.chmod(0o600)
    shutil.move(forged, path)  # a new inode under the old name, same size and mtime


def _planted_beside(path: Path, *_: Path) -> None:
    (path.parent / "sitecustomize.py").write_text("import os\n", encoding="utf-8")


def _symlinked(path: Path, outside: Path) -> None:
    decoy = outside / "decoy"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # same size, other content
    decoy.write_bytes(bytes(data))
    path.unlink()
    path.symlink_to(decoy)


def _removed(path: Path, *_: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    "tamper",
    [
        _changed,
        _changed_keeping_size_and_mtime,
        _replaced_keeping_size_and_mtime,
        _planted_beside,
        _symlinked,
        _removed,
    ],
    ids=[
        "changed",
        "changed-same-size-and-mtime",
        "replaced-same-size-and-mtime",
        "file-planted-beside",
        "symlink-outside",
        "removed",
    ],
)
def test_an_artifact_that_does_not_match_the_manifest_is_never_loaded(
    registry, filled, tmp_path, tamper
):
    client, entry_path = filled
    outside = tmp_path / "outside"
    outside.mkdir()
    tamper(_biggest_artifact(entry_path), outside)
    with pytest.raises(rs.CacheIntegrityError, match="do not match"):
        _load(client, registry, offline=True)
    model = _load(client, registry, offline=False)  # online: fetched again, whole
    assert np.all(model.predict(registry.X) == 5.0)
    assert client.verify_cache() == {}
    assert not _biggest_artifact(entry_path).is_symlink()


class _Planted:
    """Unpickling this creates a marker directory: proof that the pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def test_a_fast_form_swapped_for_another_pickle_is_never_unpickled(registry, filled, tmp_path):
    client, entry_path = filled
    native = entry_path / FAST / "native.pkl"
    marker = tmp_path / "planted-pickle-ran"
    payload = pickle.dumps(_Planted(marker), protocol=5)
    original = native.stat()
    assert len(payload) <= original.st_size
    # Same size and mtime: only the change time (moved by the write) or a hash can tell.
    native.write_bytes(payload + b"\x00" * (original.st_size - len(payload)))
    os.utime(native, ns=(original.st_atime_ns, original.st_mtime_ns))
    assert native.stat().st_mtime_ns == original.st_mtime_ns
    with pytest.raises(rs.CacheIntegrityError, match="do not match"):
        _load(client, registry, offline=True)
    assert not marker.exists()
    # The full check names the file; online, the entry is fetched again whole.
    assert client.verify_cache() == {registry.base.ref: [f"{FAST}/native.pkl"]}
    assert np.all(_load(client, registry, offline=False).predict(registry.X) == 5.0)
    assert np.all(_load(client, registry, offline=False).predict(registry.X) == 5.0)
    assert not marker.exists()
    assert client.verify_cache() == {}


def test_an_unreadable_manifest_makes_the_entry_absent(registry, filled):
    client, entry_path = filled
    (entry_path / MANIFEST).write_text('{"format": 1, "files": {', encoding="utf-8")
    with pytest.raises(rs.OfflineError, match="not in the cache"):
        _load(client, registry, offline=True)
    assert np.all(_load(client, registry, offline=False).predict(registry.X) == 5.0)
    assert client.verify_cache() == {}


def test_a_manifest_whose_records_are_forged_is_refused(registry, filled, tmp_path):
    """Records rewritten to match a planted pickle (hashes included) are not sealed by our key."""
    client, entry_path = filled
    native = entry_path / FAST / "native.pkl"
    marker = tmp_path / "planted-pickle-ran"
    native.write_bytes(pickle.dumps(_Planted(marker), protocol=5))
    manifest = json.loads((entry_path / MANIFEST).read_text(encoding="utf-8"))
    st = native.stat()
    planted = sha256_file(native)
    manifest["files"][f"{FAST}/native.pkl"] = {
        "sha256": planted,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }
    manifest["fast"]["sha256"] = planted
    (entry_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(rs.CacheIntegrityError, match="seal does not match"):
        _load(client, registry, offline=True)
    assert not marker.exists()
    assert client.verify_cache() == {registry.base.ref: [MANIFEST]}
    # Online, the forged entry is replaced by a fresh, verified one; the pickle never runs.
    assert np.all(_load(client, registry, offline=False).predict(registry.X) == 5.0)
    assert np.all(_load(client, registry, offline=False).predict(registry.X) == 5.0)
    assert not marker.exists()
    assert client.verify_cache() == {}

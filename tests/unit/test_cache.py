"""The on-disk model cache (registry_sdk._cache), without a server.

What is proven here: path escaping is injective and can never leave the cache; a fill is all
or nothing, whatever the download does; concurrent fills download once; the cheap and the full
checks catch what they claim; pruning keeps the newest versions and every alias target; and
everything written is private to the user.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from registry_sdk import CacheIntegrityError, ModelVersion, _digest
from registry_sdk._cache import (
    ARTIFACTS,
    FAST,
    KEY_FILE,
    MANIFEST,
    FileRecord,
    ModelCache,
    _escape,
    _seal,
    canonical_registry_uri,
    registry_id,
    sha256_file,
)

REGISTRY = "http://127.0.0.1:5000"
FILES = {"MLmodel": b"flavors: {}\n", "model.bin": bytes(range(256)) * 40, "sub/dir/x.txt": b"x"}


def mv(name: str = "m", version: int = 1) -> ModelVersion:
    return ModelVersion.from_json({"name": name, "version": str(version)})


def writer(files: dict[str, bytes] = FILES, calls: list[Path] | None = None):
    """A ``download(dest)`` that writes ``files`` under ``dest`` and records each call."""

    def download(dest: Path) -> None:
        if calls is not None:
            calls.append(dest)
        for rel, content in files.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    return download


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache", REGISTRY)


def flip_byte(path: Path, offset: int = 0, *, keep_mtime: bool = False) -> None:
    """Rewrite ``path`` with one byte changed (same size); optionally restore its mtime."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif path.stat().st_mtime_ns == before.st_mtime_ns:  # a coarse clock: within one tick
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def leftovers(cache: ModelCache, name: str = "m") -> list[str]:
    """Names in a model's versions directory other than complete versions and lock files."""
    versions = cache.model_dir(name) / "versions"
    if not versions.is_dir():
        return []
    return sorted(p.name for p in versions.iterdir() if not p.name.endswith(".lock"))


# ====================================================================== escaping

HOSTILE = [
    "",
    ".",
    "..",
    "...",
    "../../etc/passwd",
    "/abs",
    "a/b",
    "a\\b",
    "C:\\x",
    "nul\x00byte",
    ".hidden",
    "%2E%2E",
    "%2e",
    "_",
    "~",
    "con",
    "a" * 500,
    "é" * 300,
    "\u202e\u200b",
    "line\nbreak",
]


def assert_safe_component(escaped: str, base: Path) -> None:
    assert escaped
    assert escaped not in {".", ".."}
    assert not escaped.startswith(".")  # never hidden, never a relative step
    assert "/" not in escaped
    assert "\\" not in escaped
    assert "%" not in escaped  # MLflow's loaders would decode %XX in a local path
    assert escaped.isascii()
    assert escaped.isprintable()
    assert len(escaped.encode()) <= 255  # one component on every common filesystem
    joined = base / escaped
    assert joined.parent == base
    assert joined.name == escaped
    assert os.path.normpath(joined) == str(joined)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_escape_of_hostile_strings_is_one_safe_component(hostile, tmp_path):
    assert_safe_component(_escape(hostile), tmp_path)


def test_escape_of_hostile_strings_is_injective():
    escaped = [_escape(s) for s in HOSTILE]
    assert len(set(escaped)) == len(HOSTILE)


@given(st.text())
def test_escape_is_a_safe_component_for_any_string(text):
    assert_safe_component(_escape(text), Path("/cache/base"))


@given(st.lists(st.text(), unique=True, max_size=20))
def test_escape_is_injective_on_any_strings(texts):
    assert len({_escape(t) for t in texts}) == len(texts)


@given(st.lists(st.text(st.characters(exclude_categories=())), unique=True, max_size=20))
def test_escape_handles_lone_surrogates(texts):
    # JSON can carry lone surrogates ("\ud800"); they must neither crash nor collide.
    escaped = [_escape(t) for t in texts]
    assert len(set(escaped)) == len(texts)
    for e in escaped:
        assert_safe_component(e, Path("/cache/base"))


# A name chosen to look like the escaped form of another name must not land in its directory.
# The long names exercise the shortening of long components (a prefix plus a digest).
@hypothesis_settings(max_examples=300)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="ab-_.%", min_size=100, max_size=400),
        st.text(min_size=100, max_size=400),
    )
)
@example("a" * 200)
@example("")
@example("." + "b" * 150)
def test_the_escaped_form_of_a_string_never_escapes_to_the_same_form(text):
    escaped = _escape(text)
    other = escaped  # another (valid-looking) name, spelled exactly like the escaped one
    if other != text:
        assert _escape(other) != escaped


@given(st.text(alphabet="a-", min_size=110, max_size=140), st.text(alphabet="a-", max_size=3))
def test_long_strings_with_a_common_prefix_stay_distinct(prefix, tail):
    assert _escape(prefix) != _escape(prefix + tail) or tail == ""


def test_registry_id_is_a_safe_component_without_credentials(tmp_path):
    rid = registry_id("https://alice:s3cr3t@registry.example.com:8443/mlflow")
    assert_safe_component(rid, tmp_path)
    assert "s3cr3t" not in rid
    assert registry_id("http://127.0.0.1:5000") != registry_id("http://127.0.0.1:5001")


def test_versions_and_refs_of_hostile_names_stay_inside_the_cache(tmp_path):
    root = tmp_path / "inner" / "cache"
    cache = ModelCache(root, REGISTRY)
    for n, name in enumerate(["../../x", "..", ".", "a/../../b", "%2E%2E", "\\..\\y"], start=1):
        cache.fill(mv(name, n), writer())
        cache.remember(name, "../../alias", n)
        assert cache.recall(name, "../../alias") is not None
    # Nothing next to the cache; everything inside it, with no link leading out.
    assert sorted(p.name for p in (tmp_path / "inner").iterdir()) == ["cache"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner"]
    for path in root.rglob("*"):
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(root.resolve())
    assert len(list(cache.versions())) == 6


# ====================================================================== fill


def test_fill_writes_a_complete_verified_entry(cache):
    entry = cache.fill(mv(), writer())
    assert entry.path == cache.version_dir("m", 1)
    assert entry.version.ref == "m/1"
    assert sorted(entry.files) == sorted(f"{ARTIFACTS}/{rel}" for rel in FILES)
    for rel, content in FILES.items():
        record = entry.files[f"{ARTIFACTS}/{rel}"]
        assert (entry.artifacts / rel).read_bytes() == content
        assert record.size == len(content)
        assert record.sha256 == sha256_file(entry.artifacts / rel)
    assert entry.check() == []
    assert entry.check(full=True) == []
    assert cache.get("m", 1) == entry
    assert leftovers(cache) == ["1"]


class BoomError(Exception):
    pass


@pytest.mark.parametrize("error", [BoomError("network died"), KeyboardInterrupt()])
def test_fill_is_all_or_nothing_when_the_download_raises(cache, error):
    def half_then_raise(dest: Path) -> None:
        dest.mkdir(parents=True)
        (dest / "MLmodel").write_bytes(b"half a model")
        raise error

    with pytest.raises(type(error)) as raised:
        cache.fill(mv(), half_then_raise)
    assert raised.value is error
    assert cache.get("m", 1) is None
    assert not cache.version_dir("m", 1).exists()
    assert leftovers(cache) == []  # the temporary directory is gone too
    assert list(cache.versions()) == []
    # The lock was released: the next fill works.
    assert cache.fill(mv(), writer()).check() == []


def test_fill_that_raises_leaves_a_previous_corrupt_entry_for_a_later_repair(cache):
    entry = cache.fill(mv(), writer())
    flip_byte(entry.artifacts / "model.bin")

    def fail(_dest: Path) -> None:
        raise BoomError

    with pytest.raises(BoomError):
        cache.fill(mv(), fail)
    assert leftovers(cache) == ["1"]
    calls: list[Path] = []
    repaired = cache.fill(mv(), writer(calls=calls))
    assert len(calls) == 1
    assert repaired.check(full=True) == []
    assert (repaired.artifacts / "model.bin").read_bytes() == FILES["model.bin"]


def test_a_leftover_temporary_directory_is_invisible_and_harmless(cache):
    versions = cache.model_dir("m") / "versions"
    tmp = versions / ".tmp-1-deadbeef"
    (tmp / ARTIFACTS).mkdir(parents=True)
    (tmp / ARTIFACTS / "MLmodel").write_bytes(b"killed halfway")
    assert cache.get("m", 1) is None
    assert list(cache.versions()) == []
    entry = cache.fill(mv(), writer())
    assert entry.check(full=True) == []
    assert [e.version.ref for e in cache.versions()] == ["m/1"]


def test_fill_of_a_cached_version_does_not_download_again(cache):
    calls: list[Path] = []
    first = cache.fill(mv(), writer(calls=calls))
    second = cache.fill(mv(), writer(calls=calls))
    assert len(calls) == 1
    assert second == first


def test_fill_replaces_a_corrupt_entry(cache):
    calls: list[Path] = []
    entry = cache.fill(mv(), writer(calls=calls))
    flip_byte(entry.artifacts / "model.bin", 100)
    assert entry.check() == [f"{ARTIFACTS}/model.bin"]
    repaired = cache.fill(mv(), writer(calls=calls))
    assert len(calls) == 2
    assert repaired.check(full=True) == []
    assert leftovers(cache) == ["1"]


def test_concurrent_fills_from_threads_download_once(cache):
    calls: list[Path] = []
    calls_lock = threading.Lock()
    inside = threading.Event()

    def slow_download(dest: Path) -> None:
        with calls_lock:
            calls.append(dest)
        inside.set()
        # Hold the lock a while so the other threads pile up behind it (not a timed check).
        threading.Event().wait(0.3)
        writer()(dest)

    barrier = threading.Barrier(8)
    results: list[object] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(cache.fill(mv(), slow_download))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert inside.is_set()
    assert len(results) == 8
    assert all(not isinstance(r, BaseException) for r in results), results
    assert len(calls) == 1
    assert {r.path for r in results} == {cache.version_dir("m", 1)}  # type: ignore[attr-defined]
    assert leftovers(cache) == ["1"]


# ====================================================================== reading and checking


def test_check_catches_a_rewritten_file_by_its_mtime_and_hash(cache):
    entry = cache.fill(mv(), writer())
    flip_byte(entry.artifacts / "model.bin", 7)
    assert entry.check() == [f"{ARTIFACTS}/model.bin"]
    assert entry.check(full=True) == [f"{ARTIFACTS}/model.bin"]


def test_the_cheap_check_catches_a_flip_that_kept_size_and_mtime(cache):
    entry = cache.fill(mv(), writer())
    flip_byte(entry.artifacts / "model.bin", 7, keep_mtime=True)
    # Putting the mtime back cannot put the change time back: the write moved it.
    assert entry.check() == [f"{ARTIFACTS}/model.bin"]
    assert entry.check(full=True) == [f"{ARTIFACTS}/model.bin"]


def test_the_cheap_check_catches_a_file_replaced_with_the_same_size_and_times(cache):
    entry = cache.fill(mv(), writer())
    target = entry.artifacts / "model.bin"
    before = target.stat()
    forged = target.with_name("forged")
    data = bytearray(target.read_bytes())
    data[0] ^= 0xFF
    forged.write_bytes(bytes(data))
    forged.chmod(0o600)
    os.utime(forged, ns=(before.st_atime_ns, before.st_mtime_ns))
    forged.replace(target)  # a new inode under the old name
    assert entry.check() == [f"{ARTIFACTS}/model.bin"]


def test_a_copied_entry_is_hashed_once_then_trusted_by_its_new_stat_fields(cache):
    entry = cache.fill(mv(), writer())
    target = entry.artifacts / "model.bin"
    copy = target.with_name("copy")
    copy.write_bytes(target.read_bytes())
    copy.chmod(0o600)
    copy.replace(target)  # same content, new inode: hashed, found equal, not bad
    bad, moved = entry.check_detail()
    assert bad == []
    assert moved == [f"{ARTIFACTS}/model.bin"]
    refreshed = cache.rewrite(
        entry,
        files={rel: FileRecord.of(entry.path / rel, entry.files[rel].sha256) for rel in moved},
    )
    assert refreshed.check_detail() == ([], [])


def test_a_file_planted_next_to_the_model_is_caught(cache):
    entry = cache.fill(mv(), writer())
    (entry.artifacts / "code").mkdir()
    (entry.artifacts / "code" / "evil.py").write_text("import os")
    assert entry.check() == [f"{ARTIFACTS}/code/evil.py"]


def test_a_consistently_forged_manifest_is_refused(cache):
    """Records rewritten to match a planted file are refused: they are not sealed by our key."""
    entry = cache.fill(mv(), writer())
    target = entry.artifacts / "model.bin"
    target.write_bytes(b"planted")
    manifest = entry.path / MANIFEST
    data = json.loads(manifest.read_text(encoding="utf-8"))
    st = target.stat()
    data["files"][f"{ARTIFACTS}/model.bin"] = {
        "sha256": sha256_file(target),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
    }
    manifest.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CacheIntegrityError, match="seal does not match"):
        cache.get("m", 1)
    # The forged entry is absent to listings and is replaced whole by the next fill.
    assert list(cache.versions()) == []
    calls: list[Path] = []
    refilled = cache.fill(mv(), writer(calls=calls))
    assert len(calls) == 1
    assert (refilled.artifacts / "model.bin").read_bytes() == FILES["model.bin"]


def test_an_entry_copied_from_another_cache_is_refused(tmp_path):
    mine = ModelCache(tmp_path / "mine", REGISTRY)
    theirs = ModelCache(tmp_path / "theirs", REGISTRY)
    entry = theirs.fill(mv(), writer())
    target = mine.version_dir("m", 1)
    target.parent.mkdir(parents=True)
    shutil.copytree(entry.path, target)
    assert mine.key != theirs.key
    with pytest.raises(CacheIntegrityError, match="seal does not match"):
        mine.get("m", 1)


def test_the_cache_key_is_private_and_never_read_through_a_symlink(tmp_path):
    cache = ModelCache(tmp_path / "c", REGISTRY)
    cache.fill(mv(), writer())
    key = tmp_path / "c" / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"k" * 32)
    key.symlink_to(elsewhere)
    with pytest.raises(CacheIntegrityError, match="cannot be read safely"):
        ModelCache(tmp_path / "c", REGISTRY).get("m", 1)


def test_a_cache_directory_others_may_write_to_is_refused(tmp_path):
    root = tmp_path / "shared"
    root.mkdir(mode=0o700)
    root.chmod(0o777)
    with pytest.raises(CacheIntegrityError, match="writable by other users"):
        ModelCache(root, REGISTRY)
    root.chmod(0o755)  # readable by others is the user's choice; writable is not
    ModelCache(root, REGISTRY)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_a_cache_directory_of_another_user_is_refused(tmp_path):
    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    os.chown(root, 12345, 12345)
    with pytest.raises(CacheIntegrityError, match="belongs to uid 12345"):
        ModelCache(root, REGISTRY)


def test_two_projects_with_relative_sqlite_uris_do_not_share_a_cache(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    project_a = ModelCache(tmp_path / "cache", "sqlite:///mlflow.db")
    project_a.fill(mv("churn", 1), writer({"MLmodel": b"a"}))
    monkeypatch.chdir(tmp_path / "b")
    project_b = ModelCache(tmp_path / "cache", "sqlite:///mlflow.db")
    assert project_b.base != project_a.base
    assert project_b.get("churn", 1) is None
    assert canonical_registry_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'b'}/mlflow.db"
    assert canonical_registry_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert canonical_registry_uri("file:mlruns") == f"file:{tmp_path / 'b' / 'mlruns'}"
    assert canonical_registry_uri("http://h:5000") == "http://h:5000"


def test_an_entry_of_a_deleted_and_recreated_version_is_filled_again(cache):
    cache.fill(mv(), writer({"MLmodel": b"old"}))
    recreated = ModelVersion.from_json(
        {"name": "m", "version": "1", "creation_timestamp": 1_700_000_000_000, "run_id": "r2"}
    )
    calls: list[Path] = []
    entry = cache.fill(recreated, writer({"MLmodel": b"new"}, calls=calls))
    assert len(calls) == 1
    assert (entry.artifacts / "MLmodel").read_bytes() == b"new"
    assert entry.version.run_id == "r2"


def test_a_fill_whose_artifacts_do_not_match_the_recorded_digest_caches_nothing(cache, tmp_path):
    registered = tmp_path / "registered"
    for rel, content in FILES.items():
        (registered / rel).parent.mkdir(parents=True, exist_ok=True)
        (registered / rel).write_bytes(content)
    tags = _digest.digest_tags(_digest.tree_records(registered))
    sealed = ModelVersion.from_json(
        {"name": "m", "version": "1", "tags": [{"key": k, "value": v} for k, v in tags.items()]}
    )
    replaced = {**FILES, "model.bin": b"\x00" * len(FILES["model.bin"])}

    def verify(records):
        return _digest.check(records, sealed.tags, label=sealed.ref)

    with pytest.raises(CacheIntegrityError, match=r"changed: model\.bin"):
        cache.fill(sealed, writer(replaced), verify=verify)
    assert cache.get("m", 1) is None
    assert leftovers(cache) == []
    entry = cache.fill(sealed, writer(), verify=verify)
    assert entry.digest_verified
    assert entry.digest == tags[_digest.DIGEST_TAG]


def test_check_catches_a_size_change_and_a_missing_file(cache):
    entry = cache.fill(mv(), writer())
    target = entry.artifacts / "MLmodel"
    before = target.stat()
    target.write_bytes(b"x")
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    (entry.artifacts / "sub" / "dir" / "x.txt").unlink()
    assert entry.check() == [f"{ARTIFACTS}/MLmodel", f"{ARTIFACTS}/sub/dir/x.txt"]


def test_get_refuses_an_incomplete_manifest_and_ignores_an_unreadable_one(cache):
    entry = cache.fill(mv(), writer())
    manifest = entry.path / MANIFEST
    data = json.loads(manifest.read_text(encoding="utf-8"))
    del data["files"]
    del data["hmac"]
    data["hmac"] = _seal(cache.key, data)  # our own key: only the shape is wrong
    manifest.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(CacheIntegrityError, match="m/1"):
        cache.get("m", 1)
    manifest.write_text("{ not json", encoding="utf-8")
    assert cache.get("m", 1) is None


def test_a_manifest_that_is_not_json_hides_only_its_own_version(cache):
    cache.fill(mv("m", 1), writer())
    cache.fill(mv("m", 2), writer())
    (cache.version_dir("m", 1) / MANIFEST).write_text("{ not json", encoding="utf-8")
    assert [e.version.ref for e in cache.versions()] == ["m/2"]
    calls: list[Path] = []
    assert cache.fill(mv("m", 1), writer(calls=calls)).check(full=True) == []
    assert len(calls) == 1
    assert [e.version.ref for e in cache.versions()] == ["m/1", "m/2"]


# ====================================================================== the fast-load form


def fast_writer(calls: list[Path] | None = None, *, fail: bool = False):
    def write(folder: Path) -> dict[str, object]:
        if calls is not None:
            calls.append(folder)
        (folder / "native.pkl").write_bytes(b"pickled")
        if fail:
            raise TypeError("cannot pickle")
        return {"file": f"{FAST}/native.pkl", "sha256": sha256_file(folder / "native.pkl")}

    return write


def test_add_fast_form_is_covered_by_the_manifest_and_added_once(cache):
    entry = cache.fill(mv(), writer())
    calls: list[Path] = []
    cache.add_fast_form(entry, fast_writer(calls))
    cache.add_fast_form(entry, fast_writer(calls))
    assert len(calls) == 1
    updated = cache.get("m", 1)
    assert updated is not None
    assert updated.fast is not None
    assert updated.fast["file"] == f"{FAST}/native.pkl"
    assert f"{FAST}/native.pkl" in updated.files
    assert updated.check(full=True) == []
    flip_byte(updated.path / FAST / "native.pkl")
    assert updated.check() == [f"{FAST}/native.pkl"]


def test_add_fast_form_that_fails_leaves_the_entry_as_it_was(cache):
    entry = cache.fill(mv(), writer())
    with pytest.raises(TypeError):
        cache.add_fast_form(entry, fast_writer(fail=True))
    after = cache.get("m", 1)
    assert after == entry
    assert sorted(p.name for p in entry.path.iterdir()) == [ARTIFACTS, MANIFEST]


def test_add_fast_form_never_blesses_a_corrupted_artifact(cache):
    entry = cache.fill(mv(), writer())
    flip_byte(entry.artifacts / "model.bin", 3)
    cache.add_fast_form(entry, fast_writer())
    after = cache.get("m", 1)
    assert after is not None
    # The manifest must still describe the file as it was downloaded, not as it is now.
    assert after.check(full=True) == [f"{ARTIFACTS}/model.bin"]


# ====================================================================== aliases and pruning


def test_remember_and_recall(cache):
    assert cache.recall("m", "prod") is None
    cache.remember("m", "prod", 3)
    version, resolved_at = cache.recall("m", "prod")  # type: ignore[misc]
    assert version == 3
    assert resolved_at > 0
    cache.remember("m", "prod", 4)
    assert cache.recall("m", "prod")[0] == 4  # type: ignore[index]
    (cache.model_dir("m") / "refs" / "prod").write_text("garbage", encoding="utf-8")
    assert cache.recall("m", "prod") is None


def test_aliases_that_escape_alike_are_remembered_apart(cache):
    long_alias = "a" * 200
    cache.remember("m", long_alias, 1)
    cache.remember("m", _escape(long_alias), 2)
    assert cache.recall("m", long_alias)[0] == 1  # type: ignore[index]


def fill_versions(cache: ModelCache, name: str, versions: range) -> None:
    for n in versions:
        cache.fill(mv(name, n), writer({"MLmodel": f"{name}/{n}".encode()}))


def cached(cache: ModelCache) -> list[str]:
    return [e.version.ref for e in cache.versions()]


def test_prune_keeps_the_newest_per_model_and_every_alias_target(cache):
    fill_versions(cache, "a", range(1, 5))
    fill_versions(cache, "b", range(1, 3))
    fill_versions(cache, "c", range(7, 8))
    cache.remember("a", "prod", 1)
    cache.remember("a", "@latest", 4)
    removed = cache.prune(keep=1)
    assert sorted(e.version.ref for e in removed) == ["a/2", "a/3", "b/1"]
    assert cached(cache) == ["a/1", "a/4", "b/2", "c/7"]
    for ref in ("a/2", "a/3", "b/1"):
        name, version = ref.split("/")
        assert not cache.version_dir(name, int(version)).exists()


def test_prune_orders_versions_by_number_not_by_text(cache):
    fill_versions(cache, "a", range(8, 12))  # "10" < "9" as text
    assert [e.version.ref for e in cache.prune(keep=2)] == ["a/9", "a/8"]
    assert cached(cache) == ["a/10", "a/11"]


def test_prune_with_keep_zero_removes_all_but_alias_targets(cache):
    fill_versions(cache, "a", range(1, 4))
    cache.remember("a", "prod", 2)
    cache.prune(keep=0)
    assert cached(cache) == ["a/2"]


def test_prune_with_room_to_spare_removes_nothing_and_refuses_negative_keep(cache):
    fill_versions(cache, "a", range(1, 3))
    assert cache.prune(keep=5) == []
    assert cached(cache) == ["a/1", "a/2"]
    with pytest.raises(ValueError, match="keep"):
        cache.prune(keep=-1)


def test_evict_removes_one_version(cache):
    fill_versions(cache, "a", range(1, 3))
    cache.evict("a", 1)
    cache.evict("a", 1)  # idempotent
    assert cache.get("a", 1) is None
    assert cached(cache) == ["a/2"]
    assert leftovers(cache, "a") == ["2"]


# ====================================================================== privacy


def test_everything_the_cache_writes_is_private(tmp_path):
    root = tmp_path / "fresh" / "cache"
    cache = ModelCache(root, REGISTRY)
    entry = cache.fill(mv(), writer())
    cache.add_fast_form(entry, fast_writer())
    cache.remember("m", "prod", 1)
    paths = [root, *root.rglob("*")]
    assert len(paths) > 10
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path.relative_to(tmp_path)}: {oct(mode)}"

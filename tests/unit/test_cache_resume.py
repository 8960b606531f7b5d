"""When a fill's temp dir is taken up again by the next fill of the same version.

A fill given a ``resume_key`` (the digest recorded on the version) marks its temp dir with that
key and the version's identity, sealed with the cache key. A fill killed, or out of the
server (``RegistryUnavailableError``), leaves it; the next fill of the same version and key
goes on from it. Anything else (another key, another identity, a forged or missing mark, a
link inside) is removed and the download starts afresh; a result that does not verify is
downloaded once more from scratch.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from typing import TYPE_CHECKING

import pytest

from registry_sdk import CacheIntegrityError, ModelVersion, RegistryUnavailableError
from registry_sdk._cache import ARTIFACTS, ModelCache

if TYPE_CHECKING:
    from pathlib import Path

    from registry_sdk._digest import FileDigest

REGISTRY = "http://127.0.0.1:5000"
BLOB = bytes(range(256)) * 64
HALF = len(BLOB) // 2


def version(created: int = 1) -> ModelVersion:
    return ModelVersion.from_json(
        {
            "name": "m",
            "version": "1",
            "creation_timestamp": str(created * 1000),
            "run_id": "r1",
            "source": "mlflow-artifacts:/1/r1/artifacts/model",
        }
    )


class Download:
    """Writes MLmodel and the blob, going on from ``blob.incomplete`` when there is one.

    ``fail`` (an exception) is raised once half the blob is written, the first time.
    """

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        #: For each call: the bytes of ``blob.incomplete`` it found (None: no such file).
        self.found: list[int | None] = []

    def __call__(self, dest: Path) -> None:
        partial = dest / "blob.incomplete"
        have = partial.stat().st_size if partial.exists() else None
        self.found.append(have)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "MLmodel").write_bytes(b"flavors: {}\n")
        with partial.open("ab") as fh:
            fh.write(BLOB[have or 0 : HALF] if self.fail else BLOB[have or 0 :])
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        partial.replace(dest / "blob")


@pytest.fixture
def cache(tmp_path: Path) -> ModelCache:
    return ModelCache(tmp_path / "cache", REGISTRY)


def temp_dirs(cache: ModelCache) -> list[Path]:
    return sorted((cache.model_dir("m") / "versions").glob(".tmp-*"))


def check_blob(records: list[FileDigest]) -> bool:
    """A ``verify`` that accepts the tree only with the whole, right blob."""
    found = {record.path: record.sha256 for record in records}
    if found.get("blob") != hashlib.sha256(BLOB).hexdigest():
        msg = "the blob does not match the recorded digest"
        raise CacheIntegrityError(msg)
    return True


@pytest.mark.parametrize(
    "error", [RegistryUnavailableError("server down"), KeyboardInterrupt()], ids=repr
)
def test_a_fill_cut_short_by_the_server_or_killed_is_taken_up_by_the_next(cache, error):
    download = Download(fail=error)
    with pytest.raises(type(error)):
        cache.fill(version(), download, verify=check_blob, resume_key="d1")
    assert cache.get("m", 1) is None  # nothing half-made is an entry
    (kept,) = temp_dirs(cache)

    entry = cache.fill(version(), download, verify=check_blob, resume_key="d1")

    assert download.found == [None, HALF]  # the second call went on from the first's half
    assert (entry.artifacts / "blob").read_bytes() == BLOB
    assert entry.check(full=True) == []
    assert entry.digest_verified
    assert not kept.exists()
    assert temp_dirs(cache) == []
    assert not (entry.path / ".resume").exists()


def test_without_a_resume_key_nothing_is_kept(cache):
    download = Download(fail=RegistryUnavailableError("server down"))
    with pytest.raises(RegistryUnavailableError):
        cache.fill(version(), download, verify=check_blob)
    assert temp_dirs(cache) == []
    cache.fill(version(), download, verify=check_blob)
    assert download.found == [None, None]


def test_a_failure_other_than_the_server_keeps_nothing(cache):
    download = Download(fail=OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        cache.fill(version(), download, verify=check_blob, resume_key="d1")
    assert temp_dirs(cache) == []


@pytest.mark.parametrize(
    ("key", "created"),
    [("d2", 1), ("d1", 2)],
    ids=["another digest", "a re-created version"],
)
def test_what_another_download_left_is_removed_not_taken_up(cache, key, created):
    download = Download(fail=RegistryUnavailableError("server down"))
    with pytest.raises(RegistryUnavailableError):
        cache.fill(version(), download, verify=check_blob, resume_key="d1")
    (kept,) = temp_dirs(cache)

    entry = cache.fill(version(created), download, verify=check_blob, resume_key=key)

    assert download.found == [None, None]  # started afresh
    assert not kept.exists()
    assert (entry.artifacts / "blob").read_bytes() == BLOB


def test_a_mark_copied_from_another_cache_is_not_trusted(tmp_path):
    first = ModelCache(tmp_path / "first", REGISTRY)
    download = Download(fail=RegistryUnavailableError("server down"))
    with pytest.raises(RegistryUnavailableError):
        first.fill(version(), download, verify=check_blob, resume_key="d1")
    (kept,) = temp_dirs(first)
    second = ModelCache(tmp_path / "second", REGISTRY)  # its own key
    versions = second.model_dir("m") / "versions"
    versions.mkdir(parents=True)
    planted = versions / kept.name
    shutil.copytree(kept, planted)

    second.fill(version(), download, verify=check_blob, resume_key="d1")

    assert download.found == [None, None]
    assert not planted.exists()


def test_a_kept_dir_holding_a_link_is_removed_without_following_it(cache, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not the cache's")
    download = Download(fail=RegistryUnavailableError("server down"))
    with pytest.raises(RegistryUnavailableError):
        cache.fill(version(), download, verify=check_blob, resume_key="d1")
    (kept,) = temp_dirs(cache)
    (kept / ARTIFACTS / "link").symlink_to(outside)

    entry = cache.fill(version(), download, verify=check_blob, resume_key="d1")

    assert download.found == [None, None]
    assert not kept.exists()
    assert outside.read_bytes() == b"not the cache's"
    assert sorted(p.name for p in entry.artifacts.iterdir()) == ["MLmodel", "blob"]


def test_kept_bytes_that_do_not_verify_are_downloaded_again_from_scratch(cache):
    download = Download(fail=RegistryUnavailableError("server down"))
    with pytest.raises(RegistryUnavailableError):
        cache.fill(version(), download, verify=check_blob, resume_key="d1")
    (kept,) = temp_dirs(cache)
    partial = kept / ARTIFACTS / "blob.incomplete"
    data = bytearray(partial.read_bytes())
    data[10] ^= 0xFF
    partial.write_bytes(bytes(data))

    entry = cache.fill(version(), download, verify=check_blob, resume_key="d1")

    assert download.found == [None, HALF, None]  # resumed, refused, then afresh
    assert (entry.artifacts / "blob").read_bytes() == BLOB
    assert temp_dirs(cache) == []


def test_the_newest_of_several_kept_dirs_is_taken_up_and_the_others_removed(cache):
    with pytest.raises(RegistryUnavailableError):
        cache.fill(
            version(),
            Download(fail=RegistryUnavailableError("down")),
            verify=check_blob,
            resume_key="d1",
        )
    (older,) = temp_dirs(cache)
    newer = older.with_name(older.name + "b")
    shutil.copytree(older, newer)
    (newer / ARTIFACTS / "blob.incomplete").write_bytes(BLOB[: HALF + 7])
    now = time.time()
    os.utime(older, (now - 100, now - 100))
    os.utime(newer, (now, now))
    download = Download()

    cache.fill(version(), download, verify=check_blob, resume_key="d1")

    assert download.found == [HALF + 7]
    assert temp_dirs(cache) == []


def test_evicting_a_version_or_its_model_removes_what_unfinished_downloads_kept(cache):
    for number in (1, 2):
        with pytest.raises(RegistryUnavailableError):
            cache.fill(
                version_of(number),
                Download(fail=RegistryUnavailableError("down")),
                verify=check_blob,
                resume_key="d1",
            )
    assert len(temp_dirs(cache)) == 2

    cache.evict("m", 1)
    (left,) = temp_dirs(cache)
    assert left.name.startswith(".tmp-2-")

    cache.evict_model("m")  # a version with nothing but a kept download is found too
    assert temp_dirs(cache) == []


def version_of(number: int) -> ModelVersion:
    return ModelVersion.from_json({"name": "m", "version": str(number), "run_id": "r1"})

"""The artifact digest (registry_sdk._digest): its definition, and what it refuses or leaves out."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from registry_sdk import CacheIntegrityError, UnsafeArtifactError, _digest


def _tree(root, files):
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


FILES = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x05weights", "code/helper.py": b"x=1\n"}


def test_the_digest_is_the_documented_sha256_of_the_sorted_listing(tmp_path):
    root = _tree(tmp_path / "m", FILES)
    listing = sorted(
        (
            [rel, len(content), hashlib.sha256(content).hexdigest()]
            for rel, content in FILES.items()
        ),
        key=lambda item: item[0].encode(),
    )
    expected = hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()
    assert _digest.tree_digest(_digest.tree_records(root)) == expected


def test_the_file_mlflows_loader_writes_is_left_out(tmp_path):
    root = _tree(tmp_path / "m", FILES)
    tags = _digest.digest_tags(_digest.tree_records(root))
    (root / "registered_model_meta").write_text("model_name: churn\nmodel_version: '7'\n")
    assert _digest.check(_digest.tree_records(root), tags, label="churn/7") is True
    # Anywhere else it is an added file like any other.
    (root / "code" / "registered_model_meta").write_text("x")
    with pytest.raises(CacheIntegrityError, match="added: code/registered_model_meta"):
        _digest.check(_digest.tree_records(root), tags, label="churn/7")


def test_changed_added_and_removed_files_are_named(tmp_path):
    root = _tree(tmp_path / "m", FILES)
    tags = _digest.digest_tags(_digest.tree_records(root))
    (root / "model.pkl").write_bytes(b"\x80\x05planted")
    (root / "extra.txt").write_text("x")
    (root / "code" / "helper.py").unlink()
    with pytest.raises(CacheIntegrityError) as caught:
        _digest.check(_digest.tree_records(root), tags, label="churn/7")
    assert "changed: model.pkl; added: extra.txt; removed: code/helper.py" in str(caught.value)


def test_a_version_without_a_digest_is_reported_unsealed_not_refused(tmp_path):
    root = _tree(tmp_path / "m", FILES)
    assert _digest.check(_digest.tree_records(root), {}, label="churn/7") is False


def test_the_per_file_listing_is_left_out_when_it_would_not_fit_one_tag(tmp_path):
    many = {f"shard-{i:05d}.bin": b"x" for i in range(200)}
    tags = _digest.digest_tags(_digest.tree_records(_tree(tmp_path / "m", many)))
    assert set(tags) == {_digest.DIGEST_TAG}
    small = _digest.digest_tags(_digest.tree_records(_tree(tmp_path / "s", FILES)))
    assert len(small[_digest.FILES_TAG]) <= _digest.MAX_TAG_VALUE


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_links_and_special_files_are_refused(tmp_path):
    root = _tree(tmp_path / "m", FILES)
    (root / "link").symlink_to(root / "MLmodel")
    with pytest.raises(UnsafeArtifactError, match="link under"):
        _digest.tree_records(root)
    (root / "link").unlink()
    os.mkfifo(root / "fifo")
    with pytest.raises(UnsafeArtifactError, match="not a regular file"):
        _digest.tree_records(root)

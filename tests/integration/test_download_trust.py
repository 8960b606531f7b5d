"""Artifacts on a file system: symlinks and special files never reach the cache or an export.

A file-based artifact store is a folder anyone with write access to it can plant things in. A
symlink inside a model's folder would make the client copy whatever it points at (a key, the
home directory) into its cache and from there into exports; a FIFO would hang the copy. The
client refuses both, naming the entry, and leaves no cache entry and no half-copied export.
The model's folder itself may be a symlink (``/data -> /mnt/data`` is ordinary).

Real parts only: MLflow's embedded SQLite store, versions whose source is a folder of this
machine, and ``RegistryClient.pull`` / ``load_model`` / ``export``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from registry_sdk import RegistryClient, UnsafeArtifactError

if TYPE_CHECKING:
    from collections.abc import Iterator

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: x\n"
SECRET = b"TOPSECRET-a81d4e-never-copy-me"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[RegistryClient]:
    """A client of a fresh embedded registry, with its own cache."""
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    with RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, max_retries=0
    ) as registry:
        registry.create_model("m")
        yield registry


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A folder of this machine holding a secret the model must never carry."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "id_rsa").write_bytes(SECRET)
    return folder


def make_model(folder: Path) -> Path:
    """A model folder as a file-based artifact store holds it."""
    (folder / "data").mkdir(parents=True)
    (folder / "MLmodel").write_text(MLMODEL, encoding="utf-8")
    (folder / "data" / "model.bin").write_bytes(b"\x00weights\x01" * 100)
    return folder


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Files below ``root`` (links not followed) whose content contains ``needle``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path.relative_to(root).as_posix())
    return found


def leftovers(cache: Path) -> list[str]:
    """Temporary folders of a fill that did not finish."""
    return [
        name
        for _, dirs, _ in os.walk(cache)
        for name in dirs
        if name.startswith((".tmp-", ".old-"))
    ]


def _plant(model: Path, secret: Path, kind: str) -> str:
    """Plant an unsafe entry in ``model``; return its path relative to ``model``."""
    if kind == "link-to-a-file":
        (model / "leak.txt").symlink_to(secret / "id_rsa")
        return "leak.txt"
    if kind == "link-to-a-folder":
        (model / "home").symlink_to(secret, target_is_directory=True)
        return "home"
    if kind == "dangling-link":
        (model / "gone").symlink_to(model / "no-such-file")
        return "gone"
    if kind == "link-in-a-subfolder":
        (model / "data" / "extra.bin").symlink_to(secret / "id_rsa")
        return "data/extra.bin"
    if kind == "fifo":
        os.mkfifo(model / "pipe")
        return "pipe"
    msg = f"unknown kind {kind!r}"
    raise AssertionError(msg)


KINDS = ["link-to-a-file", "link-to-a-folder", "dangling-link", "link-in-a-subfolder"]
if hasattr(os, "mkfifo"):
    KINDS.append("fifo")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("entry_point", ["pull", "load_model"])
def test_an_unsafe_entry_in_the_model_folder_is_refused_and_nothing_is_cached(
    client, tmp_path, secret, kind, entry_point
):
    model = make_model(tmp_path / "store" / "model")
    client.create_version("m", str(model))
    planted = _plant(model, secret, kind)

    with pytest.raises(UnsafeArtifactError) as caught:
        getattr(client, entry_point)("m/1")

    assert planted in str(caught.value)  # names the entry
    assert "nothing was copied" in str(caught.value)
    cache = tmp_path / "cache"
    assert client.cached_versions() == []
    assert files_holding(cache, SECRET) == []
    assert files_holding(cache, b"weights") == []  # not even the safe files, half-copied
    assert leftovers(cache) == []


def test_a_model_folder_that_is_a_symlink_loads_but_a_symlink_inside_it_does_not(
    client, tmp_path, secret
):
    real = make_model(tmp_path / "mnt" / "data" / "model")
    mount = tmp_path / "data"
    mount.symlink_to(real.parent, target_is_directory=True)
    client.create_version("m", str(mount / "model"))  # /data/model, with /data -> /mnt/data

    pulled = client.pull("m/1")

    assert (pulled / "MLmodel").read_text(encoding="utf-8") == MLMODEL
    assert (pulled / "data" / "model.bin").read_bytes() == (
        real / "data" / "model.bin"
    ).read_bytes()

    (real / "data" / "extra.bin").symlink_to(secret / "id_rsa")
    client.create_version("m", str(mount / "model"))

    with pytest.raises(UnsafeArtifactError, match=r"data/extra\.bin"):
        client.pull("m/2")
    assert [c.version.version for c in client.cached_versions()] == [1]
    assert files_holding(tmp_path / "cache", SECRET) == []


def test_export_refuses_a_symlink_and_leaves_no_half_copied_artifacts(client, tmp_path, secret):
    model = make_model(tmp_path / "store" / "model")
    client.create_version("m", str(model))
    (model / "data" / "extra.bin").symlink_to(secret / "id_rsa")
    export = tmp_path / "export"

    with pytest.raises(UnsafeArtifactError, match=r"data/extra\.bin"):
        client.export(["m"], to=export)

    assert files_holding(export, SECRET) == []
    assert files_holding(export, b"weights") == []
    assert not any(p.name == "artifacts" for p in export.rglob("*"))

"""Register ``big`` (one 1 GiB file) and ``many`` (300 x 100 KiB) with plain MLflow, alias prod.

``setup_big_models.py TRACKING_URI SCRATCH_DIR`` writes the files under ``SCRATCH_DIR`` (random
bytes, so nothing compresses them), logs each directory as the run artifacts ``model`` (with a
minimal ``MLmodel``), registers ``runs:/<run>/model``, sets the alias ``prod`` and removes the
local copies. Prints one JSON object: for each model its version, the download URI the
registry gives, and the path (under the server's artifact API,
``/api/2.0/mlflow-artifacts/artifacts/<path>``) and size of every file.
"""

import json
import os
import shutil
import sys
from pathlib import Path

import mlflow
from mlflow import MlflowClient

_CHUNK = 8 << 20
_MLMODEL = "artifact_path: model\nflavors: {}\nmodel_uuid: {uuid}\n"


def write_random(path: Path, size: int) -> None:
    """``size`` bytes of os.urandom, written in 8 MiB chunks."""
    with path.open("wb") as out:
        left = size
        while left:
            n = min(_CHUNK, left)
            out.write(os.urandom(n))
            left -= n


def register(client: MlflowClient, name: str, model_dir: Path) -> dict:
    """Log ``model_dir`` as the run artifacts ``model``, register it as ``name``, alias prod."""
    (model_dir / "MLmodel").write_text(_MLMODEL.replace("{uuid}", os.urandom(8).hex()))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    client.set_registered_model_alias(name, "prod", version.version)
    download_uri = client.get_model_version_download_uri(name, version.version)
    prefix = download_uri.removeprefix("mlflow-artifacts:").lstrip("/").rstrip("/")
    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    return {
        "version": version.version,
        "download_uri": download_uri,
        "files": {rel: f"{prefix}/{rel}" for rel in files},
        "sizes": {rel: (model_dir / rel).stat().st_size for rel in files},
    }


def main(uri: str, scratch: Path) -> None:
    """Write, log, register and clean up both models; print what was registered."""
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    mlflow.set_experiment("big-transfers")
    out = {}

    big = scratch / "big"
    big.mkdir(parents=True)
    write_random(big / "blob.bin", 1 << 30)
    out["big"] = register(client, "big", big)
    shutil.rmtree(big)

    many = scratch / "many"
    (many / "files").mkdir(parents=True)
    for i in range(300):
        (many / "files" / f"part-{i:03d}.bin").write_bytes(os.urandom(100 << 10))
    out["many"] = register(client, "many", many)
    shutil.rmtree(many)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

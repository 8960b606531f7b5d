"""One download of a registered model's files, by one of four means, into ``./out``.

``transfer.py MODE MODEL``, run in a directory holding ``uri`` (the tracking server) and
``models.json`` (what ``setup_big_models.py`` printed). ``out`` must not exist yet; every file
of the version is checked for its size afterwards, so no side can finish early unnoticed.

- ``ours``: ``RegistryClient(uri, cache_dir="out").pull("MODEL@prod")`` (download and cache,
  no model loading); ``REGISTRY_SDK_*`` variables apply as usual;
- ``mlflow``: ``mlflow.artifacts.download_artifacts("models:/MODEL@prod", dst_path="out")``
  with MLflow's defaults (``MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD`` unset, whatever the
  caller's environment says);
- ``raw-get``: the model's largest file streamed through the server's artifact proxy
  (``GET /api/2.0/mlflow-artifacts/artifacts/<path>``) with requests, 1 MiB chunks;
- ``presigned``: the same file streamed straight from the store with one GET of the presigned
  URL the server hands out (``GET /api/2.0/mlflow-artifacts/presigned/<path>``).
"""

import json
import os
import sys
from pathlib import Path

OUT = Path("out")
_CHUNK = 1 << 20


def _stream(url: str, dest: Path, headers: dict[str, str] | None = None) -> None:
    import requests

    dest.parent.mkdir(parents=True, exist_ok=True)
    with requests.get(url, headers=headers, stream=True, timeout=(10, 600)) as reply:
        reply.raise_for_status()
        with dest.open("wb") as out:
            for chunk in reply.iter_content(_CHUNK):
                out.write(chunk)


def _check(root: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        got = (root / rel).stat().st_size
        if got != size:
            msg = f"{root / rel}: {got} bytes, expected {size}"
            raise SystemExit(msg)


def main(mode: str, model: str) -> None:
    """Download ``model``'s files by ``mode`` and check them."""
    uri = Path("uri").read_text().strip()
    registered = json.loads(Path("models.json").read_text())[model]
    sizes: dict[str, int] = registered["sizes"]
    if OUT.exists():
        msg = f"{OUT.resolve()} exists: each download starts from nothing"
        raise SystemExit(msg)
    if mode == "ours":
        import registry_sdk as rs

        path = rs.RegistryClient(uri, cache_dir=OUT.resolve()).pull(f"{model}@prod")
        _check(path, sizes)
    elif mode == "mlflow":
        os.environ.pop("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", None)  # MLflow's default
        import mlflow.artifacts

        mlflow.set_tracking_uri(uri)
        path = mlflow.artifacts.download_artifacts(f"models:/{model}@prod", dst_path=str(OUT))
        _check(Path(path), sizes)
    elif mode in {"raw-get", "presigned"}:
        rel = max(sizes, key=lambda name: sizes[name])
        remote = registered["files"][rel]
        if mode == "raw-get":
            _stream(f"{uri}/api/2.0/mlflow-artifacts/artifacts/{remote}", OUT / rel)
        else:
            import requests

            reply = requests.get(f"{uri}/api/2.0/mlflow-artifacts/presigned/{remote}", timeout=60)
            reply.raise_for_status()
            presigned = reply.json()
            _stream(presigned["url"], OUT / rel, presigned.get("headers") or None)
        _check(OUT, {rel: sizes[rel]})
    else:
        msg = f"unknown mode {mode!r}: ours, mlflow, raw-get or presigned"
        raise SystemExit(msg)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

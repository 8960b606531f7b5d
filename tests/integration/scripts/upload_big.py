"""Upload one big file to a run of a tracking server and report the time and the peak memory.

Usage: ``python upload_big.py TRACKING_URI SIZE_MIB [--vanilla]``

Creates a run on the server, writes a file of SIZE_MIB MiB of random bytes in a temporary
directory (1 MiB at a time), then uploads the directory under the run's ``model`` path:
through registry_sdk's uploader, as ``@register`` does for a run (big files in parts straight
to the store where the server takes multipart uploads), or with ``--vanilla`` through MLflow's
own ``MlflowClient.log_artifacts`` (set ``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true`` in this
process's environment to have MLflow upload in parts too). Prints one JSON object::

    {"seconds": ..., "peak_rss_mb": ..., "rss_before_mb": ..., "peak_before_mb": ..., ...}

``seconds``: the upload alone. ``rss_before_mb``: the resident memory just before it;
``peak_before_mb``: the peak until then (writing the file keeps it low); ``peak_rss_mb``: the
process's peak (``getrusage(RUSAGE_SELF).ru_maxrss``) after it. So the upload grew the memory by
at most ``peak_rss_mb - rss_before_mb``. The MLflow variables this process was given are read,
never changed; the run is left in place (FINISHED).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def _rss_mb() -> float:
    """The resident memory now (Linux ``/proc``), else the peak so far."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_mb()


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # KiB on Linux, bytes on macOS.
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def _write(path: Path, size_mib: int) -> None:
    with path.open("wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, upload, print the report (the only line on stdout)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("size_mib", type=int)
    parser.add_argument("--vanilla", action="store_true", help="MLflow's own upload")
    args = parser.parse_args(argv)
    # MLflow prints links to the run it ends: stdout carries the report alone.
    with contextlib.redirect_stdout(sys.stderr):
        report = _measure(args.tracking_uri, args.size_mib, vanilla=args.vanilla)
    print(json.dumps(report))
    return 0 if report["uploaded_bytes"] == args.size_mib * MIB else 1


def _measure(tracking_uri: str, size_mib: int, *, vanilla: bool) -> dict[str, object]:
    import mlflow

    from registry_sdk import _run_artifacts

    tracking = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = tracking.get_experiment_by_name("Default")
    experiment_id = experiment.experiment_id if experiment is not None else "0"
    run = tracking.create_run(experiment_id, tags={"mlflow.runName": "upload-big"})
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="upload-big-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        _write(folder / "big.bin", size_mib)
        rss_before = _rss_mb()
        peak_before = _peak_mb()
        started = time.perf_counter()
        if vanilla:
            tracking.log_artifacts(run_id, str(folder), "model")
        else:
            _run_artifacts.log_artifacts(
                tracking, tracking_uri, run_id, run.info.artifact_uri, str(folder), "model"
            )
        seconds = time.perf_counter() - started
        peak = _peak_mb()
    tracking.set_terminated(run_id, "FINISHED")
    if run.info.artifact_uri.startswith("mlflow-artifacts:"):
        # Listed against tracking_uri with MLflow 2 too (its client would use the global URI).
        repository = _run_artifacts._repository(tracking_uri, run.info.artifact_uri)
        infos = repository.list_artifacts("model")
    else:
        infos = tracking.list_artifacts(run_id, "model")
    listed = {info.path: info.file_size for info in infos}
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_before_mb": round(peak_before, 1),
        "size_mib": size_mib,
        "uploaded_bytes": listed.get("model/big.bin"),
        "mode": "vanilla" if vanilla else "registry_sdk",
        "run_id": run_id,
    }


if __name__ == "__main__":
    sys.exit(main())

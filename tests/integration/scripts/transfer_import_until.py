"""Run ``registry import`` and freeze it at a chosen point, so that a test can SIGKILL it there.

Usage: ``python transfer_import_until.py POINT MARKER REGISTRY-ARGUMENTS...``

POINT is ``after-first-version`` (the first version was just created in the target) or
``mid-upload`` (one file of the first version's artifacts was uploaded, the others not). When
the point is reached, MARKER is written and the process waits to be killed: what a crash at
that point leaves behind is then exactly what the target holds.
"""

import shutil
import sys
import tempfile
import threading
from pathlib import Path

from registry_sdk import _run_artifacts, cli
from registry_sdk.client import RegistryClient

POINT, MARKER = sys.argv[1], Path(sys.argv[2])


def freeze(detail: str) -> None:
    partial = MARKER.with_suffix(".partial")
    partial.write_text(detail, encoding="utf-8")
    partial.replace(MARKER)  # the test sees the marker whole or not at all
    threading.Event().wait()  # until SIGKILL


if POINT == "after-first-version":
    create_version = RegistryClient.create_version

    def create_then_freeze(self, *args, **kwargs):
        created = create_version(self, *args, **kwargs)
        freeze(created.ref)
        return created

    RegistryClient.create_version = create_then_freeze
elif POINT == "mid-upload":
    log_artifacts = _run_artifacts.log_artifacts

    def upload_one_file_then_freeze(tracking, uri, run_id, root, local_dir, artifact_path):
        first = min(p for p in Path(local_dir).iterdir() if p.is_file())
        with tempfile.TemporaryDirectory() as one:
            shutil.copy2(first, one)
            log_artifacts(tracking, uri, run_id, root, one, artifact_path)
        freeze(f"{run_id} {first.name}")

    _run_artifacts.log_artifacts = upload_one_file_then_freeze
else:
    sys.exit(f"unknown point {POINT!r}")

cli.main(sys.argv[3:])

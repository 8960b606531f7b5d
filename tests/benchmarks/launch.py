"""Run a command from a small process; report its wall time, CPU time and peak RSS as JSON.

``python -S -E launch.py REPORT CMD...``. Linux counts a process's peak RSS from the moment it
was forked: a child forked from a big process (the benchmark runner, pytest) starts with that
process's resident set as its peak, whatever it execs. Forked from this launcher instead, which
imports almost nothing, a command's ``ru_maxrss`` is its own plus this launcher's few MB. The
command inherits the working directory, the environment and the standard streams; the launcher
exits with its exit code. Its CPU time (user + system) counts the command and what it waited
for, not servers it talks to: where those share the machine, wall time pays for them too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    """Run ``sys.argv[2:]``, write ``{"elapsed", "maxrss", "cpu"}`` to ``sys.argv[1]``."""
    report, cmd = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    payload = {"elapsed": elapsed, "maxrss": usage.ru_maxrss, "cpu": cpu}
    Path(report).write_text(json.dumps(payload), encoding="utf-8")
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())

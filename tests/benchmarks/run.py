"""Run the benchmarks: ``python tests/benchmarks/run.py [--repeat N] [--only NAME] [--out FILE]``.

Prints a table of ratios (registry_sdk / plain MLflow, lower is better) and writes JSON.
Exits 1 if a scenario misses its target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
# MLflow reports usage to the internet from every process that imports it unless told not to;
# the benchmarks talk to loopback only (both sides alike: every process inherits this).
os.environ["DO_NOT_TRACK"] = "true"

from harness import failed_result, format_table, run_scenario, write_report
from scenarios import PY, SOURCE, all_scenarios, cleanup, source_env


def code_under_test() -> dict[str, str]:
    """Which registry_sdk the timed processes import, and the commit of its source tree."""
    imported = subprocess.run(
        [PY, "-c", "import registry_sdk; print(registry_sdk.__file__)"],
        env={**os.environ, **source_env()},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git = ["git", "-C", str(SOURCE)]
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "registry_sdk"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "registry_sdk": imported,
        "commit": commit + (" (registry_sdk/ modified)" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per side")
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    args = parser.parse_args(argv)

    scenarios = [s for s in all_scenarios(args.repeat) if not args.only or s.name in args.only]
    about = code_under_test()
    print(f"registry_sdk under test: {about['registry_sdk']} at {about['commit']}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="registry-sdk-bench-") as tmp:
        try:
            for scenario in scenarios:
                print(f"running {scenario.name}: {scenario.description}", flush=True)
                try:
                    results.append(run_scenario(scenario, Path(tmp) / scenario.name))
                except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                    # One broken scenario is reported as such; the others still run.
                    detail = getattr(exc, "stderr", None) or ""
                    error = RuntimeError(f"{exc}\n{detail[-2000:]}" if detail else str(exc))
                    print(f"{scenario.name} failed: {error}", flush=True)
                    results.append(failed_result(scenario, error))
        finally:
            cleanup()
    print(format_table(results))
    write_report(results, args.out, about)
    print(f"wrote {args.out}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

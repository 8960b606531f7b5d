"""Run the benchmarks: ``python tests/benchmarks/run.py [--repeat N] [--only NAME] [--out FILE]``.

Prints a table of ratios (registry_sdk / plain MLflow, lower is better) and writes JSON.
Exits 1 if a scenario misses its target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import format_table, run_scenario, write_report
from scenarios import all_scenarios, cleanup


def main(argv: list[str] | None = None) -> int:
    """Run the selected scenarios and report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per side")
    parser.add_argument("--only", action="append", help="run only this scenario (repeatable)")
    parser.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    args = parser.parse_args(argv)

    scenarios = [s for s in all_scenarios(args.repeat) if not args.only or s.name in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="registry-sdk-bench-") as tmp:
        try:
            for scenario in scenarios:
                print(f"running {scenario.name}: {scenario.description}", flush=True)
                results.append(run_scenario(scenario, Path(tmp) / scenario.name))
        finally:
            cleanup()
    print(format_table(results))
    write_report(results, args.out)
    print(f"wrote {args.out}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

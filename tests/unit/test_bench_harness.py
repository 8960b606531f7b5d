"""The benchmark harness reports what it measured; timings themselves are never asserted here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import Scenario, format_table, run_scenario, write_report


def test_a_scenario_runs_both_sides_interleaved_and_reports_json(tmp_path):
    marker = tmp_path / "log"
    scenario = Scenario(
        name="trivial",
        description="two no-op processes",
        ours=[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('o')"],
        baseline=[sys.executable, "-c", f"open({str(marker)!r}, 'a').write('b')"],
        target_ratio=1000.0,
        repeat=3,
        warmup=1,
    )
    result = run_scenario(scenario, tmp_path / "work")
    assert marker.read_text() == "ob" * 4  # warm-up, then interleaved
    assert len(result.ours_samples) == len(result.baseline_samples) == 3
    assert result.ratio == pytest.approx(result.ours_median / result.baseline_median)
    assert result.passed

    out = tmp_path / "results.json"
    write_report([result], out)
    payload = json.loads(out.read_text())
    assert payload["results"][0]["name"] == "trivial"
    assert "trivial" in format_table([result])


def test_a_failing_command_is_an_error_not_a_number(tmp_path):
    scenario = Scenario(
        name="broken",
        description="fails",
        ours=[sys.executable, "-c", "raise SystemExit(3)"],
        baseline=[sys.executable, "-c", "pass"],
        target_ratio=1.0,
        repeat=1,
        warmup=0,
    )
    with pytest.raises(RuntimeError, match="benchmark command failed"):
        run_scenario(scenario, tmp_path)

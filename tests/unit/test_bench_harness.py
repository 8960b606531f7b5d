"""The benchmark harness reports what it measured; timings themselves are never asserted here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from harness import (
    Sample,
    Scenario,
    failed_result,
    format_table,
    run_scenario,
    summarise,
    write_report,
)


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


# A child that holds about 160 MiB at once (bytes multiplication writes every page).
_BIG_CHILD = "b = b'x' * (160 << 20); print(len(b))"


def _scenario(**changes):
    fields = {
        "name": "rss",
        "description": "peak RSS of each side",
        "ours": [sys.executable, "-c", "pass"],
        "baseline": [sys.executable, "-c", "pass"],
        "target_ratio": 1000.0,
        "repeat": 2,
        "warmup": 0,
    }
    fields.update(changes)
    return Scenario(**fields)


def test_each_process_reports_its_own_peak_rss(tmp_path):
    # The baseline's processes hold 160 MiB, ours nothing: each side's number is its own
    # process's, not the largest child this process ever had.
    scenario = _scenario(baseline=[sys.executable, "-c", _BIG_CHILD])
    result = run_scenario(scenario, tmp_path)
    assert len(result.ours_peak_rss_samples_mb) == len(result.baseline_peak_rss_samples_mb) == 2
    assert result.baseline_peak_rss_mb >= 160
    assert 0 < result.ours_peak_rss_mb < 100
    assert result.passed
    assert result.misses == []
    table = format_table([result])
    assert "ours RSS" in table
    assert f"{result.baseline_peak_rss_mb:.0f}MB" in table


def test_each_process_reports_its_own_cpu_time_not_its_sleep(tmp_path):
    # Ours spins for 0.3 s of CPU; the baseline sleeps as long: CPU time tells them apart.
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    scenario = _scenario(
        ours=[sys.executable, "-c", spin],
        baseline=[sys.executable, "-c", "import time; time.sleep(0.3)"],
    )
    result = run_scenario(scenario, tmp_path)
    assert result.ours_cpu_s >= 0.3
    assert result.baseline_cpu_s < 0.25
    assert f"{result.ours_cpu_s:.2f}/{result.baseline_cpu_s:.2f}" in format_table([result])


def test_peak_rss_over_the_scenario_ceiling_fails_it(tmp_path):
    scenario = _scenario(ours=[sys.executable, "-c", _BIG_CHILD], max_rss_mb=100.0)
    result = run_scenario(scenario, tmp_path)
    assert result.ours_peak_rss_mb >= 160
    assert not result.passed
    assert result.max_rss_mb == 100.0
    assert any("peak RSS" in miss and "100 MB" in miss for miss in result.misses)
    assert "peak RSS" in format_table([result])


def test_a_ceiling_that_holds_passes(tmp_path):
    result = run_scenario(_scenario(max_rss_mb=10_000.0), tmp_path)
    assert result.passed
    assert result.ours_peak_rss_mb <= 10_000.0


def test_summarise_checks_ratio_and_rss_ceiling_separately():
    scenario = _scenario(max_rss_mb=150.0, target_ratio=1.0)
    fast_but_fat = summarise(scenario, [Sample(1.0, 200 * 1024)], [Sample(2.0, 50 * 1024)])
    assert fast_but_fat.ratio == pytest.approx(0.5)
    assert fast_but_fat.ours_peak_rss_mb == pytest.approx(200.0)
    assert fast_but_fat.baseline_peak_rss_mb == pytest.approx(50.0)
    assert not fast_but_fat.passed
    assert len(fast_but_fat.misses) == 1

    slow_but_lean = summarise(scenario, [Sample(3.0, 100 * 1024)], [Sample(2.0, 50 * 1024)])
    assert not slow_but_lean.passed
    assert slow_but_lean.misses[0].startswith("ratio")

    within = summarise(scenario, [Sample(1.0, 150 * 1024)], [Sample(2.0, 50 * 1024)])
    assert within.passed


def test_rss_without_a_baseline_is_reported_for_ours_only():
    scenario = _scenario(baseline=None, target_seconds=10.0)
    result = summarise(scenario, [Sample(1.0, 64 * 1024), Sample(2.0, 32 * 1024)], [])
    assert result.ours_peak_rss_mb == pytest.approx(48.0)
    assert math.isnan(result.baseline_peak_rss_mb)
    assert result.passed
    assert "-" in format_table([result])


def test_requests_are_counted_per_process_and_ours_must_send_fewer(tmp_path):
    log = tmp_path / "requests"
    log.write_text("")
    seen = {"lines": 0}

    def drain():
        lines = len(log.read_text().splitlines())
        new, seen["lines"] = lines - seen["lines"], lines
        return new

    def sends(n):
        return [sys.executable, "-c", f"open({str(log)!r}, 'a').write('r\\n' * {n})"]

    fewer = run_scenario(
        _scenario(ours=sends(2), baseline=sends(5), count_requests=drain, warmup=1), tmp_path
    )
    assert fewer.ours_request_samples == [2, 2]
    assert fewer.baseline_request_samples == [5, 5]
    assert (fewer.ours_requests, fewer.baseline_requests) == (2, 5)
    assert fewer.passed
    assert "2/5" in format_table([fewer])

    more = run_scenario(_scenario(ours=sends(5), baseline=sends(5), count_requests=drain), tmp_path)
    assert not more.passed
    assert any("requests" in miss for miss in more.misses)


def test_before_each_runs_before_every_process(tmp_path):
    calls = []
    scenario = _scenario(before_each=calls.append, repeat=3, warmup=1)
    run_scenario(scenario, tmp_path / "work")
    assert calls == [tmp_path / "work"] * 8  # (1 warm-up + 3 timed) x 2 sides


def test_a_failed_scenario_is_reported_without_numbers(tmp_path):
    scenario = _scenario(max_rss_mb=150.0)
    result = failed_result(scenario, RuntimeError("benchmark command failed (1): x\nboom"))
    assert not result.passed
    assert math.isnan(result.ratio)
    assert result.misses == ["failed: benchmark command failed (1): x boom"]
    out = tmp_path / "results.json"
    write_report([result], out, {"commit": "abc"})
    payload = json.loads(out.read_text())
    assert payload["commit"] == "abc"
    assert payload["results"][0]["misses"] == result.misses
    assert "NO" in format_table([result])

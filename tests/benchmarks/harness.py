"""A small benchmark harness: each scenario runs beside its plain-MLflow equivalent in one run.

Both sides of a scenario run as fresh processes, interleaved (ours, theirs, ours, ...) so that
machine noise hits both alike. The report gives the median and best wall time of each side and
the ratio of medians, checks it against the scenario's target, and is written as JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

Command = Sequence[str]


@dataclass(frozen=True)
class Scenario:
    """Two commands doing the same job: ours with registry_sdk, the baseline with plain MLflow."""

    name: str
    description: str
    ours: Command
    #: None where plain MLflow has nothing that does the job (e.g. falling back to a cache):
    #: then ``target_seconds`` is the target.
    baseline: Command | None
    #: The ratio ours/baseline (of medians) must be at most this.
    target_ratio: float = 1.0
    #: Without a baseline: the median of ours, in seconds, must be at most this.
    target_seconds: float | None = None
    repeat: int = 10
    warmup: int = 1
    #: Runs once before timing (create a registry, train a model, ...); gets the work dir.
    setup: Callable[[Path], None] | None = None
    #: Runs once after timing, even when timing failed.
    teardown: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: When set, each command prints a JSON object as its last line and this key's value (in
    #: seconds) is the sample, instead of the process's wall time.
    metric: str | None = None


@dataclass(frozen=True)
class Result:
    """What one scenario measured, in seconds."""

    name: str
    description: str
    ours_median: float
    ours_best: float
    baseline_median: float
    baseline_best: float
    ratio: float
    target_ratio: float
    passed: bool
    repeat: int
    ours_samples: list[float]
    baseline_samples: list[float]


def time_command(
    cmd: Command, *, cwd: Path, env: dict[str, str], metric: str | None = None
) -> float:
    """Wall time of one fresh process running ``cmd`` (or the ``metric`` it reports).

    Fails loudly if the command fails.
    """
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        msg = (
            f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
        raise RuntimeError(msg)
    if metric is None:
        return elapsed
    lines = proc.stdout.strip().splitlines()
    try:
        return float(json.loads(lines[-1])[metric])
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        msg = (
            f"benchmark command did not report {metric!r} as JSON on its last line: {' '.join(cmd)}"
        )
        raise RuntimeError(msg) from exc


def run_scenario(scenario: Scenario, workdir: Path) -> Result:
    """Run ``scenario`` interleaved and summarise it."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **scenario.env}
    if scenario.setup is not None:
        scenario.setup(workdir)

    def sample(cmd: Command) -> float:
        return time_command(cmd, cwd=workdir, env=env, metric=scenario.metric)

    ours: list[float] = []
    theirs: list[float] = []
    try:
        for _ in range(scenario.warmup):
            sample(scenario.ours)
            if scenario.baseline is not None:
                sample(scenario.baseline)
        for _ in range(scenario.repeat):
            ours.append(sample(scenario.ours))
            if scenario.baseline is not None:
                theirs.append(sample(scenario.baseline))
    finally:
        if scenario.teardown is not None:
            scenario.teardown(workdir)
    median = statistics.median(ours)
    if scenario.baseline is None:
        # An absolute target: the "ratio" is ours over the target, and must be at most 1.
        assert scenario.target_seconds is not None
        ratio, target, theirs = median / scenario.target_seconds, 1.0, [math.nan]
    else:
        ratio, target = median / statistics.median(theirs), scenario.target_ratio
    return Result(
        name=scenario.name,
        description=scenario.description,
        ours_median=median,
        ours_best=min(ours),
        baseline_median=statistics.median(theirs),
        baseline_best=min(theirs),
        ratio=ratio,
        target_ratio=target,
        passed=ratio <= target,
        repeat=scenario.repeat,
        ours_samples=ours,
        baseline_samples=theirs,
    )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"


def format_table(results: Sequence[Result]) -> str:
    """A plain-text table of results."""
    header = (
        f"{'scenario':<28} {'ours (med)':>11} {'mlflow (med)':>13} {'ratio':>7} {'target':>7}  ok"
    )
    lines = [header, "-" * len(header)]
    lines.extend(
        f"{r.name:<28} {r.ours_median * 1000:>9.1f}ms {_ms(r.baseline_median):>13} "
        f"{r.ratio:>7.3f} {r.target_ratio:>7.2f}  {'yes' if r.passed else 'NO'}"
        for r in results
    )
    return "\n".join(lines)


def write_report(results: Sequence[Result], path: Path) -> None:
    """Write results and the machine they ran on as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

"""A small benchmark harness: each scenario runs beside its plain-MLflow equivalent in one run.

Both sides of a scenario run as fresh processes, interleaved (ours, theirs, ours, ...) so that
machine noise hits both alike. The report gives the median and best wall time of each side, the
ratio of medians, the median peak RSS of each side (the timed process's own ``ru_maxrss``,
from ``os.wait4``) and CPU seconds; it checks the ratio, and optionally ours' peak RSS and HTTP
request count, against the scenario's targets, and is written as JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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
    #: When set, the median peak RSS of ours (MB) must be at most this.
    max_rss_mb: float | None = None
    #: Runs before every sample, warm-up included, untimed (e.g. empties a download directory).
    before_each: Callable[[Path], None] | None = None
    #: When set: the number of HTTP requests seen since its previous call (e.g. by a counting
    #: proxy both sides talk through). Each sample's count is recorded, and ours' median must
    #: then be lower than the baseline's.
    count_requests: Callable[[], int] | None = None


@dataclass(frozen=True)
class Sample:
    """One fresh process: its wall time (or reported metric), peak RSS and CPU time."""

    seconds: float
    #: The process's own ``ru_maxrss`` at exit, in KiB.
    peak_rss_kib: int
    #: The process's user + system CPU seconds (its own and its children's).
    cpu_seconds: float = math.nan


@dataclass(frozen=True)
class Result:
    """What one scenario measured: times in seconds, peak RSS in MB (MiB), requests counted."""

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
    #: Median peak RSS of each side's processes (NaN for a scenario without a baseline).
    ours_peak_rss_mb: float
    baseline_peak_rss_mb: float
    ours_peak_rss_samples_mb: list[float]
    baseline_peak_rss_samples_mb: list[float]
    #: The scenario's ceiling on ours' median peak RSS, if any.
    max_rss_mb: float | None = None
    #: Median HTTP requests per process of each side, when the scenario counts them.
    ours_requests: float | None = None
    baseline_requests: float | None = None
    ours_request_samples: list[int] = field(default_factory=list)
    baseline_request_samples: list[int] = field(default_factory=list)
    #: Each target missed, in words (empty when ``passed``).
    misses: list[str] = field(default_factory=list)
    #: Median CPU seconds of each side's processes: the client's own work, whatever the
    #: servers it talks to cost (they share this machine's cores, so wall time pays for both).
    ours_cpu_s: float = math.nan
    baseline_cpu_s: float = math.nan


def _rss_kib(maxrss: int) -> int:
    """``ru_maxrss`` in KiB: Linux reports KiB, macOS bytes."""
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


def _mb(kib: float) -> float:
    return kib / 1024


#: Runs each timed command from a small process (see its docstring).
_LAUNCHER = Path(__file__).with_name("launch.py")


def run_command(
    cmd: Command, *, cwd: Path, env: dict[str, str], metric: str | None = None
) -> Sample:
    """Run ``cmd`` as one fresh process: its wall time (or the ``metric`` it reports) and RSS.

    The command runs under :data:`_LAUNCHER`, which times it and reaps it with ``os.wait4``:
    its peak RSS is its own (plus the launcher's few MB it was forked with), not this process's
    nor the largest of every child. Its output goes to temporary files, so nothing has to be
    read while waiting. Fails loudly if the command fails.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        report = Path(scratch) / "report.json"
        launcher = [sys.executable, "-S", "-E", str(_LAUNCHER), str(report)]
        proc = subprocess.Popen(
            [*launcher, *cmd],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the command
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
        if proc.returncode != 0:
            msg = f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{stderr[-2000:]}"
            raise RuntimeError(msg)
        measured = json.loads(report.read_text(encoding="utf-8"))
    elapsed, rss = float(measured["elapsed"]), _rss_kib(int(measured["maxrss"]))
    cpu = float(measured.get("cpu", math.nan))
    if metric is None:
        return Sample(elapsed, rss, cpu)
    lines = stdout.strip().splitlines()
    try:
        return Sample(float(json.loads(lines[-1])[metric]), rss, cpu)
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        msg = (
            f"benchmark command did not report {metric!r} as JSON on its last line: {' '.join(cmd)}"
        )
        raise RuntimeError(msg) from exc


def _sample(
    scenario: Scenario,
    cmd: Command,
    workdir: Path,
    env: dict[str, str],
    requests: list[int] | None = None,
) -> Sample:
    """One process of ``scenario``, prepared by ``before_each``; its request count if counted."""
    if scenario.before_each is not None:
        scenario.before_each(workdir)
    counter = scenario.count_requests
    if counter is not None:
        counter()  # forget what came before this process
    measured = run_command(cmd, cwd=workdir, env=env, metric=scenario.metric)
    if counter is not None and requests is not None:
        requests.append(counter())
    return measured


def run_scenario(scenario: Scenario, workdir: Path) -> Result:
    """Run ``scenario`` interleaved and summarise it."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **scenario.env}
    if scenario.setup is not None:
        scenario.setup(workdir)
    ours: list[Sample] = []
    theirs: list[Sample] = []
    ours_requests: list[int] = []
    their_requests: list[int] = []
    try:
        for _ in range(scenario.warmup):
            _sample(scenario, scenario.ours, workdir, env)
            if scenario.baseline is not None:
                _sample(scenario, scenario.baseline, workdir, env)
        for _ in range(scenario.repeat):
            ours.append(_sample(scenario, scenario.ours, workdir, env, ours_requests))
            if scenario.baseline is not None:
                theirs.append(_sample(scenario, scenario.baseline, workdir, env, their_requests))
    finally:
        if scenario.teardown is not None:
            scenario.teardown(workdir)
    return summarise(scenario, ours, theirs, ours_requests, their_requests)


def summarise(
    scenario: Scenario,
    ours: Sequence[Sample],
    theirs: Sequence[Sample],
    ours_requests: Sequence[int] = (),
    their_requests: Sequence[int] = (),
) -> Result:
    """Check the samples of both sides against ``scenario``'s targets."""
    ours_s = [s.seconds for s in ours]
    ours_rss = [_mb(s.peak_rss_kib) for s in ours]
    median = statistics.median(ours_s)
    misses: list[str] = []
    if scenario.baseline is None:
        # An absolute target: the "ratio" is ours over the target, and must be at most 1.
        assert scenario.target_seconds is not None
        theirs_s, theirs_rss = [math.nan], [math.nan]
        ratio, target = median / scenario.target_seconds, 1.0
        if ratio > target:
            misses.append(f"median {median:.3f} s > target {scenario.target_seconds:.3f} s")
    else:
        theirs_s = [s.seconds for s in theirs]
        theirs_rss = [_mb(s.peak_rss_kib) for s in theirs]
        ratio, target = median / statistics.median(theirs_s), scenario.target_ratio
        if ratio > target:
            misses.append(f"ratio {ratio:.3f} > target {target:.2f}")
    ours_rss_median = statistics.median(ours_rss)
    if scenario.max_rss_mb is not None and ours_rss_median > scenario.max_rss_mb:
        misses.append(f"peak RSS {ours_rss_median:.0f} MB > {scenario.max_rss_mb:.0f} MB")
    ours_req = statistics.median(ours_requests) if ours_requests else None
    their_req = statistics.median(their_requests) if their_requests else None
    if scenario.count_requests is not None and (
        ours_req is None or their_req is None or ours_req >= their_req
    ):
        misses.append(f"requests {_count(ours_req)} not fewer than {_count(their_req)}")
    return Result(
        name=scenario.name,
        description=scenario.description,
        ours_median=median,
        ours_best=min(ours_s),
        baseline_median=statistics.median(theirs_s),
        baseline_best=min(theirs_s),
        ratio=ratio,
        target_ratio=target,
        passed=not misses,
        repeat=scenario.repeat,
        ours_samples=ours_s,
        baseline_samples=theirs_s,
        ours_peak_rss_mb=ours_rss_median,
        baseline_peak_rss_mb=statistics.median(theirs_rss),
        ours_peak_rss_samples_mb=ours_rss,
        baseline_peak_rss_samples_mb=theirs_rss,
        max_rss_mb=scenario.max_rss_mb,
        ours_requests=ours_req,
        baseline_requests=their_req,
        ours_request_samples=list(ours_requests),
        baseline_request_samples=list(their_requests),
        misses=misses,
        ours_cpu_s=statistics.median(s.cpu_seconds for s in ours),
        baseline_cpu_s=(statistics.median(s.cpu_seconds for s in theirs) if theirs else math.nan),
    )


def failed_result(scenario: Scenario, error: BaseException) -> Result:
    """A scenario whose command failed (or whose setup did): no numbers, the error as a miss."""
    nan = math.nan
    return Result(
        name=scenario.name,
        description=scenario.description,
        ours_median=nan,
        ours_best=nan,
        baseline_median=nan,
        baseline_best=nan,
        ratio=nan,
        target_ratio=scenario.target_ratio if scenario.baseline is not None else 1.0,
        passed=False,
        repeat=scenario.repeat,
        ours_samples=[],
        baseline_samples=[],
        ours_peak_rss_mb=nan,
        baseline_peak_rss_mb=nan,
        ours_peak_rss_samples_mb=[],
        baseline_peak_rss_samples_mb=[],
        max_rss_mb=scenario.max_rss_mb,
        misses=[f"failed: {_shorten(' '.join(str(error).split()))}"],
    )


def _shorten(text: str, limit: int = 1500) -> str:
    """``text`` within ``limit`` characters: its start (the command) and its end (the error)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 4]} ... {text[-(limit - limit // 4 - 5) :]}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"


def _cpu(ours: float, theirs: float) -> str:
    if math.isnan(ours):
        return "-"
    return f"{ours:.2f}" if math.isnan(theirs) else f"{ours:.2f}/{theirs:.2f}"


def _rss(mb: float | None) -> str:
    return "-" if mb is None or math.isnan(mb) else f"{mb:.0f}MB"


def format_table(results: Sequence[Result]) -> str:
    """A plain-text table of results; each missed target is listed below it."""
    header = (
        f"{'scenario':<28} {'ours (med)':>11} {'mlflow (med)':>13} {'ratio':>7} {'target':>7} "
        f"{'ours RSS':>9} {'mlflow RSS':>10} {'max RSS':>8} {'requests':>9} {'CPU s':>11}  ok"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        requests = (
            "-"
            if r.ours_requests is None
            else f"{_count(r.ours_requests)}/{_count(r.baseline_requests)}"
        )
        lines.append(
            f"{r.name:<28} {_ms(r.ours_median):>11} {_ms(r.baseline_median):>13} "
            f"{r.ratio:>7.3f} {r.target_ratio:>7.2f} {_rss(r.ours_peak_rss_mb):>9} "
            f"{_rss(r.baseline_peak_rss_mb):>10} {_rss(r.max_rss_mb):>8} {requests:>9} "
            f"{_cpu(r.ours_cpu_s, r.baseline_cpu_s):>11}  "
            f"{'yes' if r.passed else 'NO'}"
        )
    lines.extend(f"{r.name}: {miss}" for r in results for miss in r.misses)
    return "\n".join(lines)


def write_report(
    results: Sequence[Result], path: Path, about: dict[str, str] | None = None
) -> None:
    """Write results and the machine they ran on (plus ``about``, e.g. the code) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **(about or {}),
        "results": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

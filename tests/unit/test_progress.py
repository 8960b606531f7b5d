"""The download progress bar: drawn on a terminal, silent anywhere else."""

from __future__ import annotations

import io
import re
import sys

import pytest

from registry_sdk import _progress
from registry_sdk._progress import Progress

MIB = 1 << 20
LINE = re.compile(
    r"\r(?P<label>[^\r\[]+) \[(?P<bar>[#-]{28})\] +(?P<pct>[\d.]+)% +(?P<mib>[\d.]+) MiB"
    r" +(?P<rate>[\d.]+|--\.-) MiB/s ETA (?P<eta>[\d:]+|--:--)"
)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A monotonic clock the test moves by hand (no real time is involved)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_progress.time, "monotonic", fake)
    return fake


def draws(stream: io.StringIO) -> list[dict[str, str]]:
    """Every frame drawn so far, parsed."""
    frames = [m.groupdict() for m in LINE.finditer(stream.getvalue())]
    assert len(frames) == stream.getvalue().count("\r")
    return frames


def test_draws_the_bar_on_a_tty(clock):
    tty = FakeTTY()
    progress = Progress("churn/7", 4 * MIB, stream=tty)
    progress.advance(MIB)
    clock.now += 1
    progress.advance(MIB)
    frames = draws(tty)
    assert [f["label"] for f in frames] == ["churn/7", "churn/7"]
    assert [f["pct"] for f in frames] == ["25.0", "50.0"]
    assert [f["bar"] for f in frames] == ["#" * 7 + "-" * 21, "#" * 14 + "-" * 14]
    assert [f["mib"] for f in frames] == ["1.0", "2.0"]
    assert not tty.getvalue().endswith("\n")  # the line stays open until close()


@pytest.mark.usefixtures("clock")
def test_close_draws_the_final_state_and_ends_the_line():
    tty = FakeTTY()
    progress = Progress("m/1", 3 * MIB, stream=tty)
    progress.advance(3 * MIB)
    progress.close()
    assert tty.getvalue().endswith("\n")
    final = draws(tty)[-1]
    assert final["pct"] == "100.0"
    assert final["bar"] == "#" * 28
    assert final["mib"] == "3.0"


def test_redraws_at_most_ten_times_a_second(clock):
    tty = FakeTTY()
    progress = Progress("m/1", 100, stream=tty)
    progress.advance(10)  # drawn
    clock.now += 0.06
    progress.advance(10)  # too soon: counted, not drawn
    clock.now += 0.06
    progress.advance(10)  # over 0.1 s after the last frame: drawn
    assert [f["pct"] for f in draws(tty)] == ["10.0", "30.0"]
    assert progress.done == 30


def test_a_retried_file_takes_its_bytes_back(clock):
    tty = FakeTTY()
    progress = Progress("m/1", 1000, stream=tty)
    progress.advance(600)
    clock.now += 1
    progress.advance(-600)  # the attempt was cut short; the retry starts from zero
    assert progress.done == 0
    assert [f["pct"] for f in draws(tty)] == ["60.0", "0.0"]


def test_unknown_or_exceeded_total_never_divides_by_zero_nor_overflows(clock):
    tty = FakeTTY()
    unknown = Progress("a", 0, stream=tty)
    unknown.advance(5)
    unknown.close()
    over = Progress("b", 10, stream=tty)
    clock.now += 1
    over.advance(25)
    negative = Progress("c", -3, stream=tty)
    assert negative.total == 0
    frames = draws(tty)
    assert [f["pct"] for f in frames] == ["100.0", "100.0", "100.0"]
    assert all(f["bar"] == "#" * 28 for f in frames)


@pytest.mark.parametrize("stream", [io.StringIO(), io.BytesIO()])
def test_silent_when_the_stream_is_not_a_tty(clock, stream):
    progress = Progress("m/1", 100, stream=stream)  # type: ignore[arg-type]
    progress.advance(50)
    clock.now += 1
    progress.advance(50)
    progress.close()
    assert stream.getvalue() in ("", b"")
    assert progress.done == 100  # still counts


@pytest.mark.usefixtures("clock")
def test_silent_when_the_stream_cannot_say_whether_it_is_a_tty():
    class WriteOnly:
        def __init__(self) -> None:
            self.written: list[str] = []

        def write(self, text: str) -> int:
            self.written.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    stream = WriteOnly()
    progress = Progress("m/1", 10, stream=stream)  # type: ignore[arg-type]
    progress.advance(10)
    progress.close()
    assert stream.written == []


@pytest.mark.usefixtures("clock")
def test_defaults_to_stderr(monkeypatch):
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    progress = Progress("m/1", 10)
    progress.advance(10)
    progress.close()
    assert draws(tty)[-1]["pct"] == "100.0"


@pytest.mark.usefixtures("clock")
def test_silent_on_a_captured_stderr(capsys):
    progress = Progress("m/1", 10)
    progress.advance(10)
    progress.close()
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_shows_the_rate_and_the_time_left(clock):
    tty = FakeTTY()
    progress = Progress("big/1", 100 * MIB, stream=tty)
    progress.advance(MIB)  # at once: no time has passed, no rate yet
    clock.now += 1
    progress.advance(9 * MIB)  # 10 MiB in 1 s; 90 MiB left
    clock.now += 2
    progress.advance(20 * MIB)  # 30 MiB in 3 s; 70 MiB left
    frames = draws(tty)
    assert [(f["rate"], f["eta"]) for f in frames] == [
        ("--.-", "--:--"),
        ("10.0", "0:09"),
        ("10.0", "0:07"),
    ]


def test_the_rate_is_of_the_last_seconds_and_leaves_out_bytes_already_there(clock):
    tty = FakeTTY()
    progress = Progress("big/1", 4000 * MIB, stream=tty)
    progress.skip(2000 * MIB)  # a resumed download: on disk already, not transferred
    clock.now += 10
    progress.advance(10 * MIB)  # slow at first: 1 MiB/s
    for _ in range(10):
        clock.now += 1
        progress.advance(100 * MIB)  # then 100 MiB/s
    last = draws(tty)[-1]
    assert float(last["rate"]) > 90  # the slow start has left the window
    assert last["eta"] == "0:10"  # 990 MiB left at about 100 MiB/s
    assert last["mib"] == "3010.0"


def test_long_waits_show_hours():
    assert _progress._clock(3 * 3600 + 62) == "3:01:02"
    assert _progress._clock(59.6) == "1:00"

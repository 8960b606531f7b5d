"""Eight processes promote and roll back one alias at the same time through a PostgreSQL server.

Each process (``scripts/lifecycle_mover.py``) has its own ``RegistryClient`` talking REST to
the same ``mlflow server`` over PostgreSQL and reports every event its calls returned. The
alias history must then hold exactly those events (none lost, none twice, none inferred as an
outside move), form one unbroken chain, roll back the way ``rollback`` promises even though
other processes moved the alias in between, and end where the alias actually points.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from registry_sdk import RegistryClient
from registry_sdk.errors import NotFoundError
from registry_sdk.lifecycle import LOCK_PREFIX

MOVER = Path(__file__).parent / "scripts" / "lifecycle_mover.py"
MOVERS = 8
ROUNDS = 3
VERSIONS = 4
#: Only so that a hung child fails the test instead of hanging it; nothing is timed.
SAFETY_TIMEOUT = 240

pytestmark = pytest.mark.postgres


def child_env() -> dict[str, str]:
    """This environment without any MLFLOW_* or REGISTRY_SDK_* setting that could leak in."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))
    }


def undo_step(stack: list[int], from_version: int | None, to_version: int | None) -> None:
    """Replay one move on the undo stack ``rollback`` walks (see ``previous_holder``).

    A move back to the version on top of the stack steps back (pops it); any other move
    remembers the version it left.
    """
    if from_version == to_version:
        return
    if stack and stack[-1] == to_version:
        stack.pop()
    elif from_version is not None:
        stack.append(from_version)


def start_movers(uri: str, name: str, workdir: Path) -> list[subprocess.Popen[str]]:
    procs = []
    for index in range(MOVERS):
        stderr = (workdir / f"mover-{index}.err").open("w")
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(MOVER),
                    uri,
                    name,
                    str(index),
                    str(ROUNDS),
                    str(VERSIONS),
                    str(workdir / f"cache-{index}"),
                ],
                cwd=workdir,
                env=child_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        )
        stderr.close()
    return procs


def run_movers(uri: str, name: str, workdir: Path) -> list[dict]:
    """Start every mover, release them together, and collect what each reported."""
    procs = start_movers(uri, name, workdir)
    outputs: list[str] = []
    try:
        for index, proc in enumerate(procs):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (index, line, errors(workdir, index))
        for proc in procs:  # every mover is connected: let them all go at once
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for index, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=SAFETY_TIMEOUT)
            assert proc.returncode == 0, (index, errors(workdir, index))
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
    return [json.loads(line) for out in outputs for line in out.splitlines() if line]


def errors(workdir: Path, index: int) -> str:
    return (workdir / f"mover-{index}.err").read_text(encoding="utf-8", errors="replace")[-4000:]


def assert_every_process_finished(records: list[dict]) -> None:
    pids = {record["pid"] for record in records}
    assert len(pids) == MOVERS
    for pid in pids:
        ops = Counter(r["op"] for r in records if r["pid"] == pid)
        assert ops["promote"] == ROUNDS, ops
        assert ops["rollback"] + ops["refused"] == ROUNDS, ops
    for refusal in (r for r in records if r["op"] == "refused"):
        assert "has no earlier version" in refusal["error"]


def assert_rollbacks_followed_the_history(history) -> None:
    """Each rollback went to the version the alias held before its current one, as of that
    moment: chosen under the move lock, not from what the process had read before."""
    stack: list[int] = []
    for event in history:
        if event.reason and event.reason.startswith("rollback"):
            assert stack, event
            assert event.to_version == stack[-1], (event, stack)
        undo_step(stack, event.from_version, event.to_version)


def test_concurrent_promotions_and_rollbacks_keep_a_complete_history(
    mlflow_server_postgres, tmp_path
):
    uri = mlflow_server_postgres.uri
    name = f"concurrent-{uuid.uuid4().hex[:10]}"
    with RegistryClient(
        uri,
        registry_uri=uri,
        cache_dir=tmp_path / "cache",
        offline=False,
        timeout=30,
        max_retries=1,
    ) as client:
        client.create_model(name)
        for n in range(1, VERSIONS + 1):
            assert client.create_version(name, f"s3://registry-sdk-it/{name}/{n}").version == n
        client.set_alias(name, "prod", 1, reason="setup")

        records = run_movers(uri, name, tmp_path)

        history = client.history(name, alias="prod")
        final = client.get_model(name).aliases["prod"]
        with pytest.raises(NotFoundError):
            client.backend.get_model(f"{LOCK_PREFIX}{name}.prod")

    # Every process did every step, and reported each once.
    assert_every_process_finished(records)

    # The history is exactly the setup plus every reported event: none lost, none duplicated.
    assert [(e.from_version, e.to_version, e.reason) for e in history[:1]] == [(None, 1, "setup")]
    reported = [r["event"] for r in records if r["op"] in {"promote", "rollback"}]
    assert len({e["reason"] for e in reported}) == len(reported)  # each event is identifiable
    assert Counter(
        (e.from_version, e.to_version, e.reason, e.by, e.forced) for e in history[1:]
    ) == Counter(
        (e["from_version"], e["to_version"], e["reason"], e["by"], e["forced"]) for e in reported
    )
    assert [e for e in history if e.external] == []
    assert all(e.alias == "prod" and e.name == name for e in history)

    # One unbroken chain: each move started where the previous one left the alias, in order.
    for before, after in itertools.pairwise(history):
        assert after.from_version == before.to_version, (before, after)
        assert after.at > before.at, (before, after)

    assert_rollbacks_followed_the_history(history)

    # The alias is where the last event says it is.
    assert final == history[-1].to_version

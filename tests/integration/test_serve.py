"""``registry serve REF --watch`` follows its alias without failing a request.

The installed ``registry`` serves ``NAME@prod`` from a real ``mlflow server``; a client thread
POSTs to ``/invocations`` continuously while the alias moves from version 1 (predicts 1.0) to
version 2 (predicts 2.0). Every response must be a 200, and once version 2 answered, version 1
never does again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from _servers import free_port
from sklearn.dummy import DummyRegressor

import registry_sdk as rs
from registry_sdk import RegistryClient

pytestmark = pytest.mark.timeout(600)

REGISTRY = Path(sys.executable).parent / "registry"
#: Bounds on waits (a hang fails the test; nothing asserts how long anything took).
START_WAIT_S = 180.0
SWAP_WAIT_S = 180.0
BATCH = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


@dataclass
class Reply:
    status: int | None
    predictions: list | None
    error: str | None


def post(port: int, payload: dict, timeout: float = 60.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST", "/invocations", json.dumps(payload), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, None, repr(exc))
    finally:
        conn.close()
    if response.status != 200:
        return Reply(response.status, None, body.decode("utf-8", "replace")[:500])
    return Reply(200, json.loads(body)["predictions"], None)


def ping(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class Serve:
    """A ``registry serve`` process in its own process group, always killed."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, attempts: int = 3) -> None:
        for _ in range(attempts):
            self.port = free_port()
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [str(REGISTRY), *self.args, "--port", str(self.port)],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            deadline = time.monotonic() + START_WAIT_S
            while time.monotonic() < deadline and self.process.poll() is None:
                if ping(self.port):
                    return
                time.sleep(0.2)
            lost_port = "address already in use" in self.log().lower()
            self.stop()
            if not lost_port:
                break
        pytest.fail(f"registry serve did not answer /ping:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def stop(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left of it; idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)  # start_new_session: the pid leads the group
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)


def clean_env(cache: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_"))
    }
    env["REGISTRY_SDK_CACHE_DIR"] = str(cache)
    return env


@pytest.fixture
def model(mlflow_server_webhooks, tmp_path):
    """NAME with version 1 predicting 1.0 and version 2 predicting 2.0; @prod on 1."""
    uri = mlflow_server_webhooks.uri
    name = f"served-{uuid.uuid4().hex[:8]}"
    client = RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "train-cache", timeout=30, max_retries=1
    )
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None

    @rs.register(name, client=client)
    def train(X, y, constant: float):
        return DummyRegressor(strategy="constant", constant=constant).fit(X, y)

    X, y = np.zeros((4, 3)), np.zeros(4)
    try:
        for constant in (1.0, 2.0):
            train(X, y, constant=constant)
        client.set_alias(name, "prod", 1, reason="serve test")
        yield uri, name, client
    finally:
        client.close()
        mlflow.set_tracking_uri(previous)


def test_serve_answers_invocations_in_both_json_forms(model, tmp_path):
    uri, name, _ = model
    serve = Serve(
        ["--tracking-uri", uri, "serve", f"{name}/2"],
        clean_env(tmp_path / "cache"),
        tmp_path / "serve.log",
    )
    try:
        serve.start()
        assert post(serve.port, {"inputs": BATCH}) == Reply(200, [2.0, 2.0], None)
        split = {"dataframe_split": {"columns": ["a", "b", "c"], "data": BATCH}}
        assert post(serve.port, split) == Reply(200, [2.0, 2.0], None)
        bad = post(serve.port, {"no_such_key": BATCH})
        assert bad.status == 400, bad
    finally:
        serve.stop()
    assert f"serving {name}/2 on http://127.0.0.1:{serve.port}" in serve.log()


def test_serve_watch_swaps_versions_without_failing_a_request(model, tmp_path):
    uri, name, client = model
    serve = Serve(
        ["--tracking-uri", uri, "serve", f"{name}@prod", "--watch", "--interval", "0.5"],
        clean_env(tmp_path / "cache"),
        tmp_path / "serve.log",
    )
    replies: list[Reply] = []
    stop = threading.Event()
    got = threading.Condition()

    def hammer(port: int) -> None:
        while not stop.is_set():
            reply = post(port, {"inputs": BATCH})
            with got:
                replies.append(reply)
                got.notify_all()

    def wait_until(predicate, bound: float) -> None:
        deadline = time.monotonic() + bound
        with got:
            while not predicate(replies):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"gave up waiting; {len(replies)} replies: {replies[-5:]}")
                got.wait(left)

    thread = None
    try:
        serve.start()
        assert post(serve.port, {"inputs": BATCH}) == Reply(200, [1.0, 1.0], None)
        thread = threading.Thread(target=hammer, args=(serve.port,), daemon=True)
        thread.start()
        wait_until(lambda r: len(r) >= 5, SWAP_WAIT_S)

        client.set_alias(name, "prod", 2, reason="swap under load")
        wait_until(lambda r: any(x.predictions == [2.0, 2.0] for x in r), SWAP_WAIT_S)
        seen = len(replies)
        wait_until(lambda r: len(r) >= seen + 5, SWAP_WAIT_S)  # keeps answering after the swap
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=90)
        serve.stop()

    failed = [r for r in replies if r.status != 200]
    assert failed == [], f"{len(failed)} of {len(replies)} requests failed: {failed[:3]}"
    answers = [tuple(r.predictions) for r in replies]
    assert set(answers) == {(1.0, 1.0), (2.0, 2.0)}
    first_new = answers.index((2.0, 2.0))
    assert answers[:first_new] == [(1.0, 1.0)] * first_new
    assert answers[first_new:] == [(2.0, 2.0)] * (len(answers) - first_new), "no flip-flop"
    log = serve.log()
    assert f"serving {name}/1 on http://127.0.0.1:{serve.port}" in log
    assert f"now serving {name}/2 (was 1)" in log

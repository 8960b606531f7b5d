"""With the registry down, the SDK falls back at once, and says so once.

One pinned ``mlflow server`` per test: started to register a model and fill the cache, then
stopped, so that its port refuses connections (or is taken by a socket that accepts and never
answers). What is checked is what the SDK did, not how long it took: the waits it asked for
(none where a fallback exists), the connections it made, and what reached stderr. The times
are measured by the ``outage_*`` benchmarks (``nox -s bench``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import mlflow
import pytest
from _servers import PinnedServer, migrated_sqlite_db, pinned_sqlite_server, server_env
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import _outbox, _retry

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.timeout(240)

NAME = "ff"


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_sqlite_db(tmp_path_factory.mktemp("template") / "mlflow.db")


@pytest.fixture
def server(tmp_path: Path, store_template: Path) -> Iterator[PinnedServer]:
    """A pinned server with ``ff@prod`` registered, then stopped: its port refuses."""
    srv = pinned_sqlite_server(tmp_path / "server", template=store_template)
    srv.start()
    try:
        with client_of(srv, tmp_path) as client:

            @rs.register(NAME, alias="prod", client=client)
            def train() -> LogisticRegression:
                return LogisticRegression().fit([[0.0], [1.0]], [0, 1])

            train()
            client.load_model(f"{NAME}@prod")  # cached, and its resolution remembered
        srv.stop()
        yield srv
    finally:
        srv.stop()


def client_of(server: PinnedServer, tmp_path: Path, **settings: float) -> rs.RegistryClient:
    """A client with the default timeout and retries unless ``settings`` say otherwise."""
    return rs.RegistryClient(server.uri, cache_dir=tmp_path / "cache", offline=False, **settings)


def recording_sleeps(client: rs.RegistryClient) -> list[float]:
    """The waits the client's transport asks for, recorded instead of slept."""
    sleeps: list[float] = []
    client.backend._sleep = sleeps.append  # type: ignore[attr-defined]
    client._sleep = sleeps.append
    return sleeps


def test_a_refused_cached_alias_load_falls_back_at_once(server, tmp_path):
    with client_of(server, tmp_path) as client:
        sleeps = recording_sleeps(client)
        with pytest.warns(rs.StaleAliasWarning, match="unreachable") as seen:
            model = client.load_model(f"{NAME}@prod")
    assert model.version.version == 1
    assert len(seen) == 1
    assert sleeps == [], "a refused connection with a cached resolution is not retried"


def test_a_refused_uncached_load_tries_once_more_after_a_short_pause(server, tmp_path):
    with client_of(server, tmp_path) as client:
        sleeps = recording_sleeps(client)
        with pytest.raises(rs.RegistryUnavailableError, match="cannot reach") as failed:
            client.load_model(f"{NAME}/2")
    assert failed.value.failure == "refused"
    assert sleeps == [_retry.REFUSED_PAUSE]


def test_a_server_that_never_answers_is_given_up_on_after_the_fallback_timeout(server, tmp_path):
    mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    mute.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    mute.bind(("127.0.0.1", server.port))
    mute.listen(16)  # the kernel accepts connections; nobody ever reads or answers
    try:
        with client_of(server, tmp_path, timeout=2, max_retries=1, fallback_timeout=1) as client:
            sleeps = recording_sleeps(client)
            with pytest.warns(rs.StaleAliasWarning, match="unreachable"):
                model = client.load_model(f"{NAME}@prod")
            assert model.version.version == 1
            assert sleeps == [], "a timeout with a cached resolution is not retried"
            with pytest.raises(rs.RegistryUnavailableError) as failed:
                client.load_model(f"{NAME}/2")  # nothing to fall back on: the full budget
            assert failed.value.failure == "timeout"
            assert len(sleeps) == 1, "no fallback: the timeout is retried within the budget"
    finally:
        mute.close()


_FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import registry_sdk as rs
    from sklearn.linear_model import LogisticRegression

    uri, cache, what = sys.argv[1:]
    client = rs.RegistryClient(uri, cache_dir=cache)
    if what == "load":
        print(client.load_model("ff@prod").version.ref)
    else:
        @rs.register("ff", client=client)
        def train():
            return LogisticRegression().fit([[0.0], [1.0]], [0, 1])

        train()
        print(train.last_version)
    """
)


def _run_fresh(server: PinnedServer, tmp_path: Path, what: str) -> subprocess.CompletedProcess[str]:
    """A fresh process with default settings and Python's default warning and log output."""
    return subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, server.uri, str(tmp_path / "cache"), what],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=server_env(),
    )


def test_a_stale_alias_warning_reaches_stderr_once(server, tmp_path):
    done = _run_fresh(server, tmp_path, "load")
    assert done.stdout.strip() == f"{NAME}/1"
    assert done.stderr.count("StaleAliasWarning") == 1, done.stderr
    assert done.stderr.count("is unreachable") == 1, done.stderr


def test_register_with_the_server_down_goes_to_the_outbox_and_says_so_once(server, tmp_path):
    done = _run_fresh(server, tmp_path, "register")
    assert done.stdout.strip() == "None"
    assert done.stderr.count("PendingRegistrationWarning") == 1, done.stderr
    assert done.stderr.count("was NOT registered") == 1, done.stderr
    # MLflow's own HTTP client (and its minute of retries) was never used against the server.
    assert "Retry(" not in done.stderr
    entries = _outbox.pending(tmp_path / "cache")
    assert [e.name for e in entries] == [NAME]
    assert entries[0].run_id is None

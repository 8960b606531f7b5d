"""``registry outbox ls|push|discard`` end to end, through a real outage of a real server.

Models are trained with ``@register`` while the ``mlflow server`` is stopped, so they wait in
the outbox; the CLI lists them with the error of their last push, discards one, and pushes the
other once the same server (same port, same store) is back. What the registry then holds is
checked with vanilla MLflow.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest
from _servers import migrated_sqlite_db, pinned_sqlite_server
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import _outbox
from registry_sdk.cli import cli

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result

# Pushes against a stopped server must give up, not hang (server starts included).
pytestmark = pytest.mark.timeout(300)

PASSWORD = "s3cret-outbox-pw"
IDEMPOTENCY_TAG = "registry_sdk.idempotency_key"


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch):
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's URI is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield
    mlflow.set_tracking_uri(previous)


@pytest.fixture
def server(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """A pinned server, not started yet; stopped (its whole process group) at the end."""
    template = migrated_sqlite_db(tmp_path_factory.mktemp("template") / "mlflow.db")
    srv = pinned_sqlite_server(tmp_path / "server", template=template)
    try:
        yield srv
    finally:
        srv.stop()


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    return X, (X[:, 0] > 0).astype(int)


class Cli:
    """``registry --tracking-uri URI ...`` with the outbox in ``cache``; never shows PASSWORD."""

    def __init__(self, uri: str, cache: Path) -> None:
        self.uri = uri
        self.env = {
            "REGISTRY_SDK_CACHE_DIR": str(cache),
            "REGISTRY_SDK_TIMEOUT": "2",
            "REGISTRY_SDK_MAX_RETRIES": "0",
        }

    def __call__(self, *args: str) -> Result:
        result = CliRunner().invoke(
            cli, ["--tracking-uri", self.uri, *args], env=self.env, catch_exceptions=False
        )
        assert PASSWORD not in result.output, args
        return result

    def listed(self) -> list[dict]:
        result = self("outbox", "ls", "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


def stage_two_models_while_down(client: rs.RegistryClient) -> None:
    """``kept`` (with an alias) then ``doomed``, each trained while the registry is down."""
    X, y = dataset()

    @rs.register("kept", alias="prod", client=client)
    def train(X, y):
        return LogisticRegression().fit(X, y), {"accuracy": 0.75}

    @rs.register("doomed", client=client)
    def train_doomed(X, y):
        return LogisticRegression(C=0.1).fit(X, y)

    with pytest.warns(rs.PendingRegistrationWarning):
        train(X, y)
    with pytest.warns(rs.PendingRegistrationWarning):
        train_doomed(X, y)
    assert (train.last_version, train_doomed.last_version) == (None, None)


def assert_discard_takes_exactly_one(run: Cli, kept: dict, doomed: dict) -> None:
    """Refused without --yes and for what is not an id; then only ``doomed`` goes."""
    unconfirmed = run("outbox", "discard", doomed["id"])
    assert unconfirmed.exit_code == 2, unconfirmed.output
    assert "--yes" in unconfirmed.stderr
    traversal = run("outbox", "discard", "../x", "--yes")
    assert traversal.exit_code == 2, traversal.output
    assert "is not an outbox entry id" in traversal.stderr
    assert [r["id"] for r in run.listed()] == [kept["id"], doomed["id"]]
    discarded = run("outbox", "discard", doomed["id"][:8], "--yes")
    assert discarded.exit_code == 0, discarded.output
    assert discarded.stdout == f"discarded {doomed['id'][:12]} (doomed)\n"
    assert [r["id"] for r in run.listed()] == [kept["id"]]


def test_outbox_ls_push_and_discard_through_an_outage(server, tmp_path):
    # Credentials in the URI: the server ignores them; nothing the CLI prints may show them.
    uri = server.uri.replace("http://", f"http://alice:{PASSWORD}@")
    cache = tmp_path / "cache"
    run = Cli(uri, cache)
    client = rs.RegistryClient(uri, registry_uri=uri, cache_dir=cache, timeout=2, max_retries=0)

    # 1. The server is down: both models wait in the outbox, each after one failed push.
    stage_two_models_while_down(client)
    kept, doomed = run.listed()  # oldest first
    assert (kept["name"], kept["alias"], doomed["name"]) == ("kept", "prod", "doomed")
    for row in (kept, doomed):
        assert row["registry_uri"] == server.uri, "credentials removed"
        assert row["this_registry"] is True
        assert row["pushes"] == 1
        assert row["last_attempt_at"] is not None
        assert row["last_error"].startswith("RegistryUnavailableError: ")
        assert "cannot be reached" in row["last_error"]
    for entry_json in _outbox.outbox_dir(cache).glob(f"*/{_outbox.ENTRY_FILE}"):
        assert PASSWORD not in entry_json.read_text(encoding="utf-8"), "the recorded error too"
    table = run("outbox", "ls").stdout
    assert kept["id"][:12] in table
    assert "RegistryUnavailableError" in table

    # 2. Pushing while it is still down: exit 4, and the entry records the second try.
    down = run("outbox", "push", kept["id"])
    assert down.exit_code == 4, down.output
    assert "cannot be reached" in down.stderr
    assert down.stdout == ""
    assert [r["pushes"] for r in run.listed()] == [2, 1]

    # 3. Discard.
    assert_discard_takes_exactly_one(run, kept, doomed)

    # 4. The server is back: the push registers the model once and the entry disappears.
    server.start()
    pushed = run("outbox", "push", kept["id"], "--json")
    assert pushed.exit_code == 0, pushed.output
    (version,) = json.loads(pushed.stdout)
    assert (version["ref"], version["aliases"]) == ("kept/1", ["prod"])
    assert run.listed() == []
    assert list(_outbox.outbox_dir(cache).iterdir()) == []
    again = run("outbox", "push")
    assert (again.exit_code, again.stdout) == (0, "nothing waiting in the outbox\n")

    vanilla = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    versions = vanilla.search_model_versions("name = 'kept'")
    assert [v.version for v in versions] == ["1"], "registered exactly once"
    assert versions[0].tags[IDEMPOTENCY_TAG] == kept["id"]
    assert vanilla.get_model_version_by_alias("kept", "prod").version == "1"
    assert vanilla.search_model_versions("name = 'doomed'") == [], "a discarded model never lands"
    client.close()

"""Every ``registry`` command through click's CliRunner, against real registries.

Each command runs in its table form and, where it has one, its ``--json`` form (parsed, with its
schema's keys checked), on an embedded SQLite store and on a real ``mlflow server``. The exit
codes are checked where the documentation promises them: 1 a gate failed, 2 usage error,
3 not found, 4 registry unavailable, 6 other error.

A model is trained and registered once per backend (``SEED``: version 1 with ``C=1.0`` and
accuracy 0.8, version 2 with ``C=0.01`` and accuracy 0.9, ``@staging`` on 2). Tests that move
aliases work on their own copies of it, so no test depends on another's moves.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest
from _client_version import INSTALLED_MLFLOW, WEBHOOKS_SINCE, needs_webhook_server
from _servers import free_port, pinned_sqlite_server
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

import registry_sdk as rs
from registry_sdk import RegistryClient, _tags
from registry_sdk.cli import cli
from registry_sdk.webhooks import InvalidSignatureError, verify_signature

if TYPE_CHECKING:
    from click.testing import Result

pytestmark = pytest.mark.timeout(600)

BACKENDS = ["embedded-sqlite", "server-sqlite"]
ACCURACY = {1.0: 0.8, 0.01: 0.9}  # C -> the accuracy the training function reports
SECRET = "cli-webhook-secret"
#: An embedded store checks webhook URLs and sends test deliveries in this process.
WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
}

MODEL_KEYS = {"name", "latest_version", "aliases", "description", "updated_at"}
VERSION_KEYS = {
    "name", "version", "ref", "aliases", "tags", "metrics", "run_id", "source", "status",
    "description", "created_at", "updated_at", "current_stage", "user_id", "model_id",
}  # fmt: skip
RESOLVE_KEYS = {"ref", "name", "version", "aliases"}
LINEAGE_KEYS = {
    "ref", "version", "created_by", "created_at", "updated_at", "run", "git", "code",
    "environment", "params", "metrics", "data", "derived_from", "alias_events",
}  # fmt: skip
RUN_KEYS = {
    "run_id", "experiment_id", "experiment_name", "status", "user", "start_time", "end_time",
    "params", "metrics",
}  # fmt: skip
ENVIRONMENT_KEYS = {"python", "platform", "packages"}
DIFF_KEYS = {"a", "b", "params", "metrics", "packages", "git", "data"}
EVENT_KEYS = {
    "name", "alias", "from_version", "to_version", "by", "at", "reason", "forced", "external",
}  # fmt: skip
REJECTED_KEYS = {"promoted", "ref", "to", "failures"}
CHECK_KEYS = {"ref", "passed", "gates"}
GATE_KEYS = {"gate", "passed", "detail"}
MIGRATION_KEYS = {"name", "stage", "alias", "version", "previous", "applied"}
PULL_KEYS = {"ref", "path"}
CACHE_KEYS = {"ref", "aliases", "files", "bytes", "fast_form", "path"}
VERIFY_KEYS = {"ok", "corrupt", "repaired"}
INTEGRITY_KEYS = {
    "ref", "ok", "sealed", "expected", "actual", "files", "size", "problems", "signed_by",
}  # fmt: skip
WEBHOOK_KEYS = {
    "webhook_id", "name", "url", "events", "description", "status", "created_at", "updated_at",
}  # fmt: skip
WEBHOOK_TEST_KEYS = {"success", "status", "body", "error"}
DOCTOR_KEYS = {
    "registry_sdk", "python", "tracking_uri", "registry_uri", "backend", "auth", "tls",
    "cache_dir", "offline", "reachable", "server_version", "detail", "features", "supported",
}  # fmt: skip
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def table(text: str) -> list[dict[str, str]]:
    """Rows of a ``registry`` table (columns are separated by at least two spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), (header, line)
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def fields(text: str) -> list[tuple[str, str]]:
    """``key value`` lines of ``show`` / ``lineage`` (key padded to 12 characters)."""
    return [(line[:12].strip(), line[13:]) for line in text.splitlines()]


# ================================================================================ registries


@dataclass
class Registry:
    """One backend with the trained ``seed`` model, and a CliRunner pointed at it."""

    backend: str
    uri: str
    workdir: Path
    client: RegistryClient
    seed: str
    runs: dict[int, str]

    def env(self, cache_dir: Path | None = None, **extra: str) -> dict[str, str]:
        return {
            "REGISTRY_SDK_CACHE_DIR": str(cache_dir or self.workdir / "cli-cache"),
            "REGISTRY_SDK_TIMEOUT": "30",
            "REGISTRY_SDK_MAX_RETRIES": "1",
            **WEBHOOK_ENV,
            **extra,
        }

    def invoke(self, *args: str, cache_dir: Path | None = None, **env: str) -> Result:
        return CliRunner().invoke(
            cli,
            ["--tracking-uri", self.uri, *args],
            env=self.env(cache_dir, **env),
            catch_exceptions=False,
        )

    def ok(self, *args: str, **kwargs) -> Result:
        result = self.invoke(*args, **kwargs)
        assert result.exit_code == 0, (args, result.output)
        return result

    def json(self, *args: str, **kwargs):
        return json.loads(self.ok(*args, "--json", **kwargs).stdout)

    def copy_of_seed(self, prefix: str = "copy", versions: tuple[int, ...] = (1, 2)) -> str:
        """A new model whose versions are copies of the seed's (same artifacts, runs and tags)."""
        name = unique(prefix)
        self.client.create_model(name)
        for number in versions:
            mv = self.client.get_version(self.seed, number)
            model_id = None
            if mv.source.startswith("models:/"):
                model_id = mv.source.removeprefix("models:/")
            tags = {k: v for k, v in mv.tags.items() if k != _tags.IDEMPOTENCY_KEY}
            self.client.create_version(
                name, mv.source, run_id=mv.run_id, model_id=model_id, tags=tags
            )
        return name


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    return X, y


@pytest.fixture(scope="module", params=BACKENDS)
def reg(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp(f"cli-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        # Nothing of the caller's environment leaks in; relative paths land in the tmp dir.
        for key in list(os.environ):
            if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_", "REGISTRY_WEBHOOK")):
                mp.delenv(key)
        mp.chdir(workdir)
        if request.param == "embedded-sqlite":
            uri = f"sqlite:///{workdir / 'registry.db'}"
        else:
            uri = request.getfixturevalue("mlflow_server_webhooks").uri
        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        client = RegistryClient(
            uri,
            registry_uri=uri,
            cache_dir=workdir / "seed-cache",
            offline=False,
            timeout=30,
            max_retries=1,
        )
        seed = unique("seed")

        @rs.register(seed, alias="staging", client=client)
        def train(X, y, C: float):
            model = LogisticRegression(C=C).fit(X, y)
            return model, {"accuracy": ACCURACY[C]}

        X, y = dataset()
        runs = {}
        for number, C in enumerate(ACCURACY, start=1):
            train(X, y, C=C)
            assert train.last_version is not None
            assert train.last_version.version == number
            runs[number] = train.last_version.run_id
        try:
            yield Registry(request.param, uri, workdir, client, seed, runs)
        finally:
            client.close()
            mlflow.set_tracking_uri(previous)


# ================================================================================ read commands


def test_models(reg):
    only_seed = ["--filter", f"name = '{reg.seed}'"]
    (row,) = table(reg.ok("models", *only_seed).stdout)
    assert row["NAME"] == reg.seed
    assert row["LATEST_VERSION"] == "2"
    assert row["ALIASES"] == "staging=2"
    assert ISO_TIME.match(row["UPDATED_AT"])

    (model,) = reg.json("models", *only_seed)
    assert set(model) == MODEL_KEYS
    assert model["name"] == reg.seed
    assert model["latest_version"] == 2
    assert model["aliases"] == {"staging": 2}

    everything = reg.json("models")
    names = [m["name"] for m in everything]
    assert reg.seed in names
    assert not [n for n in names if n.startswith("__registry_sdk_lock__")], "locks are hidden"
    assert reg.json("models", "--filter", "name = 'no-such-model'") == []
    assert reg.ok("models", "--filter", "name = 'no-such-model'").stdout == "(none)\n"


def test_versions(reg):
    rows = table(reg.ok("versions", reg.seed).stdout)
    assert [r["VERSION"] for r in rows] == ["2", "1"]  # newest first
    assert [r["ALIASES"] for r in rows] == ["staging", "-"]
    assert {r["STATUS"] for r in rows} == {"READY"}
    assert [r["RUN_ID"] for r in rows] == [reg.runs[2], reg.runs[1]]

    versions = reg.json("versions", reg.seed)
    assert [set(v) for v in versions] == [VERSION_KEYS, VERSION_KEYS]
    assert [v["ref"] for v in versions] == [f"{reg.seed}/2", f"{reg.seed}/1"]
    assert [v["aliases"] for v in versions] == [["staging"], []]
    assert [v["metrics"] for v in versions] == [{"accuracy": 0.9}, {"accuracy": 0.8}]
    assert all(ISO_TIME.match(v["created_at"]) for v in versions)

    by_tag = reg.json("versions", reg.seed, "--tag", f"{_tags.METRICS_PREFIX}accuracy=0.8")
    assert [v["version"] for v in by_tag] == [1]
    by_filter = reg.json("versions", reg.seed, "--filter", f"run_id = '{reg.runs[2]}'")
    assert [v["version"] for v in by_filter] == [2]


def test_show(reg):
    lines = fields(reg.ok("show", f"{reg.seed}@staging").stdout)
    assert lines[:3] == [("ref", f"{reg.seed}/2"), ("aliases", "staging"), ("status", "READY")]
    assert ("run_id", reg.runs[2]) in lines
    assert ("metric", "accuracy = 0.9") in lines
    assert ("tag", f"{_tags.METRICS_PREFIX}accuracy = 0.9") in lines

    for ref in (f"{reg.seed}/1", f"{reg.seed}@latest", f"models:/{reg.seed}@staging"):
        data = reg.json("show", ref)
        assert set(data) == VERSION_KEYS
    data = reg.json("show", f"{reg.seed}/1")
    assert (data["ref"], data["aliases"], data["run_id"]) == (f"{reg.seed}/1", [], reg.runs[1])
    assert data["metrics"] == {"accuracy": 0.8}
    assert reg.json("show", f"{reg.seed}@latest")["version"] == 2


def test_resolve(reg):
    assert reg.ok("resolve", f"{reg.seed}@staging").stdout == f"{reg.seed}/2\n"
    assert reg.ok("resolve", f"{reg.seed}@latest").stdout == f"{reg.seed}/2\n"
    assert reg.ok("resolve", f"{reg.seed}/1").stdout == f"{reg.seed}/1\n"
    assert reg.json("resolve", f"{reg.seed}@staging") == {
        "ref": f"{reg.seed}/2",
        "name": reg.seed,
        "version": 2,
        "aliases": ["staging"],
    }
    assert set(reg.json("resolve", f"{reg.seed}/1")) == RESOLVE_KEYS


def test_lineage(reg):
    text = reg.ok("lineage", f"{reg.seed}/2").stdout
    first, *rest = text.splitlines()
    assert first.startswith(f"{reg.seed}/2  created ")
    lines = fields("\n".join(rest))
    assert lines[0][0] == "run"
    assert lines[0][1].startswith(f"{reg.runs[2]} (experiment ")
    assert ("params", "C = 0.01") in lines
    assert ("metrics", "accuracy = 0.9") in lines
    assert ("data", "X") in lines
    assert ("data", "y") in lines
    assert any(k == "package" and v.startswith("scikit-learn==") for k, v in lines)
    assert any(k == "python" for k, _ in lines)
    assert any(k == "code" and v.startswith("function = ") for k, v in lines)
    assert any(k == "alias" and v.startswith("staging: 1 -> 2 at ") for k, v in lines)

    data = reg.json("lineage", f"{reg.seed}/2")
    assert set(data) == LINEAGE_KEYS
    assert data["ref"] == f"{reg.seed}/2"
    assert set(data["version"]) == VERSION_KEYS
    assert set(data["run"]) == RUN_KEYS
    assert data["run"]["run_id"] == reg.runs[2]
    assert data["params"] == {"C": "0.01"}
    assert data["metrics"] == {"accuracy": 0.9}
    assert set(data["environment"]) == ENVIRONMENT_KEYS
    assert "scikit-learn" in data["environment"]["packages"]
    assert set(data["data"]) == {"X", "y"}
    assert data["derived_from"] == []
    # Only the moves that involve this version.
    (event,) = data["alias_events"]
    assert set(event) == EVENT_KEYS
    assert (event["alias"], event["from_version"], event["to_version"]) == ("staging", 1, 2)
    first_events = reg.json("lineage", f"{reg.seed}/1")["alias_events"]
    assert [(e["from_version"], e["to_version"]) for e in first_events] == [(None, 1), (1, 2)]


def test_diff(reg):
    a, b = f"{reg.seed}/1", f"{reg.seed}/2"
    lines = reg.ok("diff", a, b).stdout.splitlines()
    assert "param    C: 1.0 -> 0.01" in lines
    (metric,) = [line for line in lines if line.startswith("metric ")]
    assert metric.startswith("metric   accuracy: 0.8 -> 0.9 (+0.1")
    assert not [line for line in lines if line.startswith("package")]  # same environment

    data = reg.json("diff", a, b)
    assert set(data) == DIFF_KEYS
    assert (data["a"], data["b"]) == (a, b)
    assert data["params"] == {"C": {"a": "1.0", "b": "0.01"}}
    accuracy = data["metrics"]["accuracy"]
    assert (accuracy["a"], accuracy["b"]) == (0.8, 0.9)
    assert accuracy["delta"] == pytest.approx(0.1)
    assert data["packages"] == {"added": {}, "removed": {}, "changed": {}}
    assert data["git"] == {}
    assert set(data["data"]) <= {"X", "y"}  # same arrays: no data change

    assert reg.ok("diff", a, a).stdout == f"{a} and {a} do not differ\n"
    same = reg.json("diff", a, f"{reg.seed}/1")
    assert (same["params"], same["metrics"], same["git"], same["data"]) == ({}, {}, {}, {})


def test_history(reg):
    rows = table(reg.ok("history", reg.seed).stdout)
    assert list(rows[0]) == [
        "AT", "ALIAS", "FROM_VERSION", "TO_VERSION", "BY", "REASON", "FORCED", "EXTERNAL",
    ]  # fmt: skip
    assert [(r["ALIAS"], r["FROM_VERSION"], r["TO_VERSION"]) for r in rows] == [
        ("staging", "-", "1"),
        ("staging", "1", "2"),
    ]
    assert all(r["REASON"].startswith("registered by ") for r in rows)
    assert {(r["FORCED"], r["EXTERNAL"]) for r in rows} == {("False", "False")}

    events = reg.json("history", reg.seed)
    assert [set(e) for e in events] == [EVENT_KEYS, EVENT_KEYS]
    assert [(e["from_version"], e["to_version"]) for e in events] == [(None, 1), (1, 2)]
    assert all(e["name"] == reg.seed and ISO_TIME.match(e["at"]) for e in events)
    assert reg.json("history", reg.seed, "--alias", "staging") == events
    assert reg.json("history", reg.seed, "--alias", "prod") == []
    assert reg.ok("history", reg.seed, "--alias", "prod").stdout == "(none)\n"


# ================================================================================ alias moves


def test_alias_set_and_delete(reg):
    name = reg.copy_of_seed("alias")
    assert reg.ok("alias", "set", name, "champion", "1", "--reason", "first").stdout == (
        f"{name}@champion: - -> 1\n"
    )
    moved = reg.json("alias", "set", name, "champion", "2", "--reason", "better")
    assert set(moved) == EVENT_KEYS
    assert (moved["name"], moved["alias"], moved["from_version"], moved["to_version"]) == (
        name,
        "champion",
        1,
        2,
    )
    assert (moved["reason"], moved["forced"], moved["external"]) == ("better", False, False)
    assert reg.ok("resolve", f"{name}@champion").stdout == f"{name}/2\n"

    deleted = reg.json("alias", "delete", name, "champion", "--reason", "retired")
    assert (deleted["from_version"], deleted["to_version"], deleted["reason"]) == (
        2,
        None,
        "retired",
    )
    assert reg.invoke("resolve", f"{name}@champion").exit_code == 3

    reg.ok("alias", "set", name, "shadow", "1")
    assert reg.ok("alias", "delete", name, "shadow").stdout == f"{name}@shadow: 1 -> -\n"
    again = reg.invoke("alias", "delete", name, "shadow")
    assert again.exit_code == 3
    assert "no alias 'shadow'" in again.stderr

    reasons = [e["reason"] for e in reg.json("history", name, "--alias", "champion")]
    assert reasons == ["first", "better", "retired"]


def test_promote_moves_the_alias_when_every_gate_passes(reg):
    name = reg.copy_of_seed("promote")
    gates = ["--require", "accuracy >= 0.85", "--require", "accuracy >= @prod"]
    result = reg.ok("promote", f"{name}/2", "--to", "prod", *gates, "--reason", "best so far")
    assert result.stdout == f"{name}@prod: - -> 2\n"
    (event,) = reg.json("history", name, "--alias", "prod")
    assert (event["reason"], event["forced"]) == ("best so far", False)

    forced = reg.json("promote", f"{name}/1", "--to", "prod", *gates, "--force")
    assert set(forced) == EVENT_KEYS
    assert (forced["from_version"], forced["to_version"], forced["forced"]) == (2, 1, True)
    assert "forced past: accuracy >= 0.85: " in forced["reason"]
    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/1\n"


def test_promote_rejected_exits_1_and_prints_each_failure(reg):
    name = reg.copy_of_seed("rejected")
    reg.ok("alias", "set", name, "prod", "2")
    reg.client.set_promotion_order(name, ["staging", "prod"])
    args = [
        "promote", f"{name}/1", "--to", "prod",
        "--require", "accuracy >= 0.85",
        "--require", "accuracy >= @prod",
        "--require", "latency_ms <= 50",
        "--require", "accuracy <= 1",
    ]  # fmt: skip
    failures = [
        f"accuracy >= 0.85: {name}/1: accuracy = 0.8, required >= 0.85",
        f"accuracy >= @prod: {name}/1: 0.8 >= {name}/2 (@prod): 0.9",
        f"latency_ms <= 50: {name}/1 has no metric 'latency_ms'",
        "promotion order staging,prod: version 1 must reach @staging before @prod",
    ]

    result = reg.invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert f"promotion of {name}/1 to @prod rejected:" in result.stderr
    for failure in failures:
        assert f"  - {failure}\n" in result.stderr
    assert "accuracy <= 1" not in result.stderr  # a passing gate is not a failure

    rejected = reg.invoke(*args, "--json")
    assert rejected.exit_code == 1, rejected.output
    payload = json.loads(rejected.stdout)
    assert set(payload) == REJECTED_KEYS
    assert payload == {"promoted": False, "ref": f"{name}/1", "to": "prod", "failures": failures}

    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/2\n", "nothing moved"
    assert [e["to_version"] for e in reg.json("history", name, "--alias", "prod")] == [2]


def test_gate_on_an_alias_nobody_holds_fails_unless_allowed(reg):
    name = reg.copy_of_seed("missing-alias")
    reg.ok("alias", "set", name, "prod", "1")
    gate = ["--require", "accuracy >= @champion"]  # a typo of @prod
    why = (
        f"no version holds @champion; {name} has aliases @prod; "
        "allow_missing=True (--allow-missing) lets a gate on a missing alias pass"
    )

    checked = reg.invoke("check", f"{name}/2", *gate)
    assert checked.exit_code == 1, checked.output
    assert checked.stdout == f"FAIL  accuracy >= @champion: {why}\n"
    rejected = reg.invoke("promote", f"{name}/2", "--to", "prod", *gate)
    assert rejected.exit_code == 1, rejected.output
    assert f"  - accuracy >= @champion: {why}\n" in rejected.stderr
    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/1\n", "nothing moved"

    allowed = reg.ok("check", f"{name}/2", *gate, "--allow-missing")
    assert allowed.stdout.startswith("PASS  accuracy >= @champion: no version holds @champion; ")
    promoted = reg.ok("promote", f"{name}/2", "--to", "prod", *gate, "--allow-missing")
    assert promoted.stdout == f"{name}@prod: 1 -> 2\n"
    # The promotion target itself needs no flag: its first promotion has nothing to beat.
    first = reg.ok("promote", f"{name}/2", "--to", "champion", *gate)
    assert first.stdout == f"{name}@champion: - -> 2\n"


def test_rollback(reg):
    name = reg.copy_of_seed("rollback", versions=(1, 2, 2))
    reg.ok("alias", "set", name, "prod", "1")
    reg.ok("promote", f"{name}/2", "--to", "prod")
    reg.ok("alias", "set", name, "prod", "3")  # 1 -> 2 -> 3
    assert reg.ok("rollback", name, "--alias", "prod").stdout == f"{name}@prod: 3 -> 2\n"
    back = reg.json("rollback", name, "--alias", "prod", "--reason", "bad metrics")
    assert set(back) == EVENT_KEYS
    assert (back["from_version"], back["to_version"]) == (2, 1)
    assert back["reason"] == "rollback: bad metrics"
    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/1\n"

    # Nothing earlier to go back to: an error (exit 6), and the alias stays.
    nothing = reg.invoke("rollback", name, "--alias", "prod")
    assert nothing.exit_code == 6, nothing.output
    assert "no earlier version" in nothing.stderr
    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/1\n"
    reasons = [e["reason"] for e in reg.json("history", name, "--alias", "prod")]
    assert reasons[-2:] == ["rollback", "rollback: bad metrics"]

    missing = reg.invoke("rollback", name, "--alias", "canary")
    assert missing.exit_code == 3
    assert "no alias 'canary'" in missing.stderr


def test_check(reg):
    passing = reg.invoke(
        "check", f"{reg.seed}/2", "--require", "accuracy >= 0.85", "--require", "accuracy >= @prod",
        "--to", "prod",
    )  # fmt: skip
    assert passing.exit_code == 0, passing.output
    assert passing.stdout.splitlines() == [
        f"PASS  accuracy >= 0.85: {reg.seed}/2: accuracy = 0.9, required >= 0.85",
        "PASS  accuracy >= @prod: no version holds @prod yet",
    ]

    failing = reg.invoke(
        "check", f"{reg.seed}@staging", "--require", "accuracy >= 0.95",
        "--require", "accuracy > @staging", "--require", "auc >= 0.5",
        "--require", "accuracy < 1",
    )  # fmt: skip
    assert failing.exit_code == 1, failing.output
    assert failing.stdout.splitlines() == [
        f"FAIL  accuracy >= 0.95: {reg.seed}/2: accuracy = 0.9, required >= 0.95",
        f"FAIL  accuracy > @staging: {reg.seed}/2: 0.9 > {reg.seed}/2 (@staging): 0.9",
        f"FAIL  auc >= 0.5: {reg.seed}/2 has no metric 'auc'",
        f"PASS  accuracy < 1: {reg.seed}/2: accuracy = 0.9, required < 1",
    ]

    result = reg.invoke("check", f"{reg.seed}/1", "--require", "accuracy >= 0.85", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert set(report) == CHECK_KEYS
    assert (report["ref"], report["passed"]) == (f"{reg.seed}/1", False)
    (gate,) = report["gates"]
    assert set(gate) == GATE_KEYS
    assert gate == {
        "gate": "accuracy >= 0.85",
        "passed": False,
        "detail": f"{reg.seed}/1: accuracy = 0.8, required >= 0.85",
    }

    result = reg.invoke("check", f"{reg.seed}/1", "--require", "accuracy >= 0.5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True


# ================================================================================ local cache


class Cache:
    """The CLI with its own cache directory."""

    def __init__(self, reg: Registry, path: Path) -> None:
        self.reg = reg
        self.path = path

    def run(self, *args: str) -> Result:
        return self.reg.invoke(*args, cache_dir=self.path)

    def data(self, *args: str):
        result = self.run(*args, "--json")
        return result.exit_code, json.loads(result.stdout)

    def refs(self) -> list[str]:
        return sorted(e["ref"] for e in self.data("cache", "ls")[1])


@pytest.fixture
def cache(reg, tmp_path):
    return Cache(reg, tmp_path / "cache")


def test_pull_and_cache_ls(reg, cache):
    assert cache.run("cache", "ls").stdout == "(none)\n"
    assert cache.data("cache", "ls") == (0, [])

    one = Path(cache.run("pull", f"{reg.seed}/1").stdout.strip())
    assert (one / "MLmodel").is_file()
    assert one.is_relative_to(cache.path)
    code, pulled = cache.data("pull", f"{reg.seed}@staging")
    assert code == 0
    assert set(pulled) == PULL_KEYS
    assert pulled["ref"] == f"{reg.seed}@staging"
    two = Path(pulled["path"])
    assert (two / "MLmodel").is_file()
    assert two != one

    code, entries = cache.data("cache", "ls")
    assert code == 0
    assert [set(e) for e in entries] == [CACHE_KEYS, CACHE_KEYS]
    by_ref = {e["ref"]: e for e in entries}
    assert set(by_ref) == {f"{reg.seed}/1", f"{reg.seed}/2"}
    assert all(e["files"] >= 2 and e["bytes"] > 0 for e in entries)
    assert by_ref[f"{reg.seed}/2"]["aliases"] == ["staging"]
    assert Path(by_ref[f"{reg.seed}/1"]["path"]) == one.parent
    rows = table(cache.run("cache", "ls").stdout)
    assert list(rows[0]) == ["REF", "FILES", "BYTES", "FAST_FORM", "PATH"]
    assert {r["REF"] for r in rows} == set(by_ref)


def test_cache_verify_finds_and_repairs_a_corrupt_file(reg, cache):
    one = Path(cache.run("pull", f"{reg.seed}/1").stdout.strip())
    assert cache.run("pull", f"{reg.seed}/2").exit_code == 0
    ok = cache.run("cache", "verify")
    assert (ok.exit_code, ok.stdout) == (0, "all cached files match their manifests\n")
    assert cache.data("cache", "verify") == (0, {"ok": True, "corrupt": {}, "repaired": False})

    # Corrupt one file of version 1: verify names it and exits 6 until --repair evicts it.
    victim = one / "MLmodel"
    victim.write_text(victim.read_text(encoding="utf-8") + "# tampered\n", encoding="utf-8")
    bad = cache.run("cache", "verify")
    assert bad.exit_code == 6, bad.output
    assert bad.stdout.startswith(f"CORRUPT {reg.seed}/1: ")
    assert "MLmodel" in bad.stdout
    assert len(bad.stdout.splitlines()) == 1
    code, report = cache.data("cache", "verify")
    assert code == 6
    assert set(report) == VERIFY_KEYS
    assert (report["ok"], report["repaired"], list(report["corrupt"])) == (
        False,
        False,
        [f"{reg.seed}/1"],
    )
    assert cache.refs() == [f"{reg.seed}/1", f"{reg.seed}/2"], "verify alone removes nothing"

    code, repaired = cache.data("cache", "verify", "--repair")
    assert code == 0
    assert (repaired["ok"], repaired["repaired"], list(repaired["corrupt"])) == (
        False,
        True,
        [f"{reg.seed}/1"],
    )
    assert cache.refs() == [f"{reg.seed}/2"]
    assert cache.run("cache", "verify").exit_code == 0
    again = Path(cache.run("pull", f"{reg.seed}/1").stdout.strip())  # fetched again, intact
    assert "# tampered" not in (again / "MLmodel").read_text(encoding="utf-8")
    assert cache.run("cache", "verify", "--repair").stdout == (
        "all cached files match their manifests\n"
    )


def test_verify_and_seal(reg):
    # What @register made records its digest: verified against the store, exit 0.
    code_ok = reg.invoke("verify", f"{reg.seed}/1", "--json")
    assert code_ok.exit_code == 0, code_ok.output
    report = json.loads(code_ok.stdout)
    assert set(report) == INTEGRITY_KEYS
    assert (report["ref"], report["ok"], report["sealed"]) == (f"{reg.seed}/1", True, True)
    assert report["expected"] == report["actual"]
    assert report["files"] >= 2
    assert report["problems"] == []
    assert report["signed_by"] is None  # no --key: the signature is not checked
    assert reg.ok("verify", f"{reg.seed}/1").stdout.startswith(f"{reg.seed}/1: ok (")

    # A version without a digest (as vanilla MLflow registers them) fails verify until sealed.
    name = reg.copy_of_seed("unsealed", versions=(1,))
    for key in (_tags.ARTIFACTS_SHA256, _tags.ARTIFACTS_FILES):
        reg.client.delete_tag(f"{name}/1", key)
    unsealed = reg.invoke("verify", f"{name}/1", "--json")
    assert unsealed.exit_code == 1, unsealed.output
    assert json.loads(unsealed.stdout)["sealed"] is False
    assert "not sealed" in reg.invoke("verify", f"{name}/1").stdout

    sealed = reg.json("seal", f"{name}/1")
    assert (sealed["ok"], sealed["expected"]) == (True, report["expected"])  # same files
    assert reg.client.get_version(f"{name}/1").tags[_tags.ARTIFACTS_SHA256] == report["expected"]
    assert reg.invoke("verify", f"{name}/1").exit_code == 0
    assert reg.json("seal", f"{name}/1")["ok"] is True  # sealing again changes nothing


def test_cache_prune_keeps_the_newest_and_every_alias_target(reg, cache):
    assert cache.run("pull", f"{reg.seed}/1").exit_code == 0
    assert cache.run("pull", f"{reg.seed}@staging").exit_code == 0  # version 2, @staging
    assert cache.run("cache", "prune", "--keep", "1").stdout == f"removed {reg.seed}/1\n"
    assert cache.refs() == [f"{reg.seed}/2"]
    assert cache.data("cache", "prune", "--keep", "0") == (0, {"removed": []})  # 2 is @staging
    assert cache.run("cache", "prune", "--keep", "0").stdout == "nothing to remove\n"
    assert cache.refs() == [f"{reg.seed}/2"]

    assert cache.run("pull", f"{reg.seed}/1").exit_code == 0
    assert cache.data("cache", "prune") == (0, {"removed": []})  # default --keep 3
    assert cache.data("cache", "prune", "--keep", "1") == (0, {"removed": [f"{reg.seed}/1"]})
    negative = cache.run("cache", "prune", "--keep", "-1")
    assert negative.exit_code == 2, negative.output


# ================================================================================ stages


def test_migrate_stages(reg):
    name = reg.copy_of_seed("legacy")
    with warnings.catch_warnings():  # setting up legacy stages uses MLflow's deprecated API
        warnings.simplefilter("ignore")
        reg.client.transition_stage(f"{name}/1", "Production")
        reg.client.transition_stage(f"{name}/2", "Staging")

    rows = table(reg.ok("migrate-stages", name, "--dry-run").stdout)
    assert rows == [
        {"NAME": name, "STAGE": "Production", "ALIAS": "prod", "VERSION": "1",
         "PREVIOUS": "-", "APPLIED": "False"},
        {"NAME": name, "STAGE": "Staging", "ALIAS": "staging", "VERSION": "2",
         "PREVIOUS": "-", "APPLIED": "False"},
    ]  # fmt: skip
    planned = reg.json("migrate-stages", name, "--dry-run")
    assert [set(s) for s in planned] == [MIGRATION_KEYS, MIGRATION_KEYS]
    assert [(s["alias"], s["version"], s["applied"]) for s in planned] == [
        ("prod", 1, False),
        ("staging", 2, False),
    ]
    assert [v["aliases"] for v in reg.json("versions", name)] == [[], []], "dry run moved nothing"

    applied = reg.json("migrate-stages", name)
    assert [(s["alias"], s["version"], s["applied"]) for s in applied] == [
        ("prod", 1, True),
        ("staging", 2, True),
    ]
    assert reg.ok("resolve", f"{name}@prod").stdout == f"{name}/1\n"
    assert reg.ok("resolve", f"{name}@staging").stdout == f"{name}/2\n"
    reasons = {e["alias"]: e["reason"] for e in reg.json("history", name)}
    assert reasons == {
        "prod": "migrated from stage Production",
        "staging": "migrated from stage Staging",
    }

    assert reg.json("migrate-stages", name) == [], "a second run changes nothing"
    assert reg.ok("migrate-stages", name).stdout == "(none)\n"

    custom = reg.json("migrate-stages", name, "--map", "Production=live", "--dry-run")
    assert custom == [
        {"name": name, "stage": "Production", "alias": "live", "version": 1,
         "previous": None, "applied": False},
    ]  # fmt: skip
    bad = reg.invoke("migrate-stages", name, "--map", "Production")
    assert bad.exit_code == 2
    assert "STAGE=ALIAS" in bad.stderr


# ================================================================================ webhooks


class Receiver:
    """A webhook receiver on loopback that checks each delivery's signature.

    ``/hook`` answers 200 to a delivery signed with ``secret`` and 401 to any other;
    ``/reject`` answers 400 to everything.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.deliveries: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                status, payload = 400, None
                if self.path == "/hook":
                    try:
                        payload = verify_signature(body, headers, receiver.secret)
                        status = 200
                    except InvalidSignatureError:
                        status = 401
                with receiver._lock:
                    receiver.deliveries.append(
                        {"path": self.path, "status": status, "headers": headers,
                         "body": body, "payload": payload}
                    )  # fmt: skip
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"received" if status == 200 else b"rejected")

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def receiver():
    r = Receiver(SECRET)
    try:
        yield r
    finally:
        r.close()


@dataclass
class Hooks:
    """Two webhooks made through the CLI: ``signed`` (``--json``) and ``refused`` (table)."""

    signed: dict
    refused_id: str
    refused_name: str
    create_output: str


@pytest.fixture
def hooks(reg, receiver):
    made = []
    try:
        signed = reg.json(
            "webhook", "create", "--name", unique("cli-hook"), "--url", receiver.url(),
            "--event", "model_version_alias.created", "--event", "model_version_alias.deleted",
            "--secret", SECRET, "--description", "CLI test",
        )  # fmt: skip
        made.append(signed["webhook_id"])
        # The secret can come from REGISTRY_WEBHOOK_SECRET; the table form prints one line.
        refused_name = unique("cli-hook")
        created = reg.invoke(
            "webhook", "create", "--name", refused_name, "--url", receiver.url("/reject"),
            "--event", "model_version.created", REGISTRY_WEBHOOK_SECRET=SECRET,
        )  # fmt: skip
        assert created.exit_code == 0, created.output
        refused_id = created.stdout.split()[2]
        made.append(refused_id)
        yield Hooks(signed, refused_id, refused_name, created.stdout)
    finally:
        for webhook_id in made:
            with contextlib.suppress(rs.NotFoundError):
                reg.client.delete_webhook(webhook_id)


@needs_webhook_server
def test_webhook_create_and_list(reg, receiver, hooks):
    hook = hooks.signed
    assert set(hook) == WEBHOOK_KEYS
    assert hook["url"] == receiver.url()
    assert hook["events"] == ["model_version_alias.created", "model_version_alias.deleted"]
    assert (hook["status"], hook["description"]) == ("ACTIVE", "CLI test")
    assert ISO_TIME.match(hook["created_at"])
    assert SECRET not in json.dumps(hook)
    assert hooks.create_output == (
        f"created webhook {hooks.refused_id} ({hooks.refused_name}) -> {receiver.url('/reject')}\n"
    )

    listed = {h["webhook_id"]: h for h in reg.json("webhook", "list")}
    assert {hook["webhook_id"], hooks.refused_id} <= set(listed)
    assert all(set(h) == WEBHOOK_KEYS for h in listed.values())
    assert listed[hook["webhook_id"]] == hook
    assert listed[hooks.refused_id]["events"] == ["model_version.created"]
    rows = {r["WEBHOOK_ID"]: r for r in table(reg.ok("webhook", "list").stdout)}
    assert list(rows[hooks.refused_id]) == ["WEBHOOK_ID", "NAME", "URL", "EVENTS", "STATUS"]
    assert rows[hooks.refused_id]["NAME"] == hooks.refused_name
    assert rows[hook["webhook_id"]]["EVENTS"] == (
        "model_version_alias.created,model_version_alias.deleted"
    )


@needs_webhook_server
def test_webhook_test_sends_a_signed_delivery(reg, receiver, hooks):
    webhook_id = hooks.signed["webhook_id"]
    result = reg.json("webhook", "test", webhook_id)
    assert set(result) == WEBHOOK_TEST_KEYS
    assert result == {"success": True, "status": 200, "body": "received", "error": None}
    (delivery,) = receiver.received()
    # The receiver verified the signature with the webhook's secret (else it answers 401).
    assert (delivery["path"], delivery["status"]) == ("/hook", 200)
    assert (delivery["payload"]["entity"], delivery["payload"]["action"]) == (
        "model_version_alias",
        "created",
    )

    table_form = reg.invoke("webhook", "test", webhook_id, "--event", "model_version_alias.deleted")
    assert (table_form.exit_code, table_form.stdout) == (0, "delivered: status 200\n")
    last = receiver.received()[-1]
    assert (last["status"], last["payload"]["action"]) == (200, "deleted")


@needs_webhook_server
def test_webhook_test_exits_6_when_the_receiver_refuses(reg, receiver, hooks):
    refused = reg.invoke("webhook", "test", hooks.refused_id)
    assert refused.exit_code == 6, refused.output
    assert refused.stdout == "FAILED: status 400\n"
    as_json = reg.invoke("webhook", "test", hooks.refused_id, "--json")
    assert as_json.exit_code == 6, as_json.output
    report = json.loads(as_json.stdout)
    assert (report["success"], report["status"], report["body"]) == (False, 400, "rejected")
    assert [d["path"] for d in receiver.received()] == ["/reject", "/reject"]


@needs_webhook_server
def test_webhook_delete(reg, hooks):
    signed = hooks.signed["webhook_id"]
    deleted = reg.ok("webhook", "delete", hooks.refused_id)
    assert deleted.stdout == f"deleted webhook {hooks.refused_id}\n"
    assert reg.json("webhook", "delete", signed) == {"deleted": signed}
    remaining = {h["webhook_id"] for h in reg.json("webhook", "list")}
    assert not {signed, hooks.refused_id} & remaining
    gone = reg.invoke("webhook", "delete", signed)
    assert gone.exit_code == 3, gone.output
    assert gone.stderr.startswith("Error: ")


def test_webhook_create_rejects_a_malformed_event(reg, receiver):
    result = reg.invoke(
        "webhook", "create", "--name", "bad", "--url", receiver.url(), "--event", "nonsense"
    )
    assert result.exit_code == 2, result.output
    assert "ENTITY.ACTION" in result.stderr


# ================================================================================ doctor


def test_doctor(reg):
    report = reg.json("doctor")
    assert set(report) == DOCTOR_KEYS
    assert report["tracking_uri"] == reg.uri
    assert report["backend"] == ("local" if reg.backend == "embedded-sqlite" else "rest")
    assert (report["reachable"], report["auth"], report["offline"]) == (True, "none", False)
    assert report["server_version"] == mlflow.__version__
    assert report["registry_sdk"] == rs.__version__
    assert report["cache_dir"] == str(reg.workdir / "cli-cache")
    assert report["supported"] is True
    assert report["features"]["aliases"] == {"available": True, "minimum": "2.3.0"}

    lines = dict(line.split(None, 1) for line in reg.ok("doctor").stdout.splitlines())
    assert set(lines) == (DOCTOR_KEYS - {"features"}) | {"feature"}  # one line per feature
    assert lines["reachable"] == "True"
    assert lines["tracking_uri"] == reg.uri


# ================================================================================ exit codes


#: Whether the registries here have webhooks: they run the installed mlflow.
WEBHOOKS_HERE = INSTALLED_MLFLOW >= WEBHOOKS_SINCE


def not_found_commands(seed: str) -> list[list[str]]:
    return [
        ["show", "no-such-model/1"],
        ["show", f"{seed}/99"],
        ["show", f"{seed}@no-such-alias"],
        ["resolve", f"{seed}@no-such-alias", "--json"],
        ["lineage", "no-such-model/1"],
        ["diff", f"{seed}/1", f"{seed}/99"],
        ["history", "no-such-model"],
        ["versions", "no-such-model"],
        ["versions", "no-such-model", "--json"],
        ["versions", "no-such-model", "--tag", "team=growth"],
        ["verify", "no-such-model/1"],
        ["seal", "no-such-model/1"],
        ["export", "no-such-model", "--to", "export-of-nothing"],
        ["serve", "no-such-model@prod"],
        ["alias", "set", "no-such-model", "prod", "1"],
        ["alias", "delete", seed, "no-such-alias"],
        ["promote", f"{seed}/99", "--to", "prod"],
        ["rollback", seed, "--alias", "no-such-alias"],
        ["check", "no-such-model/1", "--require", "accuracy >= 0.5"],
        ["pull", f"{seed}/99"],
        ["migrate-stages", "no-such-model"],
        ["migrate-stages", "no-such-model", "--dry-run"],
        ["alias", "delete", "no-such-model", "prod"],
        ["rollback", "no-such-model", "--alias", "prod"],
        *([["webhook", "delete", "no-such-webhook"]] if WEBHOOKS_HERE else []),
    ]


def test_not_found_exits_3(reg):
    for args in not_found_commands(reg.seed):
        result = reg.invoke(*args)
        assert result.exit_code == 3, (args, result.output)
        assert result.stderr.startswith("Error: "), (args, result.stderr)
        assert result.stdout == "", args


@pytest.mark.skipif(WEBHOOKS_HERE, reason="the registries here have webhooks")
def test_webhook_commands_without_webhooks_in_the_registry_exit_6_saying_what_is_needed(reg):
    for args in (["webhook", "delete", "no-such-webhook"], ["webhook", "list"]):
        result = reg.invoke(*args)
        assert result.exit_code == 6, (args, result.output)
        assert result.stderr.startswith("Error: registry webhooks need "), (args, result.stderr)
        assert f">= {WEBHOOKS_SINCE}.0" in result.stderr, (args, result.stderr)
        assert str(INSTALLED_MLFLOW) in result.stderr, (args, result.stderr)
        assert result.stdout == "", args


def usage_errors(seed: str) -> list[list[str]]:
    return [
        [],  # no command
        ["no-such-command"],
        ["show"],  # missing REF
        ["show", "not a reference"],
        ["resolve", "models:/"],
        ["versions", seed, "--tag", "no-equals-sign"],
        ["check", f"{seed}/1"],  # no --require
        ["check", f"{seed}/1", "--require", "accuracy ~ 0.9"],
        ["promote", f"{seed}/1"],  # no --to
        ["promote", f"{seed}/1", "--to", "bad alias!"],
        ["alias", "set", seed, "prod", "not-a-number"],
        ["cache", "prune", "--keep", "many"],
        ["migrate-stages", "--map", "Production"],
        ["webhook", "create", "--name", "x", "--url", "http://127.0.0.1:9/"],  # no --event
        ["models", "--no-such-option"],
    ]


def test_usage_errors_exit_2(reg):
    for args in usage_errors(reg.seed):
        result = reg.invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" or args == [], (args, result.stdout)
    bad_env = reg.invoke("versions", reg.seed, REGISTRY_SDK_TIMEOUT="soon")
    assert bad_env.exit_code == 2
    assert "REGISTRY_SDK_TIMEOUT" in bad_env.stderr


def unavailable_commands(port: int) -> list[list[str]]:
    uri = f"http://127.0.0.1:{port}"
    base = ["--tracking-uri", uri]
    return [
        [*base, "models"],
        [*base, "versions", "m", "--json"],
        [*base, "show", "m/1"],
        [*base, "resolve", "m@prod"],
        [*base, "lineage", "m/1"],
        [*base, "diff", "m/1", "m/2"],
        [*base, "history", "m"],
        [*base, "alias", "set", "m", "prod", "1"],
        [*base, "alias", "delete", "m", "prod"],
        [*base, "promote", "m/1", "--to", "prod"],
        [*base, "rollback", "m", "--alias", "prod"],
        [*base, "check", "m/1", "--require", "accuracy >= 0.5"],
        [*base, "pull", "m/1"],
        [*base, "migrate-stages", "m", "--dry-run"],
        [*base, "webhook", "list"],
        [*base, "doctor"],
        ["doctor", "--tracking-uri", uri, "--json"],
    ]


def test_an_unreachable_registry_exits_4(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    port = free_port()  # nothing listens there
    env = {
        "REGISTRY_SDK_TIMEOUT": "1",
        "REGISTRY_SDK_MAX_RETRIES": "0",
        "REGISTRY_SDK_CACHE_DIR": str(tmp_path / "cache"),
    }
    for args in unavailable_commands(port):
        result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
        assert result.exit_code == 4, (args, result.output)
        if "doctor" in args:
            assert "cannot reach" in result.stdout
        else:
            assert result.stderr.startswith("Error: "), (args, result.stderr)
            assert f"cannot reach the registry at http://127.0.0.1:{port}" in result.stderr


# ================================================================================ push


def test_push_registers_what_waits_in_the_outbox(tmp_path, monkeypatch):
    """Trained while the registry is down: `registry push` registers it once it is back."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    server = pinned_sqlite_server(tmp_path / "server")  # not started: the registry is down
    cache = tmp_path / "cache"
    env = {
        "REGISTRY_SDK_CACHE_DIR": str(cache),
        "REGISTRY_SDK_TIMEOUT": "2",
        "REGISTRY_SDK_MAX_RETRIES": "0",
    }

    def invoke(*args):
        return CliRunner().invoke(
            cli, ["--tracking-uri", server.uri, *args], env=env, catch_exceptions=False
        )

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    try:
        down = invoke("push")
        assert down.stdout == "nothing waiting in the outbox\n", "an empty outbox needs no server"
        client = RegistryClient(
            server.uri, registry_uri=server.uri, cache_dir=cache, timeout=2, max_retries=0
        )

        @rs.register("pushed", alias="prod", client=client)
        def train(X, y):
            return LogisticRegression().fit(X, y), {"accuracy": 0.75}

        X, y = dataset()
        with pytest.warns(rs.PendingRegistrationWarning, match="registry push"):
            train(X, y)
        assert train.last_version is None

        failed = invoke("push", "--json")
        assert failed.exit_code == 4, failed.output
        assert f"the tracking server at {server.uri} cannot be reached" in failed.stderr
        assert failed.stdout == ""

        server.start()
        pushed = invoke("push", "--json")
        assert pushed.exit_code == 0, pushed.output
        assert "View run" in pushed.stderr, "MLflow's run links go to stderr, not into the JSON"
        (version,) = json.loads(pushed.stdout)
        assert set(version) == VERSION_KEYS
        assert (version["ref"], version["aliases"]) == ("pushed/1", ["prod"])
        assert version["metrics"] == {"accuracy": 0.75}

        again = invoke("push")
        assert (again.exit_code, again.stdout) == (0, "nothing waiting in the outbox\n")
        assert [
            v["version"] for v in json.loads(invoke("versions", "pushed", "--json").stdout)
        ] == [1]
        vanilla = mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
        assert vanilla.get_model_version_by_alias("pushed", "prod").version == "1"
        client.close()
    finally:
        server.stop()
        mlflow.set_tracking_uri(previous)


def test_push_table_form_names_each_registered_version(tmp_path, monkeypatch):
    """Pushing twice in a row: the table form lists what it registered, then nothing."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    from registry_sdk import _outbox

    store = f"sqlite:///{tmp_path / 'outbox.db'}"
    cache = tmp_path / "cache"
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    try:
        # Stage an entry the way @register does when the push fails, then push it from the CLI.
        key = uuid.uuid4().hex
        staging = _outbox.new_entry_dir(cache, key)
        X, y = dataset()
        mlflow.sklearn.save_model(LogisticRegression().fit(X, y), staging / _outbox.MODEL_DIR)
        _outbox.commit(
            _outbox.Entry(
                path=staging,
                key=key,
                name="staged",
                tracking_uri=store,
                registry_uri=store,
                alias="candidate",
                metrics={"accuracy": 0.7},
                params={"C": "1.0"},
            )
        )
        env = {"REGISTRY_SDK_CACHE_DIR": str(cache)}
        result = CliRunner().invoke(
            cli, ["--tracking-uri", store, "push"], env=env, catch_exceptions=False
        )
        assert (result.exit_code, result.stdout) == (0, "registered staged/1\n"), result.output
        result = CliRunner().invoke(
            cli, ["--tracking-uri", store, "push", "--json"], env=env, catch_exceptions=False
        )
        assert (result.exit_code, json.loads(result.stdout)) == (0, [])
        resolved = CliRunner().invoke(
            cli, ["--tracking-uri", store, "resolve", "staged@candidate"], env=env
        )
        assert resolved.stdout == "staged/1\n"
    finally:
        mlflow.set_tracking_uri(previous)


def test_every_command_is_covered():
    """This module (test_serve.py for `serve`, test_cli_outbox.py for `outbox`, test_signing.py
    for `sign`) exercises every command of the CLI."""
    covered = {
        "models", "versions", "show", "resolve", "lineage", "diff", "history", "alias",
        "promote", "rollback", "check", "pull", "push", "cache", "migrate-stages", "webhook",
        "doctor", "serve", "verify", "seal", "outbox",
    }  # fmt: skip
    assert covered <= set(cli.commands)
    assert set(cli.commands["alias"].commands) == {"set", "delete"}
    assert set(cli.commands["outbox"].commands) == {"ls", "push", "discard"}
    assert set(cli.commands["cache"].commands) == {"ls", "verify", "prune"}
    assert set(cli.commands["webhook"].commands) == {"create", "list", "delete", "test"}
    # Commands added since need tests of their own (export/import have their own module, and
    # sign, which needs the production store's signing fixture, test_signing.py).
    assert set(cli.commands) - covered <= {"export", "import", "sign"}


DOCS = Path(__file__).resolve().parents[2] / "docs" / "guide" / "cli.md"


def test_the_cli_docs_name_every_command_exit_code_and_json_key():
    text = DOCS.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("### `registry ")]
    for name, command in cli.commands.items():
        (heading,) = [h for h in headings if re.search(rf"`registry {name}[` ]", h)]
        for sub in getattr(command, "commands", {}):
            assert f"`{sub}`" in heading or f"`registry {name} {sub}`" in heading, (name, sub)
    for code in range(7):
        assert f"\n| {code} | " in text, code
    schemas = (
        MODEL_KEYS, VERSION_KEYS, RESOLVE_KEYS, LINEAGE_KEYS, RUN_KEYS, ENVIRONMENT_KEYS,
        DIFF_KEYS, EVENT_KEYS, REJECTED_KEYS, CHECK_KEYS, GATE_KEYS, MIGRATION_KEYS, PULL_KEYS,
        CACHE_KEYS, VERIFY_KEYS, INTEGRITY_KEYS, WEBHOOK_KEYS, WEBHOOK_TEST_KEYS, DOCTOR_KEYS,
    )  # fmt: skip
    for key in sorted(set().union(*schemas)):
        assert f'"{key}"' in text or f"`{key}`" in text, key
    assert 'eval "$(_REGISTRY_COMPLETE=bash_source registry)"' in text

"""Lifecycle and lineage on real registries: gates, promotion order, rollback, alias history,
the move lock, stage migration, lineage of a fine-tuned model, and diffs between versions.

Tests that take the ``client`` fixture run on all three backends (embedded SQLite, ``mlflow
server`` over SQLite, over PostgreSQL). Each test makes its own uniquely named models.
"""

from __future__ import annotations

import getpass
import html
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import attrs
import mlflow
import numpy as np
import pytest
from mlflow.tracking import fluent
from sklearn.linear_model import Ridge

import registry_sdk as rs
from registry_sdk import _tags, lifecycle
from registry_sdk.capture import fingerprint
from registry_sdk.entities import AliasEvent, RegisteredModel
from registry_sdk.errors import (
    AliasNotFoundError,
    NotFoundError,
    PromotionRejectedError,
    RegistryError,
)
from registry_sdk.lifecycle import LOCK_PREFIX, MigrationStep

SCRIPTS = Path(__file__).parent / "scripts"
TRAIN_DEP = SCRIPTS / "lifecycle_train_dep.py"
#: Only so that a hung child fails the test instead of hanging it; nothing is timed.
SUBPROCESS_TIMEOUT = 300


@pytest.fixture(autouse=True)
def isolated_mlflow(monkeypatch: pytest.MonkeyPatch):
    """No MLFLOW_* / REGISTRY_SDK_* variable of the caller leaks in; MLflow's state is restored."""
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            monkeypatch.delenv(key)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    monkeypatch.setattr(fluent, "_active_experiment_id", fluent._active_experiment_id)
    yield
    mlflow.set_tracking_uri(previous)


# ============================================================================ helpers


def unique(label: str) -> str:
    return f"lc-{label}-{uuid.uuid4().hex[:10]}"


def source(name: str, n: int) -> str:
    # The server refuses local paths without a run; an s3 URI is stored and never fetched.
    return f"s3://registry-sdk-it/{name}/{n}"


def vanilla(client: rs.RegistryClient) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=client.tracking_uri, registry_uri=client.registry_uri)


def every_model_named(client: rs.RegistryClient, pattern: str) -> set[str]:
    """Names of every registered model matching ``name LIKE pattern``, lock models included.

    Straight from the store's API, not through a client that filters: MLflow 3's client adds a
    filter on prompt tags that an MLflow 2.9 server answers with nothing at all.
    """
    filter_string = f"name LIKE '{pattern}'"
    if not client.settings.is_remote:
        return {m.name for m in vanilla(client).search_registered_models(filter_string)}
    import requests

    reply = requests.get(
        f"{client.registry_uri}/api/2.0/mlflow/registered-models/search",
        params={"filter": filter_string, "max_results": 1000},
        timeout=30,
    )
    reply.raise_for_status()
    return {m["name"] for m in reply.json().get("registered_models", [])}


def model_with_versions(client: rs.RegistryClient, label: str, *metrics: dict[str, float]) -> str:
    """A new model with one version per ``metrics`` dict, its values as metric tags."""
    name = unique(label)
    client.create_model(name)
    for n, values in enumerate(metrics, start=1):
        tags = {f"{_tags.METRICS_PREFIX}{k}": repr(v) for k, v in values.items()}
        assert client.create_version(name, source(name, n), tags=tags).version == n
    return name


def holder(client: rs.RegistryClient, name: str, alias: str = "prod") -> int | None:
    return client.get_model(name).aliases.get(alias)


def moves(client: rs.RegistryClient, name: str, alias: str = "prod") -> list[tuple]:
    return [(e.from_version, e.to_version, e.external) for e in client.history(name, alias=alias)]


def lock_of(name: str, alias: str = "prod") -> str:
    return f"{LOCK_PREFIX}{name}.{alias}"


def assert_no_lock(client: rs.RegistryClient, name: str, alias: str = "prod") -> None:
    with pytest.raises(NotFoundError):
        client.backend.get_model(lock_of(name, alias))


# ============================================================================ gates


def test_numeric_gate_passes_and_fails(client):
    name = model_with_versions(client, "numeric", {"accuracy": 0.82}, {"accuracy": 0.93})

    event = client.promote(f"{name}/2", to="prod", require=["accuracy >= 0.9"])
    assert (event.from_version, event.to_version, event.forced) == (None, 2, False)
    assert holder(client, name) == 2

    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/1", to="prod", require=["accuracy >= 0.9"])
    assert "accuracy >= 0.9" in str(caught.value)
    assert "0.82" in str(caught.value)
    assert holder(client, name) == 2
    assert moves(client, name) == [(None, 2, False)]
    assert_no_lock(client, name)

    checked = client.check(f"{name}/1", ["accuracy >= 0.9", "accuracy >= 0.8", "accuracy < 0.5"])
    assert [(gate, passed) for gate, passed, _ in checked] == [
        ("accuracy >= 0.9", False),
        ("accuracy >= 0.8", True),
        ("accuracy < 0.5", False),
    ]
    assert holder(client, name) == 2  # check moves nothing


def test_gate_against_the_alias_holder_passes_fails_and_passes_without_one(client):
    name = model_with_versions(
        client, "vs-prod", {"accuracy": 0.90}, {"accuracy": 0.87}, {"accuracy": 0.95}
    )

    # Nobody holds @prod yet: for a promotion to @prod there is nothing to beat.
    [(gate, passed, detail)] = client.check(f"{name}/2", ["accuracy >= @prod"], to="prod")
    assert (gate, passed, detail) == ("accuracy >= @prod", True, "no version holds @prod yet")
    client.promote(f"{name}/1", to="prod", require=["accuracy >= @prod"])

    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/2", to="prod", require=["accuracy >= @prod"])
    message = str(caught.value)
    for part in ("accuracy >= @prod", "0.87", "0.9", f"{name}/1", f"{name}/2"):
        assert part in message, part
    assert holder(client, name) == 1

    client.promote(f"{name}/3", to="prod", require=["accuracy >= @prod"])
    assert holder(client, name) == 3
    # Compared with the holder of another alias than the target, too.
    with pytest.raises(PromotionRejectedError, match=r"0\.9 >= .*0\.95"):
        client.promote(f"{name}/1", to="staging", require=["accuracy >= @prod"])


def test_gate_against_an_alias_nobody_holds_fails_unless_target_or_allowed(client):
    name = model_with_versions(client, "missing", {"accuracy": 0.9}, {"accuracy": 0.8})
    client.set_alias(name, "staging", 1)
    client.set_alias(name, "prod", 1)
    typo = "accuracy >= @champion"  # meant @prod

    [(gate, passed, detail)] = client.check(f"{name}/2", [typo])
    assert (gate, passed) == (typo, False)
    assert detail.startswith(f"no version holds @champion; {name} has aliases @prod, @staging;")
    assert "--allow-missing" in detail
    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/2", to="prod", require=[typo])
    assert list(caught.value.failures) == [f"{typo}: {detail}"]
    assert holder(client, name) == 1
    assert moves(client, name) == [(None, 1, False)]
    assert_no_lock(client, name)

    # allow_missing=True: the gate passes and says why.
    [(_, passed, detail)] = client.check(f"{name}/2", [typo], allow_missing=True)
    assert passed is True
    assert "missing aliases are allowed" in detail
    client.promote(f"{name}/2", to="prod", require=[typo], allow_missing=True)
    assert holder(client, name) == 2

    # The promotion target itself: its first promotion has nothing to beat; no other alias is
    # excused by being the target of something else.
    event = client.promote(f"{name}/2", to="champion", require=[typo, "accuracy >= @prod"])
    assert (event.from_version, event.to_version, event.forced) == (None, 2, False)
    with pytest.raises(PromotionRejectedError, match="no version holds @canary"):
        client.promote(f"{name}/1", to="shadow", require=["accuracy >= @canary"])
    assert holder(client, name, "shadow") is None


def test_callable_gates(client):
    name = unique("callable")
    client.create_model(name)
    client.create_version(name, source(name, 1), tags={"approved_by": "alice"})
    client.create_version(name, source(name, 2))

    def approved(mv):
        return "approved_by" in mv.tags

    def small_enough(mv):
        return mv.version < 10, f"{mv.ref} is version {mv.version}"

    client.promote(f"{name}/1", to="prod", require=[approved, small_enough])
    assert holder(client, name) == 1
    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/2", to="prod", require=[approved, small_enough])
    assert caught.value.failures == ("approved: failed",)
    assert holder(client, name) == 1


def test_rejection_names_every_failed_gate_with_both_values(client):
    name = model_with_versions(
        client,
        "reject",
        {"accuracy": 0.9123454, "latency_ms": 30.0},
        {"accuracy": 0.9123451, "latency_ms": 42.5},
    )
    client.promote(f"{name}/1", to="prod")
    history_before = moves(client, name)

    def reviewed(mv):
        return False, f"nobody reviewed {mv.ref}"

    gates = [
        "accuracy >= @prod",  # fails, by 3e-7: both values must be shown in full
        "latency_ms <= 40",  # fails
        "accuracy >= 0.95",  # fails
        "latency_ms <= 100",  # passes
        reviewed,  # fails
        lambda _mv: True,  # passes
    ]
    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/2", to="prod", require=gates)
    error = caught.value
    message = str(error)
    expected = [
        ("accuracy >= @prod", ["0.9123451", "0.9123454", f"{name}/1", f"{name}/2"]),
        ("latency_ms <= 40", ["42.5", "40"]),
        ("accuracy >= 0.95", ["0.9123451", "0.95"]),
        ("reviewed", [f"nobody reviewed {name}/2"]),
    ]
    assert len(error.failures) == len(expected)
    for failure, (gate, values) in zip(error.failures, expected, strict=True):
        assert failure.startswith(f"{gate}: "), failure
        for value in values:
            assert value in failure, (value, failure)
        assert failure in message
    assert "latency_ms <= 100" not in message
    assert "<lambda>" not in message
    assert holder(client, name) == 1
    assert moves(client, name) == history_before
    assert_no_lock(client, name)


def test_bad_gate_string_raises_value_error_and_moves_nothing(client):
    name = model_with_versions(client, "bad-gate", {"accuracy": 0.9})
    with pytest.raises(ValueError, match="invalid gate") as caught:
        client.promote(f"{name}/1", to="prod", require=["accuracy => 0.5"])
    assert "METRIC OP NUMBER" in str(caught.value)
    assert "METRIC OP @ALIAS" in str(caught.value)
    with pytest.raises(ValueError, match="METRIC OP @ALIAS"):
        client.check(f"{name}/1", ["accuracy >= @"])
    assert holder(client, name) is None
    assert moves(client, name) == []
    assert_no_lock(client, name)


def test_promotion_order_and_force(client):
    name = model_with_versions(client, "order", {"accuracy": 0.9}, {"accuracy": 0.8})
    client.set_promotion_order(name, ["staging", "prod"])
    assert client.get_model(name).tags[_tags.PROMOTION_ORDER] == "staging,prod"

    with pytest.raises(PromotionRejectedError) as caught:
        client.promote(f"{name}/1", to="prod")
    assert caught.value.failures == (
        "promotion order staging,prod: version 1 must reach @staging before @prod",
    )
    assert holder(client, name) is None

    first = client.promote(f"{name}/1", to="staging")
    assert first.forced is False
    assert client.promote(f"{name}/1", to="prod").forced is False
    assert holder(client, name) == 1

    # Version 2 skips staging: refused, then forced through and recorded as forced.
    with pytest.raises(PromotionRejectedError, match="must reach @staging"):
        client.promote(f"{name}/2", to="prod")
    forced = client.promote(f"{name}/2", to="prod", reason="hotfix", force=True)
    assert (forced.from_version, forced.to_version, forced.forced) == (1, 2, True)
    assert forced.reason is not None
    assert forced.reason.startswith("hotfix; forced past: ")
    assert "must reach @staging" in forced.reason

    prod = client.history(name, alias="prod")
    assert [(e.from_version, e.to_version, e.forced) for e in prod] == [
        (None, 1, False),
        (1, 2, True),
    ]
    assert prod[-1].reason == forced.reason
    assert [e.forced for e in client.history(name, alias="staging")] == [False]

    # Forcing past a failed gate is recorded the same way; forcing when nothing fails is not.
    gated = client.promote(f"{name}/2", to="staging", require=["accuracy >= 0.85"], force=True)
    assert gated.forced is True
    assert "accuracy >= 0.85" in (gated.reason or "")
    unneeded = client.promote(f"{name}/1", to="staging", force=True)
    assert unneeded.forced is False
    assert unneeded.reason is None


# ============================================================================ rollback and history


def test_rollback_walks_back_through_promotions(client):
    name = model_with_versions(client, "rollback", {}, {}, {})
    for n in (1, 2, 3):
        client.promote(f"{name}/{n}", to="prod")

    back = client.rollback(name, "prod")
    assert (back.from_version, back.to_version, back.reason) == (3, 2, "rollback")
    assert holder(client, name) == 2
    further = client.rollback(name, "prod", reason="bad data")
    assert (further.from_version, further.to_version) == (2, 1)
    assert further.reason == "rollback: bad data"
    assert holder(client, name) == 1
    with pytest.raises(RegistryError, match="no earlier version") as caught:
        client.rollback(name, "prod")
    assert f"{name}@prod" in str(caught.value)
    assert holder(client, name) == 1

    # A new promotion is undone by the next rollback, back to the version it replaced.
    client.promote(f"{name}/3", to="prod")
    assert client.rollback(name, "prod").to_version == 1
    assert [(e.from_version, e.to_version) for e in client.history(name, alias="prod")] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 1),
        (1, 3),
        (3, 1),
    ]
    assert_no_lock(client, name)


def test_rollback_without_an_earlier_holder_raises(client):
    name = model_with_versions(client, "no-earlier", {}, {})
    with pytest.raises(AliasNotFoundError, match="no alias 'prod'"):
        client.rollback(name, "prod")
    client.promote(f"{name}/2", to="prod")
    with pytest.raises(RegistryError, match="no earlier version") as caught:
        client.rollback(name, "prod")
    assert not isinstance(caught.value, AliasNotFoundError)
    assert holder(client, name) == 2
    assert moves(client, name) == [(None, 2, False)]
    assert_no_lock(client, name)


def test_alias_moved_with_vanilla_mlflow_shows_as_external(client):
    name = model_with_versions(client, "external", {}, {}, {})
    client.promote(f"{name}/1", to="prod")
    vanilla(client).set_registered_model_alias(name, "prod", "2")

    last = client.history(name, alias="prod")[-1]
    assert (last.from_version, last.to_version, last.external) == (1, 2, True)
    assert last.by == "unknown"
    assert last.forced is False

    # Still there after registry_sdk moves the alias again, as a gap in the chain.
    client.promote(f"{name}/3", to="prod")
    assert moves(client, name) == [(None, 1, False), (1, 2, True), (2, 3, False)]
    # Rollback goes back to the version the alias left, however it got there.
    assert client.rollback(name, "prod").to_version == 2

    vanilla(client).delete_registered_model_alias(name, "prod")
    assert moves(client, name)[-1] == (2, None, True)
    assert [e.alias for e in client.history(name)] == ["prod"] * 5


def test_move_lock_is_hidden_from_searches_and_released(client):
    name = model_with_versions(client, "lock", {})
    lock = lock_of(name)
    pattern = f"name LIKE '%{name}%'"
    with lifecycle.alias_lock(client, name, "prod"):
        # It is a real registered model while held (so hiding it is not vacuous)...
        assert vanilla(client).get_registered_model(lock).name == lock
        assert every_model_named(client, f"%{name}%") == {name, lock}
        # ...which registry_sdk's searches never show.
        assert [m.name for m in client.search_models(pattern)] == [name]
        assert lock not in {m.name for m in client.search_models()}
    assert_no_lock(client, name)

    client.set_alias(name, "prod", 1)
    client.delete_alias(name, "prod")
    assert_no_lock(client, name)
    assert every_model_named(client, f"%{name}%") == {name}


@pytest.mark.parametrize("taken_at", ["an hour ago", "garbage"])
def test_stale_move_lock_is_broken(client, taken_at):
    name = model_with_versions(client, "stale", {})
    at = str(time.time() - 3600) if taken_at == "an hour ago" else "not-a-time"
    vanilla(client).create_registered_model(
        lock_of(name),
        tags={"registry_sdk.lock.at": at, "registry_sdk.lock.owner": "dead-host:1:0"},
    )
    event = client.set_alias(name, "prod", 1)
    assert (event.from_version, event.to_version) == (None, 1)
    assert holder(client, name) == 1
    assert_no_lock(client, name)


def test_live_move_lock_is_waited_for_not_broken(client, monkeypatch):
    name = model_with_versions(client, "live-lock", {})
    vanilla(client).create_registered_model(
        lock_of(name),
        tags={"registry_sdk.lock.at": str(time.time()), "registry_sdk.lock.owner": "other:1:0"},
    )
    monkeypatch.setattr(lifecycle, "LOCK_WAIT_S", 0.3)
    try:
        with pytest.raises(RegistryError, match="could not get the move lock"):
            client.set_alias(name, "prod", 1)
        assert holder(client, name) is None
        assert (
            client.backend.get_model(lock_of(name)).tags["registry_sdk.lock.owner"] == "other:1:0"
        )
    finally:
        client.backend.delete_model(lock_of(name))
    assert client.set_alias(name, "prod", 1).to_version == 1


def test_event_stamps_stay_ordered_within_one_millisecond(monkeypatch):
    # Events are stored to the millisecond. A move 0.6 ms after the last one must still get a
    # later stamp, or the two events would share one and their order would be a coin toss.
    last_ms = 1_700_000_000_123
    last = AliasEvent(
        name="m",
        alias="prod",
        from_version=None,
        to_version=1,
        by="a",
        at=datetime.fromtimestamp(last_ms / 1000, tz=timezone.utc),
    )
    model = RegisteredModel(
        name="m", tags={f"{_tags.ALIAS_LOG_PREFIX}{last_ms:013d}.0000abcd": last.to_tag_value()}
    )

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(last_ms / 1000 + 0.0006, tz=tz)

    monkeypatch.setattr(lifecycle, "datetime", Clock)
    at = lifecycle._event_time(model)
    stored = AliasEvent.from_tag_value("m", attrs.evolve(last, at=at).to_tag_value())
    assert stored.at > last.at


# ============================================================================ stage migration


def transition(client: rs.RegistryClient, name: str, version: int, stage: str) -> None:
    """Set a stage the way a registry still on stages did: vanilla MLflow's deprecated API."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        vanilla(client).transition_model_version_stage(
            name, str(version), stage, archive_existing_versions=False
        )


def registry_state(client: rs.RegistryClient, name: str) -> tuple:
    """Everything a migration could change, read with vanilla MLflow."""
    model = vanilla(client).get_registered_model(name)
    stages = {
        int(mv.version): mv.current_stage
        for mv in vanilla(client).search_model_versions(f"name = '{name}'")
    }
    locks = every_model_named(client, f"{LOCK_PREFIX}%{name}%")
    return dict(model.aliases), dict(model.tags), stages, locks


def staged_model(client: rs.RegistryClient, label: str) -> str:
    """Versions 1 and 2 in Production (2 is newer), 3 in Staging, 4 Archived, 5 in no stage."""
    name = model_with_versions(client, label, {}, {}, {}, {}, {})
    for version, stage in ((1, "Production"), (2, "Production"), (3, "Staging"), (4, "Archived")):
        transition(client, name, version, stage)
    return name


def test_migrate_stages_sets_aliases_once(client):
    name = staged_model(client, "migrate")
    steps = client.migrate_stages(name)
    assert steps == [
        MigrationStep(name, "Production", "prod", 2, None, applied=True),
        MigrationStep(name, "Staging", "staging", 3, None, applied=True),
    ]
    assert dict(client.get_model(name).aliases) == {"prod": 2, "staging": 3}
    assert [(e.alias, e.to_version, e.reason) for e in client.history(name)] == [
        ("prod", 2, "migrated from stage Production"),
        ("staging", 3, "migrated from stage Staging"),
    ]
    assert json.loads(json.dumps([s.to_dict() for s in steps]))[0]["alias"] == "prod"

    # A second run changes nothing at all.
    state = registry_state(client, name)
    assert client.migrate_stages(name) == []
    assert registry_state(client, name) == state
    assert state[3] == set()  # no move lock left behind

    # Stages are left as they were: the migration only adds aliases.
    assert state[2] == {1: "Production", 2: "Production", 3: "Staging", 4: "Archived", 5: "None"}


def test_migrate_stages_dry_run_changes_nothing(client):
    name = staged_model(client, "dry-run")
    client.set_alias(name, "prod", 1, reason="set by hand earlier")
    before = registry_state(client, name)
    history_before = client.history(name)

    planned = client.migrate_stages(name, dry_run=True)
    assert planned == [
        MigrationStep(name, "Production", "prod", 2, 1, applied=False),
        MigrationStep(name, "Staging", "staging", 3, None, applied=False),
    ]
    assert registry_state(client, name) == before
    assert client.history(name) == history_before

    applied = client.migrate_stages(name)
    assert [attrs_without_applied(s) for s in applied] == [
        attrs_without_applied(s) for s in planned
    ]
    assert all(s.applied for s in applied)
    assert dict(client.get_model(name).aliases) == {"prod": 2, "staging": 3}
    assert client.migrate_stages(name, dry_run=True) == []


def test_migrate_stages_with_a_custom_mapping(client):
    name = staged_model(client, "mapping")
    steps = client.migrate_stages(name, mapping={"production": "live"})
    assert [(s.stage, s.alias, s.version) for s in steps] == [("Production", "live", 2)]
    assert dict(client.get_model(name).aliases) == {"live": 2}


def attrs_without_applied(step: MigrationStep) -> tuple:
    return (step.name, step.stage, step.alias, step.version, step.previous)


# ============================================================================ lineage


@pytest.fixture
def experiment(client, tmp_path, monkeypatch):
    """A fresh experiment that ``@register`` runs go to; its artifacts stay under tmp_path."""
    name = unique("experiment")
    kwargs = {}
    if not client.tracking_uri.startswith("http"):
        # The embedded store would otherwise put artifacts in ./mlruns of the working directory.
        kwargs["artifact_location"] = (tmp_path / "artifacts").as_uri()
    vanilla(client).create_experiment(name, **kwargs)
    # As a job names its experiment for whatever tracking server the client uses (MLflow's
    # active experiment counts only where MLflow's global tracking URI is the client's).
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return name


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([2.0, -1.0, 0.5]) + np.sin(X[:, 0])
    return X, y


def assert_run_code_git(lin, experiment: str) -> None:
    # The run: where, with which params and metrics.
    assert lin.run is not None
    assert lin.run.run_id == lin.version.run_id
    assert lin.run.experiment_name == experiment
    assert dict(lin.run.params) == {"alpha": "0.5"}
    assert lin.run.metrics["r2"] == 0.75
    assert 0.0 <= lin.run.metrics["residual_r2"] <= 1.0
    assert dict(lin.metrics) == dict(lin.run.metrics)
    assert dict(lin.params) == {"alpha": "0.5"}

    # Code and git (this test file lives in the project's repository).
    assert lin.code["function"].endswith("finetune")
    assert re.fullmatch(r"[0-9a-f]{64}", lin.code["sha256"])
    assert re.fullmatch(r"[0-9a-f]{40}", lin.git["commit"])
    assert lin.git["commit"] == lin.run.tags["mlflow.source.git.commit"]
    assert lin.git.get("dirty") in {"true", "false"}
    if shutil.which("git"):
        known = subprocess.run(
            ["git", "cat-file", "-e", f"{lin.git['commit']}^{{commit}}"],
            cwd=Path(__file__).parent,
            check=False,
        )
        assert known.returncode == 0


def assert_environment_and_data(lin, X, y) -> None:
    assert lin.environment is not None
    assert lin.environment.python == platform.python_version()
    assert lin.environment.packages["scikit-learn"] == importlib.metadata.version("scikit-learn")
    assert lin.environment.packages["numpy"] == importlib.metadata.version("numpy")
    assert dict(lin.data) == {"X": fingerprint(X), "y": fingerprint(y)}


def assert_serialisable(lin, base_name: str, experiment: str, X) -> None:
    child_ref = lin.version.ref
    data = json.loads(json.dumps(lin.to_dict()))
    assert data["ref"] == child_ref
    assert data["derived_from"] == [f"{base_name}/1"]
    assert data["run"]["params"] == {"alpha": "0.5"}
    assert data["run"]["experiment_name"] == experiment
    assert (
        data["environment"]["packages"]["scikit-learn"] == lin.environment.packages["scikit-learn"]
    )
    assert data["data"]["X"]["sha256"] == fingerprint(X)["sha256"]
    assert [e["alias"] for e in data["alias_events"]] == ["staging", "prod"]
    assert data["git"]["commit"] == lin.git["commit"]

    page = lin._repr_html_()
    assert page.startswith("<div>")
    assert f"Lineage of {child_ref}" in page
    assert f"{base_name}/1" in page
    assert lin.run.run_id in page


def test_lineage_of_a_model_fine_tuned_from_base_prod(client, experiment):
    X, y = dataset()
    base_name, child_name = unique("base"), unique("child")

    @rs.register(base_name, alias="prod", client=client)
    def train_base(X, y, alpha: float = 1.0):
        model = Ridge(alpha=alpha).fit(X, y)
        return model, {"r2": model.score(X, y)}

    train_base(X, y)
    assert train_base.last_version is not None
    assert train_base.last_version.version == 1

    @rs.register(child_name, alias="staging", client=client)
    def finetune(X, y, alpha: float = 0.5):
        base = rs.load_model(f"{base_name}@prod", client=client)
        residual = y - np.asarray(base.predict(X))
        model = Ridge(alpha=alpha).fit(X, residual)
        rs.log_metric("residual_r2", model.score(X, residual))
        return model, {"r2": 0.75}

    finetune(X, y)
    assert finetune.last_version is not None
    child_ref = f"{child_name}/1"
    client.promote(child_ref, to="prod", reason="beats the base")

    lin = client.lineage(f"{child_name}@prod")
    assert lin.version.ref == child_ref
    assert lin.derived_from == (f"{base_name}/1",)
    assert lin.created_by == f"{getpass.getuser()}@{platform.node()}"

    assert_run_code_git(lin, experiment)
    assert_environment_and_data(lin, X, y)

    # The version's alias events, oldest first.
    assert [(e.alias, e.from_version, e.to_version) for e in lin.alias_events] == [
        ("staging", None, 1),
        ("prod", None, 1),
    ]
    assert lin.alias_events[-1].reason == "beats the base"

    # The base says nothing was derived, and has its own alias event.
    base = client.lineage(f"{base_name}@prod")
    assert base.derived_from == ()
    assert base.run is not None
    assert dict(base.params) == {"alpha": "1.0"}
    assert [(e.alias, e.to_version) for e in base.alias_events] == [("prod", 1)]

    assert_serialisable(lin, base_name, experiment, X)


# ============================================================================ diff

LINEAGE_DEP = '''
"""A tiny linear model library, installed at two versions by the diff test."""

import numpy as np

__version__ = "{version}"


class Linear:
    def __init__(self, coef, intercept):
        self.coef = coef
        self.intercept = intercept

    @classmethod
    def fit(cls, X, y, alpha, epochs, seed):
        rng = np.random.default_rng(seed)
        coef, intercept = rng.normal(size=X.shape[1]) * 0.01, 0.0
        for _ in range(epochs):
            error = X @ coef + intercept - y
            coef = coef - 0.1 * (X.T @ error / len(y) + alpha * coef)
            intercept = intercept - 0.1 * float(error.mean())
        return cls(coef, intercept)

    def predict(self, X):
        return np.asarray(X) @ self.coef + self.intercept
'''


def install_fake(root: Path, version: str) -> Path:
    """``lineage_dep`` at ``version``: the package and its dist-info, as pip would lay them out.

    The directory is named ``site-packages`` like a real one.
    """
    site = root / f"v{version}" / "site-packages"
    package = site / "lineage_dep"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(LINEAGE_DEP.format(version=version)))
    info = site / f"lineage_dep-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: lineage-dep\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "top_level.txt").write_text("lineage_dep\n", encoding="utf-8")
    (info / "RECORD").write_text(
        "lineage_dep/__init__.py,,\n"
        f"lineage_dep-{version}.dist-info/METADATA,,\n"
        f"lineage_dep-{version}.dist-info/top_level.txt,,\n"
        f"lineage_dep-{version}.dist-info/RECORD,,\n",
        encoding="utf-8",
    )
    return site


def train_with_dep(uri: str, name: str, site: Path, workdir: Path, *args: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")) and k != "PYTHONPATH"
    }
    env.update(
        MLFLOW_TRACKING_URI=uri,
        PYTHONPATH=str(site),
        REGISTRY_SDK_CACHE_DIR=str(workdir / "cache"),
    )
    workdir.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, str(workdir.parent / TRAIN_DEP.name), name, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_diff_shows_exactly_the_changed_params_and_package(mlflow_server_sqlite, tmp_path):
    # The second version really is trained with a different version of a distribution its
    # model uses: each training runs in its own process whose sys.path holds one of two
    # installs of `lineage_dep` (1.0 or 2.0, a package plus its dist-info, as pip lays them
    # out). Nothing is installed into the virtualenv and no tag is written by hand: the
    # versions in the diff are what @register captured. The script is copied out of the
    # repository, so git state (which a concurrent commit could change) is absent from both.
    shutil.copy(TRAIN_DEP, tmp_path / TRAIN_DEP.name)
    old, new = install_fake(tmp_path, "1.0"), install_fake(tmp_path, "2.0")
    name = unique("diff")
    uri = mlflow_server_sqlite.uri
    client = rs.RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, max_retries=1
    )
    client.create_model(name)  # so that the two trainings cannot race to create it
    with ThreadPoolExecutor(2) as pool:  # both at once: which becomes version 1 does not matter
        first = pool.submit(train_with_dep, uri, name, old, tmp_path / "a", "0.1", "5", "7")
        second = pool.submit(train_with_dep, uri, name, new, tmp_path / "b", "0.5", "20", "7")
        first_report, second_report = first.result(), second.result()
    v1, v2 = first_report["version"], second_report["version"]
    assert {v1, v2} == {1, 2}

    diff = client.diff(f"{name}/{v1}", f"{name}/{v2}")
    assert dict(diff.params) == {"alpha": ("0.1", "0.5"), "epochs": ("5", "20")}
    assert diff.packages_changed == {"lineage-dep": ("1.0", "2.0")}
    assert dict(diff.packages) == {"lineage-dep": ("1.0", "2.0")}
    assert diff.packages_added == {}
    assert diff.packages_removed == {}
    mse_a, mse_b = first_report["metrics"]["mse"], second_report["metrics"]["mse"]
    assert mse_a != mse_b
    assert set(diff.metrics) == {"mse"}  # n_rows is the same for both
    a, b, delta = diff.metrics["mse"]
    assert (a, b) == (mse_a, mse_b)
    assert delta == pytest.approx(mse_b - mse_a)
    assert dict(diff.git) == {}
    assert dict(diff.data) == {}
    assert not diff.is_empty

    # The diff is not empty by omission: both versions carry the captured facts it compared.
    one, two = client.lineage(f"{name}/{v1}"), client.lineage(f"{name}/{v2}")
    assert one.environment is not None
    assert two.environment is not None
    assert one.environment.packages["lineage-dep"] == "1.0"
    assert two.environment.packages["lineage-dep"] == "2.0"
    assert one.environment.packages["numpy"] == two.environment.packages["numpy"]
    assert set(one.data) == {"X", "y"}
    assert one.data == two.data
    assert dict(one.params) == {"alpha": "0.1", "epochs": "5", "seed": "7"}
    assert one.metrics["n_rows"] == two.metrics["n_rows"] == 64.0

    reverse = client.diff(f"{name}/{v2}", f"{name}/{v1}")
    assert reverse.packages_changed == {"lineage-dep": ("2.0", "1.0")}
    assert reverse.metrics["mse"][2] == pytest.approx(mse_a - mse_b)
    report = json.loads(json.dumps(diff.to_dict()))
    assert report["packages"]["changed"] == {"lineage-dep": {"a": "1.0", "b": "2.0"}}
    assert report["params"]["alpha"] == {"a": "0.1", "b": "0.5"}
    assert html.escape(f"Diff {name}/{v1} -> {name}/{v2}") in diff._repr_html_()
    client.close()

"""Typed results: built from MLflow's REST JSON or from MLflow's Python entities, identically."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import datetime, timezone

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_sdk import _tags
from registry_sdk.entities import AliasEvent, ModelVersion, RegisteredModel
from registry_sdk.errors import InvalidResponseError
from registry_sdk.refs import ModelRef

CREATED_MS = 1_700_000_000_123
UPDATED_MS = 1_700_000_005_000


def mlflow_version(**overrides):
    from mlflow.entities.model_registry import ModelVersion as MlflowModelVersion
    from mlflow.entities.model_registry import ModelVersionTag

    fields = {
        "name": "churn",
        "version": "3",
        "creation_timestamp": CREATED_MS,
        "last_updated_timestamp": UPDATED_MS,
        "description": "gradient boosting",
        "user_id": "alice",
        "current_stage": "Staging",
        "source": "s3://bucket/churn/3",
        "run_id": "run-3",
        "status": "READY",
        "status_message": None,
        "tags": [
            ModelVersionTag(f"{_tags.METRICS_PREFIX}auc", "0.91"),
            ModelVersionTag("team", "risk"),
        ],
        "run_link": "http://tracking/run-3",
        "aliases": ["prod", "champion"],
        **overrides,
    }
    return MlflowModelVersion(**fields)


def mlflow_model():
    from mlflow.entities.model_registry import RegisteredModel as MlflowRegisteredModel
    from mlflow.entities.model_registry import RegisteredModelAlias, RegisteredModelTag

    return MlflowRegisteredModel(
        "churn",
        creation_timestamp=CREATED_MS,
        last_updated_timestamp=UPDATED_MS,
        description="predicts churn",
        latest_versions=[mlflow_version(version="2"), mlflow_version(version="3")],
        tags=[RegisteredModelTag("owner", "risk-team")],
        aliases=[RegisteredModelAlias("prod", "3"), RegisteredModelAlias("canary", "2")],
    )


def rest_json(entity) -> dict:
    """The JSON an MLflow server sends for ``entity`` (its own proto-to-JSON conversion)."""
    from mlflow.utils.proto_json_utils import message_to_json

    return json.loads(message_to_json(entity.to_proto()))


# ============================================================================ ModelVersion


def test_a_version_from_json_and_from_mlflow_are_equal():
    entity = mlflow_version()

    from_mlflow = ModelVersion.from_mlflow(entity)
    from_json = ModelVersion.from_json(rest_json(entity))

    assert from_json == from_mlflow


def test_a_version_from_json_has_every_field():
    mv = ModelVersion.from_json(rest_json(mlflow_version()))

    assert mv == ModelVersion(
        name="churn",
        version=3,
        aliases=("champion", "prod"),
        tags={f"{_tags.METRICS_PREFIX}auc": "0.91", "team": "risk"},
        run_id="run-3",
        source="s3://bucket/churn/3",
        status="READY",
        description="gradient boosting",
        created_at=datetime.fromtimestamp(CREATED_MS / 1000, tz=timezone.utc),
        updated_at=datetime.fromtimestamp(UPDATED_MS / 1000, tz=timezone.utc),
        current_stage="Staging",
        user_id="alice",
        run_link="http://tracking/run-3",
    )
    assert mv.ref == "churn/3"
    assert mv.model_ref == ModelRef.of_version("churn", 3)


def test_a_version_with_only_name_and_version_gets_defaults():
    mv = ModelVersion.from_json({"name": "m", "version": "1"})

    assert (mv.aliases, dict(mv.tags), mv.source, mv.status, mv.current_stage) == (
        (),
        {},
        "",
        "READY",
        "None",
    )
    assert mv.created_at == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert (mv.run_id, mv.description, mv.user_id, mv.model_id) == (None, None, None, None)


def test_a_version_from_a_sparse_mlflow_entity_matches_the_sparse_json():
    entity = mlflow_version(
        description=None, user_id=None, current_stage=None, run_id=None, tags=None, aliases=None
    )

    assert ModelVersion.from_mlflow(entity) == ModelVersion.from_json(rest_json(entity))


def test_numbers_may_arrive_as_strings_or_integers():
    as_strings = ModelVersion.from_json(
        {"name": "m", "version": "7", "creation_timestamp": str(CREATED_MS)}
    )
    as_ints = ModelVersion.from_json({"name": "m", "version": 7, "creation_timestamp": CREATED_MS})

    assert as_strings == as_ints


def test_unknown_fields_in_a_version_are_ignored():
    known = rest_json(mlflow_version())
    newer = {
        **known,
        "deployment_job_state": {"job_id": "j1"},
        "params": [{"key": "a", "value": "1"}],
        "a_field_from_the_future": [1, 2, 3],
    }

    assert ModelVersion.from_json(newer) == ModelVersion.from_json(known)


def test_the_model_id_of_a_logged_model_is_kept():
    assert ModelVersion.from_json({"name": "m", "version": 1, "model_id": "m-abc"}).model_id == (
        "m-abc"
    )
    try:
        mlflow_mv = mlflow_version(model_id="m-abc")
    except TypeError:  # MLflow 2's ModelVersion has no model_id (logged models came with 3.0)
        assert ModelVersion.from_mlflow(mlflow_version()).model_id is None
    else:
        assert ModelVersion.from_mlflow(mlflow_mv).model_id == "m-abc"


def test_with_aliases_sorts_and_deduplicates():
    mv = ModelVersion(name="m", version=1)

    assert mv.with_aliases(["prod", "canary", "prod"]).aliases == ("canary", "prod")
    assert mv.aliases == ()


def test_versions_are_immutable():
    mv = ModelVersion.from_json(rest_json(mlflow_version()))

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        mv.version = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        mv.tags["team"] = "fraud"  # type: ignore[index]


def test_versions_with_equal_data_are_equal_and_hash_alike():
    a = ModelVersion.from_json({"name": "m", "version": "1", "tags": [{"key": "k", "value": "v"}]})
    b = ModelVersion.from_json({"name": "m", "version": 1, "tags": [{"key": "k", "value": "v"}]})

    assert a == b
    assert a.tags == {"k": "v"}


def test_a_version_prints_short_without_its_tags():
    mv = ModelVersion.from_mlflow(mlflow_version(aliases=["prod", "canary"]))

    assert mv.tags, "the version under test has tags"
    assert repr(mv) == "ModelVersion('churn', 3, aliases=('canary', 'prod'), status='READY')"
    assert str(mv) == repr(mv)
    assert "team" not in repr(mv)
    assert "run-3" in mv._repr_html_()  # notebooks keep the rich view


def test_the_documented_repr_of_a_version_is_what_it_prints():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "guide" / "register.md"
    shown = ModelVersion(name="churn", version=7, aliases=("staging",), tags={"k": "v"})

    assert f"train.last_version                         # {shown!r}\n" in docs.read_text()


# ============================================================================ metrics


def test_metrics_are_read_from_registry_sdk_metrics_tags():
    mv = ModelVersion(
        name="m",
        version=1,
        tags={
            f"{_tags.METRICS_PREFIX}auc": "0.91",
            f"{_tags.METRICS_PREFIX}rmse": "1e-3",
            f"{_tags.METRICS_PREFIX}loss.val": "-2",
            f"{_tags.METRICS_PREFIX}note": "n/a",
            f"{_tags.METRICS_PREFIX}missing": "nan",
            "auc": "0.5",
            "registry_sdk.data.rows": "100",
        },
    )

    assert dict(mv.metrics) == {"auc": 0.91, "rmse": 0.001, "loss.val": -2.0}


def test_metrics_survive_the_round_trip_through_mlflow_entities():
    mv = ModelVersion.from_mlflow(mlflow_version())

    assert dict(mv.metrics) == {"auc": 0.91}


def test_a_version_without_metric_tags_has_no_metrics():
    assert dict(ModelVersion(name="m", version=1, tags={"team": "risk"}).metrics) == {}


# ============================================================================ RegisteredModel


def test_a_model_from_json_and_from_mlflow_are_equal():
    entity = mlflow_model()

    assert RegisteredModel.from_json(rest_json(entity)) == RegisteredModel.from_mlflow(entity)


def test_a_model_from_json_has_every_field():
    rm = RegisteredModel.from_json(rest_json(mlflow_model()))

    assert rm.name == "churn"
    assert rm.description == "predicts churn"
    assert dict(rm.tags) == {"owner": "risk-team"}
    assert dict(rm.aliases) == {"prod": 3, "canary": 2}
    assert rm.latest_version == 3
    assert rm.created_at == datetime.fromtimestamp(CREATED_MS / 1000, tz=timezone.utc)
    assert rm.updated_at == datetime.fromtimestamp(UPDATED_MS / 1000, tz=timezone.utc)


def test_aliases_of_lists_the_aliases_pointing_at_a_version():
    rm = RegisteredModel(name="m", aliases={"prod": 3, "champion": 3, "canary": 2})

    assert rm.aliases_of(3) == ("champion", "prod")
    assert rm.aliases_of(2) == ("canary",)
    assert rm.aliases_of(1) == ()


def test_a_model_prints_short_without_its_tags():
    rm = RegisteredModel.from_json(rest_json(mlflow_model()))

    assert repr(rm) == (
        "RegisteredModel('churn', latest_version=3, aliases={'canary': 2, 'prod': 3})"
    )
    assert "risk-team" not in repr(rm)
    bare = RegisteredModel(name="m")
    assert repr(bare) == "RegisteredModel('m', latest_version=None, aliases={})"


def test_a_model_with_only_a_name_gets_defaults():
    rm = RegisteredModel.from_json({"name": "m"})

    assert (rm.description, dict(rm.tags), dict(rm.aliases), rm.latest_version) == (
        None,
        {},
        {},
        None,
    )


def test_unknown_fields_in_a_model_are_ignored():
    known = rest_json(mlflow_model())
    newer = {**known, "deployment_job_id": "j1", "workspace": "default", "new_thing": {}}

    assert RegisteredModel.from_json(newer) == RegisteredModel.from_json(known)


# ============================================================================ malformed JSON


@pytest.mark.parametrize(
    "data",
    [
        {"name": "m", "version": "abc"},
        {"name": "m", "version": "1.5"},
        {"name": "m", "version": True},
        {"name": "m", "version": None},
        {"name": "m", "version": math.inf},
        {"version": "1"},
        {"name": ["m"], "version": "1"},
        {"name": "m", "version": "1", "aliases": "prod"},
        {"name": "m", "version": "1", "tags": {"k": "v"}},
        {"name": "m", "version": "1", "tags": [{"value": "v"}]},
        {"name": "m", "version": "1", "tags": ["k=v"]},
        {"name": "m", "version": "1", "creation_timestamp": "yesterday"},
        {"name": "m", "version": "1", "creation_timestamp": 10**20},
        {"name": "m", "version": "1", "last_updated_timestamp": math.inf},
        {"name": "m", "version": "1", "status": 3},
        {"name": "m", "version": "1", "current_stage": ["Production"]},
        ["name", "m"],
        "m/1",
        None,
    ],
)
def test_a_malformed_version_is_an_invalid_response(data):
    with pytest.raises(InvalidResponseError):
        ModelVersion.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        {"description": "no name"},
        {"name": "m", "aliases": {"prod": "1"}},
        {"name": "m", "aliases": [{"alias": "prod"}]},
        {"name": "m", "aliases": [{"alias": "prod", "version": "x"}]},
        {"name": "m", "aliases": [{"alias": 1, "version": "1"}]},
        {"name": "m", "aliases": ["prod"]},
        {"name": "m", "latest_versions": {"version": "1"}},
        {"name": "m", "latest_versions": [{"version": "one"}]},
        {"name": "m", "latest_versions": ["1"]},
        {"name": "m", "tags": "owner=x"},
        {"name": "m", "creation_timestamp": -(10**20)},
        [],
    ],
)
def test_a_malformed_model_is_an_invalid_response(data):
    with pytest.raises(InvalidResponseError):
        RegisteredModel.from_json(data)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["1", "abc", "READY"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["key", "value", "alias", "version"]), children)
    ),
    max_leaves=10,
)
_entity_keys = st.sampled_from(
    [
        "name",
        "version",
        "aliases",
        "tags",
        "latest_versions",
        "creation_timestamp",
        "last_updated_timestamp",
        "source",
        "status",
        "current_stage",
    ]
)


@settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_entity_keys, _json_values))
def test_from_json_returns_an_entity_or_raises_invalid_response(data):
    with contextlib.suppress(InvalidResponseError):
        assert isinstance(ModelVersion.from_json(data), ModelVersion)
    with contextlib.suppress(InvalidResponseError):
        assert isinstance(RegisteredModel.from_json(data), RegisteredModel)


# ============================================================================ AliasEvent


def test_an_alias_event_round_trips_through_its_tag_value():
    event = AliasEvent(
        name="churn",
        alias="prod",
        from_version=2,
        to_version=3,
        by="alice",
        at=datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc),
        reason="better auc",
        forced=True,
    )

    assert AliasEvent.from_tag_value("churn", event.to_tag_value()) == event


def test_an_alias_event_for_an_unset_alias_has_no_target():
    event = AliasEvent.from_tag_value("m", '{"alias": "prod", "from": 3, "to": null, "at": 0}')

    assert (event.from_version, event.to_version, event.by) == (3, None, "unknown")
    assert event.to_dict()["at"] == "1970-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    "value", ["not json", "[]", '{"to": 3}', '{"alias": "p", "to": "three"}'], ids=repr
)
def test_a_malformed_alias_log_entry_is_an_invalid_response(value):
    with pytest.raises(InvalidResponseError):
        AliasEvent.from_tag_value("m", value)

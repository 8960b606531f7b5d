"""The client's contract, run unchanged against every backend (see ``client`` in conftest.py).

Each test makes its own uniquely named models, so tests never see each other's data and need
no cleanup between them.
"""

from __future__ import annotations

import json
import uuid
import warnings

import mlflow
import pytest

from registry_sdk import (
    AliasNotFoundError,
    AlreadyExistsError,
    InvalidReferenceError,
    ModelNotFoundError,
    ModelVersion,
    RegistryClient,
    VersionNotFoundError,
)

ALIAS_LOG_PREFIX = "registry_sdk.alias_log."
IDEMPOTENCY_TAG = "registry_sdk.idempotency_key"


def unique(label: str) -> str:
    return f"it-{label}-{uuid.uuid4().hex[:12]}"


def source(name: str, n: int) -> str:
    # The server refuses local paths without a run; an s3 URI is stored and never fetched.
    return f"s3://registry-sdk-it/{name}/{n}"


def model_with_versions(client: RegistryClient, label: str, count: int, **tags: str) -> str:
    name = unique(label)
    client.create_model(name)
    for n in range(1, count + 1):
        mv = client.create_version(name, source(name, n), tags=tags or None)
        assert mv.version == n
    return name


def assert_aliases_filled(client: RegistryClient, versions: list[ModelVersion]) -> None:
    """Each version carries exactly the aliases its model says point at it."""
    assert versions
    for mv in versions:
        expected = client.get_model(mv.name).aliases_of(mv.version)
        assert mv.aliases == expected, mv.ref


def vanilla_mlflow(client: RegistryClient) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=client.tracking_uri, registry_uri=client.registry_uri)


def alias_log(client: RegistryClient, name: str) -> list[dict[str, object]]:
    """The alias log entries of ``name`` as vanilla MLflow sees them, oldest first."""
    tags = vanilla_mlflow(client).get_registered_model(name).tags
    entries = [json.loads(v) for k, v in tags.items() if k.startswith(ALIAS_LOG_PREFIX)]
    return sorted(entries, key=lambda e: e["at"])


# ------------------------------------------------------------------------------ diagnostics


def test_server_info_reports_reachable_with_version(client, request):
    info = client.server_info()
    assert info.reachable is True, info.detail
    assert isinstance(info.version, str)
    backend = request.node.callspec.params["client"]
    # Servers of the installed MLflow run from this virtualenv; the others say their own version.
    versioned = backend.removeprefix("server-").rsplit("-", 1)[0]
    expected = versioned if versioned[:1].isdigit() else None
    assert info.version == (expected or mlflow.__version__)


# ------------------------------------------------------------------------------ models


def test_model_create_get_update_rename_delete(client):
    name = unique("crud")
    created = client.create_model(name, description="first", tags={"team": "fraud"})
    assert created.name == name
    assert created.description == "first"
    assert dict(created.tags) == {"team": "fraud"}
    assert dict(created.aliases) == {}
    assert created.latest_version is None

    got = client.get_model(name)
    assert (got.name, got.description, dict(got.tags)) == (name, "first", {"team": "fraud"})

    updated = client.update_model(name, description="second")
    assert updated.description == "second"
    assert client.get_model(name).description == "second"

    client.create_version(name, source(name, 1))
    new_name = unique("renamed")
    renamed = client.rename_model(name, new_name)
    assert renamed.name == new_name
    with pytest.raises(ModelNotFoundError):
        client.get_model(name)
    assert client.get_model(new_name).description == "second"
    moved = client.get_version(new_name, 1)
    assert (moved.name, moved.version) == (new_name, 1)

    client.delete_model(new_name)
    with pytest.raises(ModelNotFoundError):
        client.get_model(new_name)
    with pytest.raises(ModelNotFoundError):
        client.delete_model(new_name)


def test_create_model_twice_raises_already_exists(client):
    name = unique("dup")
    client.create_model(name)
    with pytest.raises(AlreadyExistsError):
        client.create_model(name)
    assert [m.name for m in client.search_models(f"name = '{name}'")] == [name]


def test_search_models_filter_and_order(client):
    prefix = unique("search")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in reversed(names):
        client.create_model(name)
    client.create_model(unique("other"))

    found = list(client.search_models(f"name LIKE '{prefix}-%'", order_by=["name ASC"]))
    assert [m.name for m in found] == names
    found = list(client.search_models(f"name LIKE '{prefix}-%'", order_by=["name DESC"]))
    assert [m.name for m in found] == names[::-1]
    assert list(client.search_models(f"name = '{unique('missing')}'")) == []


def test_search_models_pages_transparently(client, monkeypatch):
    prefix = unique("mpages")
    names = [f"{prefix}-{i}" for i in range(5)]
    for name in names:
        client.create_model(name)

    backend = client.backend
    calls: list[str | None] = []
    real_search = backend.search_models

    def counting_search(**kwargs):
        calls.append(kwargs["page_token"])
        assert kwargs["max_results"] == 2
        return real_search(**kwargs)

    monkeypatch.setattr(backend, "max_models_page", 2)
    monkeypatch.setattr(backend, "search_models", counting_search)

    found = list(client.search_models(f"name LIKE '{prefix}-%'", order_by=["name ASC"]))
    assert [m.name for m in found] == names
    # 5 results, 2 per page: the real server was asked for 3 pages, following its tokens.
    assert len(calls) == 3
    assert calls[0] is None
    assert all(isinstance(token, str) and token for token in calls[1:])


# ------------------------------------------------------------------------------ tags


def test_model_and_version_tags_set_and_delete(client):
    name = model_with_versions(client, "tags", 3)

    client.set_tag(name, "owner", "alice")
    client.set_tag(f"{name}/3", "quality", "gold")
    client.set_tag(f"{name}/1", "quality", "bronze")

    assert dict(client.get_model(name).tags) == {"owner": "alice"}
    v3 = client.get_version(f"{name}/3")
    assert v3.tags["quality"] == "gold"
    assert "owner" not in v3.tags
    assert client.get_version(f"{name}/1").tags["quality"] == "bronze"
    assert "quality" not in client.get_version(f"{name}/2").tags

    # A version reference through an alias tags the version it points at.
    client.set_alias(name, "champion", 2)
    client.set_tag(f"{name}@champion", "reviewed", "yes")
    assert client.get_version(f"{name}/2").tags["reviewed"] == "yes"

    client.delete_tag(f"{name}/3", "quality")
    assert "quality" not in client.get_version(f"{name}/3").tags
    assert client.get_version(f"{name}/1").tags["quality"] == "bronze"

    client.delete_tag(name, "owner")
    assert "owner" not in client.get_model(name).tags


# ------------------------------------------------------------------------------ versions


def test_versions_create_get_search(client):
    name = unique("versions")
    client.create_model(name)
    created = [
        client.create_version(
            name,
            source(name, n),
            tags={"parity": "odd" if n % 2 else "even", "n": str(n)},
            description=f"version {n}",
        )
        for n in range(1, 5)
    ]
    assert [mv.version for mv in created] == [1, 2, 3, 4]
    assert all(mv.name == name for mv in created)
    assert all(mv.aliases == () for mv in created)

    v2 = client.get_version(f"{name}/2")
    assert v2 == client.get_version(name, 2)
    assert v2.version == 2
    assert v2.source == source(name, 2)
    assert v2.description == "version 2"
    assert v2.tags["parity"] == "even"
    assert v2.tags[IDEMPOTENCY_TAG]  # every version records its idempotency key
    assert v2.status == "READY"
    assert v2.current_stage == "None"

    everything = list(client.search_versions(name, order_by=["version_number ASC"]))
    assert [mv.version for mv in everything] == [1, 2, 3, 4]
    odd = list(client.search_versions(name, tags={"parity": "odd"}, order_by=["version_number"]))
    assert [mv.version for mv in odd] == [1, 3]
    newer = list(
        client.search_versions(name, filter="version_number > 2", order_by=["version_number DESC"])
    )
    assert [mv.version for mv in newer] == [4, 3]
    both = list(client.search_versions(name, tags={"parity": "even"}, filter="version_number < 4"))
    assert [mv.version for mv in both] == [2]
    by_filter_only = list(client.search_versions(filter=f"name = '{name}' AND tags.n = '3'"))
    assert [(mv.name, mv.version) for mv in by_filter_only] == [(name, 3)]

    updated = client.update_version(f"{name}/3", description="changed")
    assert updated.description == "changed"
    assert client.get_version(name, 3).description == "changed"

    client.delete_version(f"{name}/4")
    with pytest.raises(VersionNotFoundError):
        client.get_version(name, 4)
    remaining = client.search_versions(name, order_by=["version_number ASC"])
    assert [mv.version for mv in remaining] == [1, 2, 3]


def test_create_version_of_missing_model_raises_model_not_found(client):
    name = unique("nomodel")
    with pytest.raises(ModelNotFoundError):
        client.create_version(name, source(name, 1))


def test_search_versions_pages_transparently(client, monkeypatch):
    name = model_with_versions(client, "vpages", 5, batch="b1")
    client.set_alias(name, "champion", 4)
    client.set_alias(name, "challenger", 4)
    client.set_alias(name, "baseline", 1)

    backend = client.backend
    calls: list[str | None] = []
    real_search = backend.search_versions

    def counting_search(**kwargs):
        calls.append(kwargs["page_token"])
        assert kwargs["max_results"] == 2
        return real_search(**kwargs)

    monkeypatch.setattr(backend, "max_versions_page", 2)
    monkeypatch.setattr(backend, "search_versions", counting_search)

    found = list(
        client.search_versions(name, tags={"batch": "b1"}, order_by=["version_number ASC"])
    )
    assert [mv.version for mv in found] == [1, 2, 3, 4, 5]
    assert len(calls) == 3
    assert calls[0] is None
    assert all(isinstance(token, str) and token for token in calls[1:])
    assert {mv.version: mv.aliases for mv in found} == {
        1: ("baseline",),
        2: (),
        3: (),
        4: ("challenger", "champion"),
        5: (),
    }


# ------------------------------------------------------------------------------ aliases


def test_aliases_set_move_delete_and_resolve(client):
    name = model_with_versions(client, "alias", 3)

    event = client.set_alias(name, "champion", 1, reason="first release")
    assert (event.name, event.alias, event.from_version, event.to_version) == (
        name,
        "champion",
        None,
        1,
    )
    assert event.reason == "first release"
    assert dict(client.get_model(name).aliases) == {"champion": 1}

    resolved = client.resolve(f"{name}@champion")
    assert (resolved.version, resolved.aliases) == (1, ("champion",))
    assert client.resolve(f"models:/{name}@champion").version == 1

    moved = client.set_alias(name, "champion", 3)
    assert (moved.from_version, moved.to_version) == (1, 3)
    client.set_alias(name, "shadow", 3)
    assert dict(client.get_model(name).aliases) == {"champion": 3, "shadow": 3}
    assert client.resolve(f"{name}@champion").aliases == ("champion", "shadow")
    assert client.get_version(name, 1).aliases == ()

    removed = client.delete_alias(name, "champion", reason="rollback")
    assert (removed.from_version, removed.to_version) == (3, None)
    assert dict(client.get_model(name).aliases) == {"shadow": 3}
    with pytest.raises(AliasNotFoundError):
        client.resolve(f"{name}@champion")
    with pytest.raises(AliasNotFoundError):
        client.delete_alias(name, "champion")
    assert client.get_version(name, 3).aliases == ("shadow",)


def test_set_alias_to_missing_version_raises_version_not_found(client):
    name = model_with_versions(client, "alias-missing", 1)
    with pytest.raises(VersionNotFoundError):
        client.set_alias(name, "champion", 7)
    assert dict(client.get_model(name).aliases) == {}


def test_every_returned_version_has_its_aliases(client):
    name = model_with_versions(client, "filled", 3)
    client.set_alias(name, "champion", 2)
    client.set_alias(name, "challenger", 3)
    client.set_alias(name, "shadow", 3)
    expected = {1: (), 2: ("champion",), 3: ("challenger", "shadow")}

    for n, aliases in expected.items():
        assert client.get_version(name, n).aliases == aliases
        assert client.get_version(f"{name}/{n}").aliases == aliases
        assert client.resolve(f"{name}/{n}").aliases == aliases
    assert client.resolve(f"{name}@champion").aliases == expected[2]
    assert client.resolve(f"{name}@shadow").aliases == expected[3]
    assert client.resolve(f"{name}@latest").aliases == expected[3]

    searched = list(client.search_versions(name, order_by=["version_number ASC"]))
    assert {mv.version: mv.aliases for mv in searched} == expected
    assert_aliases_filled(client, searched)

    by_tag = list(client.search_versions(filter=f"name = '{name}' AND version_number >= 2"))
    assert {mv.version: mv.aliases for mv in by_tag} == {2: expected[2], 3: expected[3]}


def test_latest_resolves_to_newest_version(client):
    name = model_with_versions(client, "latest", 3)
    latest = client.resolve(f"{name}@latest")
    assert (latest.name, latest.version) == (name, 3)
    assert client.resolve(f"models:/{name}/latest").version == 3

    client.create_version(name, source(name, 4))
    assert client.resolve(f"{name}@latest").version == 4

    empty = unique("empty")
    client.create_model(empty)
    with pytest.raises(VersionNotFoundError):
        client.resolve(f"{empty}@latest")


# ------------------------------------------------------------------------------ resolve errors


def test_resolve_missing_things_raise_precise_errors(client):
    name = model_with_versions(client, "missing", 1)
    missing_model = unique("ghost")

    with pytest.raises(ModelNotFoundError):
        client.resolve(f"{missing_model}@latest")
    with pytest.raises(ModelNotFoundError):
        client.resolve(f"{missing_model}@champion")
    with pytest.raises(ModelNotFoundError):
        client.get_model(missing_model)
    # MLflow itself answers "Model Version (name=..., version=1) not found": the model is missing.
    with pytest.raises(ModelNotFoundError):
        client.resolve(f"{missing_model}/1")
    with pytest.raises(ModelNotFoundError):
        client.backend.get_version_by_alias(missing_model, "champion")
    with pytest.raises(ModelNotFoundError):
        client.resolve(f"{missing_model}/Production")
    with pytest.raises(VersionNotFoundError):
        client.resolve(f"{name}/99")
    with pytest.raises(VersionNotFoundError):
        client.get_version(name, 2)
    with pytest.raises(AliasNotFoundError):
        client.resolve(f"{name}@nosuchalias")
    # No alias 'staging' and no version in that stage: the stage fallback warns, then finds nothing.
    with (
        pytest.warns(DeprecationWarning, match="staging"),
        pytest.raises(VersionNotFoundError),
    ):
        client.resolve(f"{name}/Staging")


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "just-a-name",
        "name/",
        "name@",
        "name/0",
        "name/-1",
        "name/Prod",
        "name@v7",
        "name@has space",
        "a/b/c",
        "models:/",
        "/1",
        "@alias",
    ],
)
def test_resolve_bad_reference_raises_invalid_reference(client, ref):
    with pytest.raises(InvalidReferenceError):
        client.resolve(ref)


def test_invalid_alias_names_are_refused(client):
    name = model_with_versions(client, "badalias", 1)
    for alias in ("latest", "v1", "has space", ""):
        with pytest.raises(InvalidReferenceError):
            client.set_alias(name, alias, 1)
    assert dict(client.get_model(name).aliases) == {}


# ------------------------------------------------------------------------------ idempotency


def test_create_version_with_idempotency_key_creates_exactly_one(client):
    name = unique("idem")
    client.create_model(name)
    key = uuid.uuid4().hex

    first = client.create_version(name, source(name, 1), idempotency_key=key, tags={"a": "1"})
    second = client.create_version(name, source(name, 1), idempotency_key=key, tags={"a": "1"})
    assert first.version == second.version == 1
    assert first.tags[IDEMPOTENCY_TAG] == key
    versions = list(client.search_versions(name))
    assert [mv.version for mv in versions] == [1]

    other = client.create_version(name, source(name, 2), idempotency_key=uuid.uuid4().hex)
    assert other.version == 2
    assert len(list(client.search_versions(name))) == 2


def test_find_version_by_key(client):
    name = unique("findkey")
    client.create_model(name)
    key = uuid.uuid4().hex
    client.create_version(name, source(name, 1))
    made = client.create_version(name, source(name, 2), idempotency_key=key)
    client.set_alias(name, "champion", made.version)

    found = client.find_version_by_key(name, key)
    assert found is not None
    assert (found.name, found.version) == (name, 2)
    assert found.aliases == ("champion",)
    assert client.find_version_by_key(name, uuid.uuid4().hex) is None


# ------------------------------------------------------------------------------ alias log


def test_alias_log_is_readable_with_vanilla_mlflow(client):
    name = model_with_versions(client, "log", 2)
    client.set_alias(name, "prod", 1, reason="initial")
    client.set_alias(name, "prod", 2, reason="better auc")
    client.delete_alias(name, "prod", reason="incident 42")

    entries = alias_log(client, name)
    assert [(e["alias"], e["from"], e["to"], e["reason"]) for e in entries] == [
        ("prod", None, 1, "initial"),
        ("prod", 1, 2, "better auc"),
        ("prod", 2, None, "incident 42"),
    ]
    assert all(isinstance(e["by"], str) and e["by"] for e in entries)
    # The log lives in model tags only: no alias is left behind, no version was tagged.
    assert vanilla_mlflow(client).get_registered_model(name).aliases == {}


# ------------------------------------------------------------------------------ legacy stages


def test_stage_reference_falls_back_to_stage_with_deprecation_warning(client):
    name = model_with_versions(client, "stage", 2)
    client.set_alias(name, "champion", 1)
    staged = client.transition_stage(f"{name}/1", "Production")
    assert (staged.version, staged.current_stage) == (1, "Production")
    assert staged.aliases == ("champion",)

    with pytest.warns(DeprecationWarning, match="production"):
        resolved = client.resolve(f"{name}/Production")
    assert (resolved.version, resolved.current_stage) == (1, "Production")
    assert resolved.aliases == ("champion",)


def test_stage_reference_prefers_alias_without_warning(client):
    name = model_with_versions(client, "stage-alias", 2)
    client.transition_stage(f"{name}/1", "Production")
    client.set_alias(name, "production", 2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolved = client.resolve(f"{name}/Production")
        via_models_uri = client.resolve(f"models:/{name}/production")
    ours = [
        w
        for w in caught
        if issubclass(w.category, DeprecationWarning) and not _third_party(w.filename)
    ]
    assert ours == [], [str(w.message) for w in ours]
    assert (resolved.version, resolved.aliases) == (2, ("production",))
    assert resolved.current_stage == "None"  # the alias wins over the stage that holds version 1
    assert via_models_uri.version == 2


def _third_party(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return any(f"/{pkg}/" in path for pkg in ("mlflow", "sqlalchemy", "alembic", "google"))

"""MLflow's basic-auth app: permissions are enforced, errors say so, and credentials never leak.

The server is ``mlflow server --app-name basic-auth`` (``_production.AuthServer``) with
``default_permission = NO_PERMISSIONS``: the admin registers a model, then a second user gets
READ on that one model only (through the auth REST API).

* The READ user can read the model, but ``promote`` and ``set_alias`` fail with
  :class:`~registry_sdk.PermissionDeniedError` whose message names the permission problem,
  and the alias and its log stay as they were.
* No credential (admin and user passwords, a token, their basic-auth header forms) appears in
  any log record (DEBUG, ``registry_sdk`` and root), exception text, ``repr`` or stdout/stderr.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import traceback
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from _client_version import MLFLOW_3

import registry_sdk as rs
from registry_sdk import _tags
from registry_sdk.lifecycle import LOCK_PREFIX

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from _production import AuthServer, Credentials

#: Fixtures ``production`` and ``auth_server`` (helpers are imported inside functions).
pytest_plugins = ["_production"]
pytestmark = pytest.mark.timeout(600)

TOKEN = "tok-" + uuid.uuid4().hex  # a bearer token the server does not know
#: The auth app's API for a registered model's permissions, per MLflow major version (the
#: server runs the installed mlflow): MLflow 2 has one per resource type; MLflow 3.17 replaced
#: them with ``/api/3.0/mlflow/users/permissions/*``.
LEGACY_GRANT = "/api/2.0/mlflow/registered-models/permissions/create"
#: The first artifact call the auth app refuses to a user without READ on the experiment:
#: MLflow 3's refuses the listing; MLflow 2.22's lets the listing through and refuses the
#: download of the first file.
ARTIFACT_CALL_REFUSED = "list artifacts" if MLFLOW_3 else "download artifact"


@dataclass
class Guarded:
    server: AuthServer
    name: str
    reader: Credentials
    granted_with: str


def _clean_env(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(("MLFLOW_", "REGISTRY_SDK_")):
            mp.delenv(key)


def _as(mp: pytest.MonkeyPatch, user: Credentials | None, *, token: str | None = None) -> None:
    """Credentials the MLflow way: environment variables (what the SDK and MLflow both read)."""
    _clean_env(mp)
    if user is not None:
        mp.setenv("MLFLOW_TRACKING_USERNAME", user.username)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", user.password)
    if token is not None:
        mp.setenv("MLFLOW_TRACKING_TOKEN", token)


def client_for(server: AuthServer, cache: Path, uri: str | None = None) -> rs.RegistryClient:
    target = uri or server.uri
    return rs.RegistryClient(
        target, registry_uri=target, cache_dir=cache, timeout=60, max_retries=1
    )


@pytest.fixture(scope="module")
def guarded(auth_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    from _production import make_trainer, training_data

    name = f"guarded-{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("auth-setup")
    with pytest.MonkeyPatch.context() as mp:
        _as(mp, auth_server.admin)
        X, y = training_data()
        with client_for(auth_server, workdir / "cache") as admin:
            train = make_trainer(name, admin, alias="staging")
            train(X, y, 1)
        assert train.last_version is not None
        reader = auth_server.create_user(f"reader-{uuid.uuid4().hex[:6]}")
        granted_with = auth_server.grant_model_permission(reader.username, name, "READ")
        yield Guarded(auth_server, name, reader, granted_with)


def _admin_view(guarded: Guarded, cache: Path) -> tuple[dict[str, int], int, list[str]]:
    """(aliases, alias-log events, move locks left) as the admin sees them."""
    with pytest.MonkeyPatch.context() as mp:
        _as(mp, guarded.server.admin)
        with client_for(guarded.server, cache) as admin:
            model = admin.get_model(guarded.name)
            events = [k for k in model.tags if k.startswith(_tags.ALIAS_LOG_PREFIX)]
            page = admin.backend.search_models(
                filter=f"name LIKE '{LOCK_PREFIX}%'",
                order_by=(),
                max_results=100,
                page_token=None,
            )
            return dict(model.aliases), len(events), [m.name for m in page.items]


# ================================================================== permissions


def test_the_read_user_reads_the_model_it_was_granted(guarded, tmp_path, monkeypatch):
    _as(monkeypatch, guarded.reader)
    with client_for(guarded.server, tmp_path / "cache") as reader:
        assert reader.get_model(guarded.name).aliases == {"staging": 1}
        assert reader.resolve(f"{guarded.name}@staging").version == 1
        assert reader.get_version(f"{guarded.name}/1").metrics == {"ident": 1.0}
        assert [e.to_version for e in reader.history(guarded.name, alias="staging")] == [1]
        with pytest.raises(rs.PermissionDeniedError, match=r"(?i)permission denied") as other:
            reader.get_model(f"not-{guarded.name}")  # no grant on anything else
    assert other.value.status == 403


@pytest.mark.parametrize(
    "move",
    [
        pytest.param(lambda c, n: c.promote(f"{n}/1", to="prod"), id="promote"),
        pytest.param(lambda c, n: c.set_alias(n, "prod", 1), id="set_alias"),
        pytest.param(lambda c, n: c.delete_alias(n, "staging"), id="delete_alias"),
        pytest.param(lambda c, n: c.set_tag(n, "team", "x"), id="set_tag"),
    ],
)
def test_the_read_user_cannot_move_aliases_and_is_told_why(guarded, tmp_path, monkeypatch, move):
    before = _admin_view(guarded, tmp_path / "admin")
    _as(monkeypatch, guarded.reader)
    with (
        client_for(guarded.server, tmp_path / "cache") as reader,
        pytest.raises(rs.PermissionDeniedError) as denied,
    ):
        move(reader, guarded.name)
    message = str(denied.value)
    assert denied.value.status == 403
    assert "permission denied" in message.lower()  # the problem, in words
    assert guarded.name in message  # ...and what it was about
    assert _admin_view(guarded, tmp_path / "admin") == before == ({"staging": 1}, 1, [])


def test_promote_denied_names_the_alias_move_that_was_refused(guarded, tmp_path, monkeypatch):
    _as(monkeypatch, guarded.reader)
    with (
        client_for(guarded.server, tmp_path / "cache") as reader,
        pytest.raises(rs.PermissionDeniedError) as denied,
    ):
        reader.promote(f"{guarded.name}/1", to="prod", reason="release")
    assert f"set alias {guarded.name}@prod -> 1" in str(denied.value)
    assert isinstance(denied.value, rs.RegistryError)
    assert denied.value.server_message == "Permission denied"


@pytest.mark.parametrize("who", ["nobody", "wrong-password", "unknown-token"])
def test_missing_or_wrong_credentials_are_not_authenticated(guarded, tmp_path, monkeypatch, who):
    from _production import Credentials

    if who == "nobody":
        _as(monkeypatch, None)
    elif who == "wrong-password":
        _as(monkeypatch, Credentials(guarded.reader.username, "wrong-" + uuid.uuid4().hex))
    else:
        _as(monkeypatch, None, token=TOKEN)
    with (
        client_for(guarded.server, tmp_path / "cache") as client,
        pytest.raises(rs.PermissionDeniedError, match="not authenticated") as denied,
    ):
        client.get_model(guarded.name)
    assert denied.value.status == 401
    assert "MLFLOW_TRACKING_USERNAME" in str(denied.value)  # says how to fix it


def test_the_granted_permission_is_what_mlflow_reports(guarded):
    if MLFLOW_3:
        status, text = guarded.server.call(
            "GET",
            "/api/3.0/mlflow/users/permissions/get"
            f"?username={guarded.reader.username}&resource_type=registered_model"
            f"&resource_id={guarded.name}",
        )
    else:
        assert guarded.granted_with == LEGACY_GRANT
        status, text = guarded.server.call(
            "GET",
            "/api/2.0/mlflow/registered-models/permissions/get"
            f"?name={guarded.name}&username={guarded.reader.username}",
        )
        assert status == 200, text
        granted = json.loads(text)["registered_model_permission"]
        assert (granted["name"], granted["permission"]) == (guarded.name, "READ")
    assert status == 200, text
    assert '"READ"' in text


def test_loading_needs_read_on_the_experiment_too_as_with_vanilla_mlflow(
    guarded, tmp_path, monkeypatch
):
    """Artifacts are served per experiment: READ on the model alone loads no artifact."""
    server = guarded.server
    _as(monkeypatch, server.admin)
    with client_for(server, tmp_path / "admin") as admin:
        run_id = admin.get_version(f"{guarded.name}/1").run_id
        assert run_id is not None
        experiment = admin.backend.get_run(run_id).experiment_id
    user = server.create_user(f"loader-{uuid.uuid4().hex[:6]}")
    server.grant_model_permission(user.username, guarded.name, "READ")
    _as(monkeypatch, user)
    with (
        client_for(server, tmp_path / "first") as loader,
        pytest.raises(rs.PermissionDeniedError, match=ARTIFACT_CALL_REFUSED) as denied,
    ):
        loader.load_model(f"{guarded.name}@staging")
    assert denied.value.status == 403
    if MLFLOW_3:
        status, text = server.call(
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            {
                "username": user.username,
                "resource_type": "experiment",
                "resource_id": experiment,
                "permission": "READ",
            },
        )
    else:
        status, text = server.call(
            "POST",
            "/api/2.0/mlflow/experiments/permissions/create",
            {"experiment_id": experiment, "username": user.username, "permission": "READ"},
        )
    assert status == 200, text
    with client_for(server, tmp_path / "second") as loader:
        model = loader.load_model(f"{guarded.name}@staging")
        assert model.version.version == 1
        assert model.predict([[0.0, 1.0]]).tolist() == [1.0]
        with pytest.raises(rs.PermissionDeniedError):  # still READ: no moves
            loader.set_alias(guarded.name, "prod", 1)


# ================================================================== no credential leaks


def _secret_forms(secrets: list[str], users: list[str]) -> list[str]:
    """Each secret, plus the basic-auth header value it would travel in."""
    headers = [f"{user}:{secret}".encode() for user in users for secret in secrets]
    return [*secrets, *(base64.b64encode(h).decode() for h in headers)]


def _texts_of(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), *map(str, error.args)]
    texts.append("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    for attr in ("message", "server_message"):
        value = getattr(error, attr, None)
        if isinstance(value, str):
            texts.append(value)
    return texts


def _try(texts: list[str], call: Any) -> None:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - every failure's text is checked
        texts.extend(_texts_of(exc))
    else:
        texts.append(repr(result))


def _exercise(guarded: Guarded, wrong: Credentials, tmp_path: Path, mp: Any) -> list[str]:
    """Every way a credential could slip out: the texts (reprs, errors) it produced."""
    from _production import free_port, make_trainer, training_data

    server = guarded.server
    texts: list[str] = []
    X, y = training_data()
    # The admin trains and registers (MLflow's own client runs inside @register too).
    _as(mp, server.admin)
    with client_for(server, tmp_path / "admin") as admin:
        texts += [repr(admin), repr(admin.settings), repr(admin.backend), admin.registry_uri]
        train = make_trainer(guarded.name, admin, alias=None)
        train(X, y, 2)
        texts.append(repr(train.last_version))
    # The reader reads, is refused, and loads.
    _as(mp, guarded.reader)
    with client_for(server, tmp_path / "reader") as reader:
        texts += [repr(reader), repr(reader.settings), repr(reader.backend)]
        _try(texts, lambda: reader.get_model(guarded.name))
        _try(texts, lambda: reader.promote(f"{guarded.name}/1", to="prod"))
        _try(texts, lambda: reader.set_alias(guarded.name, "prod", 1))
        _try(texts, lambda: reader.load_model(f"{guarded.name}@staging"))
    # Credentials in the URI (basic auth) and a token: refused, and scrubbed.
    in_uri = server.uri.replace("://", f"://{wrong.username}:{wrong.password}@")
    _as(mp, None)
    with client_for(server, tmp_path / "uri", in_uri) as by_uri:
        texts += [repr(by_uri), repr(by_uri.settings), repr(by_uri.backend), by_uri.registry_uri]
        _try(texts, lambda: by_uri.get_model(guarded.name))
    _as(mp, None, token=TOKEN)
    with client_for(server, tmp_path / "token") as by_token:
        texts += [repr(by_token), repr(by_token.settings), repr(by_token.backend)]
        _try(texts, lambda: by_token.resolve(f"{guarded.name}@staging"))
    # Nobody answers: the URI (with its password) ends up in connection errors.
    _as(mp, None)
    dead = f"http://{wrong.username}:{wrong.password}@127.0.0.1:{free_port()}"
    with rs.RegistryClient(dead, cache_dir=tmp_path / "dead", timeout=2, max_retries=0) as c:
        _try(texts, lambda: c.get_model(guarded.name))
        _try(texts, lambda: c.load_model(f"{guarded.name}@staging"))
        # Training goes on; the model waits in the outbox, and the warnings say why.
        _try(texts, lambda: make_trainer(guarded.name, c)(X, y, 3))
    return texts


def test_no_credential_appears_in_logs_errors_or_reprs(guarded, tmp_path, caplog, capfd):
    from _production import Credentials

    wrong = Credentials(guarded.reader.username, "wrong-" + uuid.uuid4().hex)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="registry_sdk")
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        texts = _exercise(guarded, wrong, tmp_path, mp)
    texts += [str(w.message) for w in caught]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    out, err = capfd.readouterr()
    texts += [out, err]

    server = guarded.server
    secrets = [server.admin.password, guarded.reader.password, wrong.password, TOKEN]
    users = [server.admin.username, guarded.reader.username, wrong.username]
    leaks = [
        (secret[:6] + "...", text[:200])
        for secret in _secret_forms(secrets, users)
        for text in texts
        if secret in text
    ]
    assert not leaks
    # The checks saw what they were meant to see.
    assert any("Permission denied" in t for t in texts)
    assert any("not authenticated" in t for t in texts)
    assert any("cannot reach" in t for t in texts)
    assert any("NOT registered" in t for t in texts)  # the outbox warning was seen too
    assert caplog.records

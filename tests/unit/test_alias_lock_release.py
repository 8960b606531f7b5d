"""The alias move lock is released even when the store refuses the first delete.

PostgreSQL can refuse the delete of a lock (a foreign-key violation, as MLflow's
``INVALID_REQUEST``) while another mover's create of the same lock is under way: a race a real
server cannot be made to lose on demand, so ``responses`` plays it. The move is done by then:
its caller must not see an error, and the lock must be gone.
"""

from __future__ import annotations

import json
import logging

from _rest_fakes import API, FakeSleep, error_body, make_client, make_settings
from _rest_fakes import mock_http as rest_mock

from registry_sdk.lifecycle import alias_lock

FK_VIOLATION = error_body(
    "INVALID_PARAMETER_VALUE",
    "delete model: (psycopg2.errors.ForeignKeyViolation) update or delete on table "
    '"registered_models" violates foreign key constraint',
)


def serve_lock(http, refusals: int) -> list[str]:
    """A server holding no lock that refuses the first ``refusals`` deletes; the calls made."""
    calls: list[str] = []

    def create(request):
        calls.append("create")
        name = json.loads(request.body)["name"]
        return 200, {}, json.dumps({"registered_model": {"name": name}})

    def delete(_request):
        calls.append("delete")
        if calls.count("delete") <= refusals:
            return 400, {}, json.dumps(FK_VIOLATION)
        return 200, {}, "{}"

    http.add_callback("POST", f"{API}/registered-models/create", callback=create)
    http.add_callback("DELETE", f"{API}/registered-models/delete", callback=delete)
    return calls


def test_a_refused_release_is_tried_again_and_the_move_sees_no_error():
    sleep = FakeSleep()
    with rest_mock() as http:
        calls = serve_lock(http, refusals=1)
        client = make_client(make_settings(max_retries=0), sleep)
        with alias_lock(client, "churn", "prod"):
            pass
    assert calls == ["create", "delete", "delete"]
    assert sleep.calls  # waited before trying again


def test_a_lock_that_cannot_be_released_is_logged_not_raised(caplog):
    sleep = FakeSleep()
    with rest_mock() as http, caplog.at_level(logging.WARNING, "registry_sdk"):
        calls = serve_lock(http, refusals=99)
        client = make_client(make_settings(max_retries=0), sleep)
        with alias_lock(client, "churn", "prod"):
            pass
    assert calls == ["create", "delete", "delete", "delete"]
    assert any("could not release the move lock of churn@prod" in r.message for r in caplog.records)

"""``create_version`` creates exactly one version, whatever happens to requests and replies.

A stateful fake MLflow server (``_rest_fakes.FakeMlflowServer``) stores versions; failures are
injected in its ``model-versions/create`` endpoint: before the version is stored, after it is
stored (the reply is lost), or as a slow duplicate that lands during a later attempt.
"""

from __future__ import annotations

import pytest
import requests
from _rest_fakes import (
    FakeMlflowServer,
    FakeSleep,
    key_tag,
    make_client,
    make_settings,
    mock_http,
)

from registry_sdk import _tags
from registry_sdk.errors import ModelNotFoundError, RegistryUnavailableError

MAX_RETRIES = 3


@pytest.fixture
def server():
    with mock_http() as http:
        fake = FakeMlflowServer(http)
        fake.add_model("churn", aliases={"prod": 1})
        yield fake


@pytest.fixture
def sleep():
    return FakeSleep()


@pytest.fixture
def client(sleep):
    return make_client(make_settings(max_retries=MAX_RETRIES), sleep)


@pytest.mark.parametrize(
    "lost_reply",
    [requests.ConnectionError, requests.ReadTimeout, requests.exceptions.ChunkedEncodingError],
)
def test_a_reply_lost_after_the_server_created_the_version_leaves_exactly_one_version(
    server, client, sleep, lost_reply
):
    server.lose_reply_after_create = 1
    server.lost_reply_error = lost_reply

    mv = client.create_version("churn", "s3://bucket/model")

    [stored] = server.versions_of("churn")
    assert server.create_calls == 1  # the retry found the version instead of creating another
    assert mv.version == int(stored["version"]) == 1
    assert mv.tags[_tags.IDEMPOTENCY_KEY] == key_tag(stored)
    assert mv.aliases == ("prod",)
    assert len(sleep.calls) == 1


def test_the_retry_looks_the_version_up_by_model_name_and_idempotency_key(server, client):
    server.lose_reply_after_create = 1

    mv = client.create_version("churn", "s3://bucket/model")

    key = mv.tags[_tags.IDEMPOTENCY_KEY]
    assert server.search_filters[0] == (
        f"name = 'churn' AND tags.`{_tags.IDEMPOTENCY_KEY}` = '{key}'"
    )


def test_a_create_that_failed_before_the_server_created_anything_creates_one_version_on_retry(
    server, client, sleep
):
    server.fail_before_create = 1

    mv = client.create_version("churn", "s3://bucket/model")

    [stored] = server.versions_of("churn")
    assert server.create_calls == 2
    assert mv.version == int(stored["version"]) == 1
    assert len(sleep.calls) == 1


def test_a_slow_duplicate_from_an_earlier_attempt_is_deleted_and_the_first_version_kept(
    server, client
):
    # Attempt 1 times out without a reply; its request reaches the server only while attempt 2
    # is creating, so the lookup before attempt 2 saw nothing and two versions now share a key.
    server.stall_create = 1

    mv = client.create_version("churn", "s3://bucket/model")

    [stored] = server.versions_of("churn")
    assert mv.version == int(stored["version"]) == 1


def test_an_explicit_idempotency_key_passed_twice_returns_the_same_version(server, client):
    first = client.create_version("churn", "s3://bucket/model", idempotency_key="build-42")
    second = client.create_version("churn", "s3://bucket/model", idempotency_key="build-42")

    assert second == first
    assert len(server.versions_of("churn")) == 1
    assert server.create_calls == 1
    assert first.tags[_tags.IDEMPOTENCY_KEY] == "build-42"


def test_different_idempotency_keys_create_different_versions(server, client):
    first = client.create_version("churn", "s3://bucket/model", idempotency_key="build-42")
    second = client.create_version("churn", "s3://bucket/model", idempotency_key="build-43")

    assert (first.version, second.version) == (1, 2)
    assert len(server.versions_of("churn")) == 2


@pytest.mark.usefixtures("server")
def test_find_version_by_key_returns_the_version_created_with_it(client):
    created = client.create_version("churn", "s3://bucket/model", idempotency_key="build-42")

    assert client.find_version_by_key("churn", "build-42") == created
    assert client.find_version_by_key("churn", "build-999") is None


def test_user_tags_are_kept_next_to_the_idempotency_key(server, client):
    mv = client.create_version("churn", "s3://bucket/model", tags={"team": "risk"}, run_id="r1")

    [stored] = server.versions_of("churn")
    assert mv.tags["team"] == "risk"
    assert {"key": "team", "value": "risk"} in stored["tags"]
    assert stored["run_id"] == "r1"
    assert stored["source"] == "s3://bucket/model"


def test_when_the_registry_stays_unreachable_the_error_is_registry_unavailable(
    server, client, sleep
):
    server.unreachable = True

    with pytest.raises(RegistryUnavailableError, match="cannot reach the registry"):
        client.create_version("churn", "s3://bucket/model")

    assert server.create_calls == MAX_RETRIES + 1
    assert len(sleep.calls) == MAX_RETRIES
    assert server.versions_of("churn") == []


def test_when_every_attempt_gets_503_the_error_is_registry_unavailable(server, client):
    server.fail_before_create = 1_000

    with pytest.raises(RegistryUnavailableError) as caught:
        client.create_version("churn", "s3://bucket/model")

    assert caught.value.status == 503
    assert caught.value.error_code == "TEMPORARILY_UNAVAILABLE"
    assert server.create_calls == MAX_RETRIES + 1
    assert server.versions_of("churn") == []


def test_a_missing_model_is_reported_at_once_and_not_retried(server, client, sleep):
    with pytest.raises(ModelNotFoundError):
        client.create_version("no-such-model", "s3://bucket/model")

    assert server.create_calls == 1
    assert sleep.calls == []

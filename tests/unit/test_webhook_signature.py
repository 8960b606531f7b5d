"""``verify_signature`` accepts exactly what an MLflow server signs, and nothing else.

Deliveries are signed here the way MLflow does it: with ``mlflow.webhooks.delivery``'s own
``_generate_hmac_signature`` and header names, so a change on either side shows up.
"""

from __future__ import annotations

import json

import pytest
from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
)
from mlflow.webhooks.delivery import _generate_hmac_signature

from registry_sdk.webhooks import (
    DEFAULT_TOLERANCE_S,
    InvalidSignatureError,
    signature,
    verify_signature,
)

SECRET = "whsec-test-8f2a"
NOW = 1_800_000_000
DELIVERY_ID = "0b7c2a52-3f3e-4d2b-9d7e-5c8f00a1b2c3"
PAYLOAD = {
    "entity": "model_version_alias",
    "action": "created",
    "timestamp": "2027-01-15T08:00:00+00:00",
    "data": {"name": "churn", "alias": "prod", "version": "3"},
}


def delivery(payload=PAYLOAD, *, secret=SECRET, timestamp=NOW, delivery_id=DELIVERY_ID):
    """Body and headers as MLflow's ``_send_webhook_request`` builds them."""
    body = json.dumps(payload)
    stamp = str(timestamp)
    headers = {
        "Content-Type": "application/json",
        WEBHOOK_DELIVERY_ID_HEADER: delivery_id,
        WEBHOOK_TIMESTAMP_HEADER: stamp,
        WEBHOOK_SIGNATURE_HEADER: _generate_hmac_signature(secret, delivery_id, stamp, body),
    }
    return body, headers


def test_header_names_are_mlflows():
    assert WEBHOOK_SIGNATURE_HEADER == "X-MLflow-Signature"
    assert WEBHOOK_TIMESTAMP_HEADER == "X-MLflow-Timestamp"
    assert WEBHOOK_DELIVERY_ID_HEADER == "X-MLflow-Delivery-Id"


def test_signature_matches_mlflows_reference_implementation():
    body = json.dumps(PAYLOAD)
    for secret in (SECRET, "ünïcode-sécret", "x"):
        assert signature(secret, DELIVERY_ID, str(NOW), body) == _generate_hmac_signature(
            secret, DELIVERY_ID, str(NOW), body
        )


def test_a_genuine_delivery_verifies_and_returns_its_payload():
    body, headers = delivery()
    assert verify_signature(body, headers, SECRET, now=NOW) == PAYLOAD
    assert verify_signature(body.encode("utf-8"), headers, SECRET, now=NOW) == PAYLOAD


def test_a_non_ascii_body_verifies_as_bytes_and_as_text():
    payload = {**PAYLOAD, "data": {"name": "modèle-é", "alias": "prod", "version": "1"}}
    body, headers = delivery(payload)
    assert verify_signature(body.encode("utf-8"), headers, SECRET, now=NOW) == payload
    assert verify_signature(body, headers, SECRET, now=NOW) == payload


@pytest.mark.parametrize(
    "transform",
    [str.lower, str.upper, lambda name: name.replace("MLflow", "Mlflow")],
    ids=["lower", "upper", "mixed"],
)
def test_header_names_are_case_insensitive(transform):
    body, headers = delivery()
    renamed = {transform(key): value for key, value in headers.items()}
    assert set(renamed) != set(headers)
    assert verify_signature(body, renamed, SECRET, now=NOW) == PAYLOAD


@pytest.mark.parametrize(
    "missing",
    [WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_DELIVERY_ID_HEADER],
)
def test_a_missing_header_is_rejected_by_name(missing):
    body, headers = delivery()
    del headers[missing]
    with pytest.raises(InvalidSignatureError, match=missing):
        verify_signature(body, headers, SECRET, now=NOW)


def test_an_empty_header_counts_as_missing():
    body, headers = delivery()
    headers[WEBHOOK_SIGNATURE_HEADER] = ""
    with pytest.raises(InvalidSignatureError, match=WEBHOOK_SIGNATURE_HEADER):
        verify_signature(body, headers, SECRET, now=NOW)


def test_all_missing_headers_are_named():
    with pytest.raises(InvalidSignatureError) as info:
        verify_signature(json.dumps(PAYLOAD), {"Content-Type": "application/json"}, SECRET)
    for name in (WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_DELIVERY_ID_HEADER):
        assert name in str(info.value)


def test_a_wrong_secret_is_rejected():
    body, headers = delivery(secret="someone-elses-secret")
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body, headers, SECRET, now=NOW)


def test_a_tampered_body_is_rejected():
    body, headers = delivery()
    tampered = body.replace('"version": "3"', '"version": "4"')
    assert tampered != body
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(tampered, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    "header", [WEBHOOK_DELIVERY_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER], ids=["delivery-id", "time"]
)
def test_changing_a_signed_header_breaks_the_signature(header):
    body, headers = delivery()
    headers[header] = "1800000001" if header == WEBHOOK_TIMESTAMP_HEADER else "another-id"
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body, headers, SECRET, now=NOW)


def test_a_signature_of_another_version_scheme_is_rejected():
    body, headers = delivery()
    headers[WEBHOOK_SIGNATURE_HEADER] = headers[WEBHOOK_SIGNATURE_HEADER].replace("v1,", "v2,")
    with pytest.raises(InvalidSignatureError):
        verify_signature(body, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("sent", "tolerance"),
    [
        (NOW - DEFAULT_TOLERANCE_S, DEFAULT_TOLERANCE_S),
        (NOW + DEFAULT_TOLERANCE_S, DEFAULT_TOLERANCE_S),
        (NOW - 10, 10),
        (NOW + 10, 10),
        (NOW, 0),
    ],
    ids=["default-past", "default-future", "10s-past", "10s-future", "exact-zero"],
)
def test_a_delivery_exactly_at_the_tolerance_is_accepted(sent, tolerance):
    body, headers = delivery(timestamp=int(sent))
    assert verify_signature(body, headers, SECRET, tolerance=tolerance, now=NOW) == PAYLOAD


@pytest.mark.parametrize(
    ("sent", "tolerance"),
    [
        (NOW - DEFAULT_TOLERANCE_S - 1, DEFAULT_TOLERANCE_S),
        (NOW + DEFAULT_TOLERANCE_S + 1, DEFAULT_TOLERANCE_S),
        (NOW - 11, 10),
        (NOW + 11, 10),
        (NOW - 1, 0),
    ],
    ids=["default-stale", "default-future", "10s-stale", "10s-future", "zero-stale"],
)
def test_a_delivery_one_second_beyond_the_tolerance_is_rejected(sent, tolerance):
    body, headers = delivery(timestamp=int(sent))
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verify_signature(body, headers, SECRET, tolerance=tolerance, now=NOW)


def test_a_replay_long_after_is_rejected_even_with_a_valid_signature():
    body, headers = delivery()
    assert verify_signature(body, headers, SECRET, now=NOW + 1) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verify_signature(body, headers, SECRET, now=NOW + 24 * 3600)


def test_the_default_clock_is_now():
    body, headers = delivery(timestamp=NOW)
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verify_signature(body, headers, SECRET)  # NOW is in 2027: far from the real clock


def test_a_non_numeric_timestamp_is_rejected():
    body, headers = delivery()
    headers[WEBHOOK_TIMESTAMP_HEADER] = "yesterday"
    with pytest.raises(InvalidSignatureError, match="not Unix seconds"):
        verify_signature(body, headers, SECRET, now=NOW)


def test_a_signed_body_that_is_not_json_is_rejected():
    body = "not json"
    stamp = str(NOW)
    headers = {
        WEBHOOK_DELIVERY_ID_HEADER: DELIVERY_ID,
        WEBHOOK_TIMESTAMP_HEADER: stamp,
        WEBHOOK_SIGNATURE_HEADER: _generate_hmac_signature(SECRET, DELIVERY_ID, stamp, body),
    }
    with pytest.raises(InvalidSignatureError, match="not JSON"):
        verify_signature(body, headers, SECRET, now=NOW)


def test_a_json_body_that_is_not_an_object_is_wrapped():
    body, headers = delivery([1, 2, 3])
    assert verify_signature(body, headers, SECRET, now=NOW) == {"data": [1, 2, 3]}


def test_the_error_is_a_value_error_for_frameworks_that_map_it_to_400():
    body, headers = delivery(secret="wrong")
    with pytest.raises(ValueError, match="does not match"):
        verify_signature(body, headers, SECRET, now=NOW)

"""``verify_signature`` accepts exactly what an MLflow server signs, and nothing else.

Deliveries are signed here the way MLflow does it: with ``mlflow.webhooks.delivery``'s own
``_generate_hmac_signature`` and header names, so a change on either side shows up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading

import pytest

# Webhooks came with MLflow 3.3; under an older installed client there is no reference signer.
pytest.importorskip("mlflow.webhooks", reason="MLflow's webhook signer needs MLflow >= 3.3")

from mlflow.webhooks.constants import (
    WEBHOOK_DELIVERY_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
)
from mlflow.webhooks.delivery import _generate_hmac_signature

from registry_sdk import webhooks
from registry_sdk.errors import ConfigurationError
from registry_sdk.webhooks import (
    DEFAULT_TOLERANCE_S,
    InvalidSignatureError,
    WebhookVerifier,
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


@pytest.fixture(autouse=True)
def fresh_default_verifier(monkeypatch):
    """``verify_signature``'s process-wide memory of accepted deliveries starts empty."""
    monkeypatch.setattr(webhooks, "_DEFAULT_VERIFIER", WebhookVerifier())


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
    body, headers = delivery(delivery_id="as-bytes")
    assert verify_signature(body.encode("utf-8"), headers, SECRET, now=NOW) == PAYLOAD


def test_a_non_ascii_body_verifies_as_bytes_and_as_text():
    payload = {**PAYLOAD, "data": {"name": "modèle-é", "alias": "prod", "version": "1"}}
    body, headers = delivery(payload)
    assert verify_signature(body.encode("utf-8"), headers, SECRET, now=NOW) == payload
    body, headers = delivery(payload, delivery_id="as-text")
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


# ============================================================================ replays


def test_the_same_delivery_twice_is_rejected_as_a_replay():
    body, headers = delivery()
    assert verify_signature(body, headers, SECRET, now=NOW) == PAYLOAD

    with pytest.raises(InvalidSignatureError, match="already accepted: rejected as a replay"):
        verify_signature(body, headers, SECRET, now=NOW + 1)
    lowered = {key.lower(): value for key, value in headers.items()}
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_signature(body.encode("utf-8"), lowered, SECRET, now=NOW + 2)


def test_a_replay_is_told_apart_from_a_new_delivery_of_the_same_event():
    first = delivery()
    second = delivery(delivery_id="1f9c1b0e-second-delivery")
    verify_signature(*first, SECRET, now=NOW)

    assert verify_signature(*second, SECRET, now=NOW) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_signature(*first, SECRET, now=NOW)


def test_delivery_ids_are_remembered_per_secret():
    other = "whsec-another-hook-51c0"
    verify_signature(*delivery(), SECRET, now=NOW)

    assert verify_signature(*delivery(secret=other), other, now=NOW) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_signature(*delivery(secret=other), other, now=NOW)


def test_only_an_accepted_delivery_is_remembered():
    body, headers = delivery()
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body.replace("prod", "dev"), headers, SECRET, now=NOW)

    assert verify_signature(body, headers, SECRET, now=NOW) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="replay"):
        verify_signature(body, headers, SECRET, now=NOW)


def test_a_verifier_of_ones_own_keeps_its_own_memory():
    mine = WebhookVerifier()
    body, headers = delivery()
    assert verify_signature(body, headers, SECRET, now=NOW, verifier=mine) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="replay"):
        mine.verify(body, headers, SECRET, now=NOW)

    assert verify_signature(body, headers, SECRET, now=NOW) == PAYLOAD  # the default never saw it
    assert mine.remembered == 1


def test_concurrent_copies_of_one_delivery_are_accepted_exactly_once():
    body, headers = delivery()
    copies = 8
    start = threading.Barrier(copies)
    outcomes: list[str] = []
    lock = threading.Lock()

    def receive() -> None:
        start.wait()
        try:
            verify_signature(body, headers, SECRET, now=NOW)
            outcome = "accepted"
        except InvalidSignatureError as exc:
            outcome = str(exc)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=receive) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("accepted") == 1
    assert all("replay" in o for o in outcomes if o != "accepted")


def test_forget_lets_the_servers_retry_through():
    verifier = WebhookVerifier()
    body, headers = delivery()
    verifier.verify(body, headers, SECRET, now=NOW)

    verifier.forget(DELIVERY_ID, SECRET)

    assert verifier.verify(body, headers, SECRET, now=NOW + 30) == PAYLOAD
    with pytest.raises(InvalidSignatureError, match="replay"):
        verifier.verify(body, headers, SECRET, now=NOW + 31)


def test_ids_are_forgotten_once_their_delivery_is_stale_and_a_replay_is_still_rejected():
    verifier = WebhookVerifier()
    for n in range(5):
        verifier.verify(*delivery(delivery_id=f"early-{n}"), SECRET, now=NOW)
    assert verifier.remembered == 5

    later = NOW + DEFAULT_TOLERANCE_S + 1
    verifier.verify(*delivery(timestamp=later, delivery_id="later"), SECRET, now=later)

    assert verifier.remembered == 1
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verifier.verify(*delivery(delivery_id="early-0"), SECRET, now=later)


def test_memory_is_bounded_and_a_delivery_it_cannot_rule_out_as_a_replay_is_rejected():
    verifier = WebhookVerifier(max_deliveries=3)
    for n in range(5):
        verifier.verify(*delivery(timestamp=NOW + n, delivery_id=f"d-{n}"), SECRET, now=NOW + 5)

    assert verifier.remembered == 3
    # d-0 was dropped to make room: within the tolerance, yet refused, never accepted twice.
    with pytest.raises(InvalidSignatureError, match="possible replay"):
        verifier.verify(*delivery(timestamp=NOW, delivery_id="d-0"), SECRET, now=NOW + 5)
    with pytest.raises(InvalidSignatureError, match="already accepted"):
        verifier.verify(*delivery(timestamp=NOW + 4, delivery_id="d-4"), SECRET, now=NOW + 5)
    fresh = delivery(timestamp=NOW + 5, delivery_id="d-5")
    assert verifier.verify(*fresh, SECRET, now=NOW + 5) == PAYLOAD
    assert verifier.remembered == 3


def test_a_clock_going_back_does_not_revive_a_forgotten_delivery():
    verifier = WebhookVerifier()
    verifier.verify(*delivery(), SECRET, now=NOW)
    later = NOW + DEFAULT_TOLERANCE_S + 1
    verifier.verify(*delivery(timestamp=later, delivery_id="later"), SECRET, now=later)
    assert verifier.remembered == 1  # the first id is forgotten

    with pytest.raises(InvalidSignatureError, match="possible replay"):
        verifier.verify(*delivery(), SECRET, now=NOW)


@pytest.mark.parametrize("max_deliveries", [0, -1, 2.5, True])
def test_a_verifier_needs_room_for_at_least_one_delivery(max_deliveries):
    with pytest.raises(ConfigurationError, match="max_deliveries"):
        WebhookVerifier(max_deliveries=max_deliveries)


def test_the_verifier_repr_holds_no_secret_or_id():
    verifier = WebhookVerifier()
    verifier.verify(*delivery(), SECRET, now=NOW)

    assert repr(verifier) == "WebhookVerifier(remembered=1, max_deliveries=10000)"


# ============================================================================ hostile input


@pytest.mark.parametrize("secret", ["", " ", "\n", " \t\r\n "])
def test_an_empty_or_blank_secret_is_refused_even_for_a_delivery_signed_with_it(secret):
    body, headers = delivery(secret=secret)  # a forgery: anyone can sign with an empty key

    with pytest.raises(ConfigurationError, match="secret is empty or blank"):
        verify_signature(body, headers, secret, now=NOW)


def test_a_refused_secret_is_a_value_error_not_a_bad_delivery():
    body, headers = delivery(secret="")

    with pytest.raises(ValueError, match="secret") as info:
        verify_signature(body, headers, "", now=NOW)
    assert not isinstance(info.value, InvalidSignatureError)


def _signed_bytes(body: bytes, *, timestamp: str = str(NOW)) -> dict[str, str]:
    signed = f"{DELIVERY_ID}.{timestamp}.".encode() + body
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    return {
        WEBHOOK_DELIVERY_ID_HEADER: DELIVERY_ID,
        WEBHOOK_TIMESTAMP_HEADER: timestamp,
        WEBHOOK_SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode(),
    }


def test_a_body_that_is_not_utf8_is_an_invalid_signature_not_a_decode_error():
    body = b'{"data": "\xff\xfe not utf-8"}'
    _, headers = delivery()

    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body, headers, SECRET, now=NOW)
    with pytest.raises(InvalidSignatureError, match="not UTF-8"):
        verify_signature(body, _signed_bytes(body), SECRET, now=NOW)


def test_a_text_body_with_a_lone_surrogate_is_an_invalid_signature():
    _, headers = delivery()

    with pytest.raises(InvalidSignatureError, match="not valid text"):
        verify_signature('{"data": "\ud800"}', headers, SECRET, now=NOW)


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
def test_a_non_finite_timestamp_is_rejected_even_when_signed(stamp):
    assert not math.isfinite(float(stamp))
    body, headers = delivery()
    headers = {**headers, **_signed_bytes(body.encode(), timestamp=stamp)}

    with pytest.raises(InvalidSignatureError, match="not Unix seconds"):
        verify_signature(body, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    ("tolerance", "now"),
    [(math.nan, NOW), (math.inf, NOW), (-1.0, NOW), (DEFAULT_TOLERANCE_S, math.nan)],
    ids=["nan-tolerance", "inf-tolerance", "negative-tolerance", "nan-now"],
)
def test_a_tolerance_or_clock_that_is_not_a_finite_number_is_refused(tolerance, now):
    body, headers = delivery(timestamp=NOW - 10**9)  # decades stale

    with pytest.raises(ConfigurationError, match=r"tolerance|now") as info:
        verify_signature(body, headers, SECRET, tolerance=tolerance, now=now)
    assert not isinstance(info.value, InvalidSignatureError)  # the receiver's mistake

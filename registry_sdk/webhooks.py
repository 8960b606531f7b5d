"""Registry webhooks: typed admin over MLflow 3's webhooks, and signature checks for receivers.

An MLflow server POSTs a JSON payload to each active webhook whose events match, with headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (Unix seconds) and, when the webhook has a
secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``.
:func:`verify_signature` checks all three and rejects a tampered body, a stale delivery and a
delivery it has already accepted (a replay); a :class:`WebhookVerifier` holds what it remembers.

Note: an MLflow server refuses to deliver to private or loopback addresses unless it runs with
``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import secrets
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk.entities import _opt_str, _str, _timestamp
from registry_sdk.errors import ConfigurationError, InvalidResponseError, RegistryError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "EVENTS",
    "InvalidSignatureError",
    "Webhook",
    "WebhookTestResult",
    "WebhookVerifier",
    "verify_signature",
]

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
#: Deliveries older (or further in the future) than this are rejected as replays.
DEFAULT_TOLERANCE_S = 300.0
#: How many accepted deliveries a :class:`WebhookVerifier` remembers at most.
DEFAULT_MAX_DELIVERIES = 10_000

#: The registry events a webhook can subscribe to (``entity.action``).
EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
    "model_version_alias.deleted",
)


class InvalidSignatureError(RegistryError, ValueError):
    """A webhook delivery whose signature, timestamp or headers do not verify."""


def _event_to_json(event: str) -> dict[str, str]:
    entity, sep, action = event.partition(".")
    if not sep or not entity or not action:
        msg = f"invalid webhook event {event!r}: write ENTITY.ACTION, one of {', '.join(EVENTS)}"
        raise ValueError(msg)
    return {"entity": entity.upper(), "action": action.upper()}


def _event_from_json(item: object) -> str:
    if not isinstance(item, Mapping):
        msg = f"malformed webhook event {item!r}"
        raise InvalidResponseError(msg)
    return f"{str(item.get('entity', '')).lower()}.{str(item.get('action', '')).lower()}"


@attrs.frozen(kw_only=True)
class Webhook:
    """A registry webhook (its secret is never returned by the server)."""

    webhook_id: str
    name: str
    url: str
    events: tuple[str, ...]
    description: str | None = None
    status: str = "ACTIVE"
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "webhook_id": self.webhook_id,
            "name": self.name,
            "url": self.url,
            "events": list(self.events),
            "description": self.description,
            "status": self.status,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Webhook:
        """Build from the ``webhook`` object of MLflow's REST API."""
        if not isinstance(data, Mapping):
            msg = f"expected a webhook object, got {type(data).__name__}"
            raise InvalidResponseError(msg)
        events = data.get("events") or []
        if not isinstance(events, list):
            msg = "malformed webhook events"
            raise InvalidResponseError(msg)
        return cls(
            webhook_id=_str(data.get("webhook_id"), "webhook id"),
            name=_str(data.get("name"), "webhook name", default=""),
            url=_str(data.get("url"), "webhook url", default=""),
            events=tuple(_event_from_json(e) for e in events),
            description=_opt_str(data.get("description")),
            status=str(data.get("status") or "ACTIVE"),
            created_at=_timestamp(data["creation_timestamp"])
            if data.get("creation_timestamp")
            else None,
            updated_at=_timestamp(data["last_updated_timestamp"])
            if data.get("last_updated_timestamp")
            else None,
        )

    @classmethod
    def from_mlflow(cls, hook: Any) -> Webhook:
        """Build from an ``mlflow.entities.webhook.Webhook``."""
        return cls(
            webhook_id=hook.webhook_id,
            name=hook.name,
            url=hook.url,
            events=tuple(f"{e.entity.value}.{e.action.value}" for e in hook.events),
            description=_opt_str(hook.description),
            status=str(getattr(hook.status, "value", hook.status)),
            created_at=_timestamp(hook.creation_timestamp) if hook.creation_timestamp else None,
            updated_at=_timestamp(hook.last_updated_timestamp)
            if hook.last_updated_timestamp
            else None,
        )


@attrs.frozen(kw_only=True)
class WebhookTestResult:
    """What the receiver answered to a test delivery."""

    success: bool
    status: int | None = None
    body: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookTestResult:
        """Build from the ``result`` object of MLflow's REST API."""
        status = data.get("response_status")
        return cls(
            success=bool(data.get("success")),
            status=int(status)
            if isinstance(status, (int, str)) and str(status).isdigit()
            else None,
            body=_opt_str(data.get("response_body")),
            error=_opt_str(data.get("error_message")),
        )


def events_to_json(events: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    """Events as the REST API wants them."""
    return [_event_to_json(e) for e in events]


def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """The ``X-MLflow-Signature`` value MLflow computes for a delivery."""
    return _signature(secret, delivery_id, timestamp, body.encode("utf-8"))


def _signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    # MLflow signs the UTF-8 of "<id>.<timestamp>.<body>"; the body's own bytes are the same.
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _secret_bytes(secret: str) -> bytes:
    """The secret as HMAC uses it; refuses a secret anyone could sign with."""
    if not isinstance(secret, str) or not secret.strip():
        msg = (
            "the webhook secret is empty or blank, so anyone could sign a delivery: pass the "
            "secret the webhook was created with"
        )
        raise ConfigurationError(msg)
    try:
        return secret.encode("utf-8")
    except UnicodeEncodeError:
        msg = "the webhook secret is not valid text (it holds a lone surrogate)"
        raise ConfigurationError(msg) from None


def _finite(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        msg = f"{name} must be a finite number of seconds, got {value!r}"
        raise ConfigurationError(msg)
    return float(value)


def _unix_seconds(timestamp: str) -> float:
    try:
        sent = float(timestamp)
    except ValueError:
        sent = math.nan
    # nan and inf would slip through the freshness comparison, which is false for nan.
    if not math.isfinite(sent):
        msg = f"webhook timestamp {timestamp!r} is not Unix seconds"
        raise InvalidSignatureError(msg)
    return sent


_Key = tuple[bytes, str]


class WebhookVerifier:
    """Verifies MLflow webhook deliveries and refuses one it has already accepted (a replay).

    It remembers the id of every delivery it accepted, per secret, for as long as the delivery's
    timestamp is within the tolerance; after that the freshness check refuses a replay by itself.
    Safe to share between threads. Memory stays bounded: at most ``max_deliveries`` ids are
    kept; beyond that the oldest is dropped, and a delivery no newer than a dropped one is
    refused too, since a replay of it could no longer be told apart.

    Each process remembers its own deliveries: behind several worker processes, a replay that
    reaches another worker is caught by the timestamp check only.

    Args:
        max_deliveries: how many accepted deliveries to remember at most.
    """

    def __init__(self, *, max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):
            msg = f"max_deliveries must be a whole number, got {max_deliveries!r}"
            raise ConfigurationError(msg)
        if max_deliveries < 1:
            msg = f"max_deliveries must be 1 or more, got {max_deliveries}"
            raise ConfigurationError(msg)
        self._max = max_deliveries
        # Ids are filed under a keyed digest of the secret, never the secret itself.
        self._pepper = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._seen: dict[_Key, float] = {}
        # (sent, tie-break, key), oldest first; an entry whose key was forgotten is skipped.
        self._order: list[tuple[float, int, _Key]] = []
        self._pushed = 0
        # The widest tolerance used so far: an id is kept while any call could accept it.
        self._horizon = 0.0
        # The newest timestamp among the forgotten ids: nothing at or before it can be checked.
        self._floor = -math.inf

    def __repr__(self) -> str:
        return f"WebhookVerifier(remembered={self.remembered}, max_deliveries={self._max})"

    @property
    def remembered(self) -> int:
        """How many accepted deliveries it remembers now."""
        with self._lock:
            return len(self._seen)

    def verify(
        self,
        body: bytes | str,
        headers: Mapping[str, str],
        secret: str,
        *,
        tolerance: float = DEFAULT_TOLERANCE_S,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Verify a delivery, remember it as accepted, and return its JSON payload.

        Arguments and errors as :func:`verify_signature`.
        """
        key = self._secret_key(secret)
        tolerance = _finite(tolerance, "tolerance")
        if tolerance < 0:
            msg = f"tolerance must be 0 or more seconds, got {tolerance!r}"
            raise ConfigurationError(msg)
        current = time.time() if now is None else _finite(now, "now")
        given = _header(headers, SIGNATURE_HEADER)
        timestamp = _header(headers, TIMESTAMP_HEADER)
        delivery_id = _header(headers, DELIVERY_ID_HEADER)
        if not given or not timestamp or not delivery_id:
            missing = [
                n
                for n, v in (
                    (SIGNATURE_HEADER, given),
                    (TIMESTAMP_HEADER, timestamp),
                    (DELIVERY_ID_HEADER, delivery_id),
                )
                if not v
            ]
            msg = f"webhook delivery lacks {', '.join(missing)}"
            raise InvalidSignatureError(msg)
        sent = _unix_seconds(timestamp)
        if abs(current - sent) > tolerance:
            msg = (
                f"webhook delivery {delivery_id} is {abs(current - sent):.0f} s away from now "
                f"(tolerance {tolerance:.0f} s): rejected as stale or replayed"
            )
            raise InvalidSignatureError(msg)
        raw = _body_bytes(body)
        try:
            expected = _signature(secret, delivery_id, timestamp, raw).encode()
            offered = given.strip().encode()
        except UnicodeEncodeError:
            msg = "webhook delivery has headers that are not valid text"
            raise InvalidSignatureError(msg) from None
        if not hmac.compare_digest(expected, offered):
            msg = f"webhook delivery {delivery_id} has a signature that does not match its body"
            raise InvalidSignatureError(msg)
        payload = _payload(raw, delivery_id)
        self._admit((key, delivery_id), sent, tolerance, current)
        return payload

    def forget(self, delivery_id: str, secret: str) -> None:
        """Accept this delivery once more: for a handler that failed after verifying it.

        MLflow retries a delivery answered with 429 or 5xx under the same id; call this before
        answering so, and the retry is accepted instead of refused as a replay.
        """
        key = (self._secret_key(secret), delivery_id)
        with self._lock:
            self._seen.pop(key, None)

    def _secret_key(self, secret: str) -> bytes:
        return hmac.new(self._pepper, _secret_bytes(secret), hashlib.sha256).digest()

    def _admit(self, key: _Key, sent: float, tolerance: float, now: float) -> None:
        delivery_id = key[1]
        with self._lock:
            self._horizon = max(self._horizon, tolerance)
            self._expire(now)
            if key in self._seen:
                msg = f"webhook delivery {delivery_id} was already accepted: rejected as a replay"
                raise InvalidSignatureError(msg)
            if len(self._seen) >= self._max:
                self._drop_oldest()
            if sent <= self._floor:
                msg = (
                    f"webhook delivery {delivery_id} is no newer than deliveries this verifier "
                    f"no longer remembers (it keeps {self._max}): rejected as a possible replay"
                )
                raise InvalidSignatureError(msg)
            self._seen[key] = sent
            self._pushed += 1
            heapq.heappush(self._order, (sent, self._pushed, key))

    def _expire(self, now: float) -> None:
        """Forget the ids whose timestamp no call would accept any more."""
        while self._order and self._order[0][0] + self._horizon < now:
            sent, _, key = heapq.heappop(self._order)
            self._floor = max(self._floor, sent)
            if self._seen.get(key) == sent:
                del self._seen[key]

    def _drop_oldest(self) -> None:
        while self._order:
            sent, _, key = heapq.heappop(self._order)
            self._floor = max(self._floor, sent)
            if self._seen.get(key) == sent:
                del self._seen[key]
                return


def _body_bytes(body: bytes | str) -> bytes:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        msg = "webhook delivery body is not valid text (it holds a lone surrogate)"
        raise InvalidSignatureError(msg) from None


def _payload(raw: bytes, delivery_id: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        msg = f"webhook delivery {delivery_id} is signed but its body is not UTF-8"
        raise InvalidSignatureError(msg) from None
    try:
        payload = json.loads(text)
    except ValueError:
        msg = f"webhook delivery {delivery_id} is signed but its body is not JSON"
        raise InvalidSignatureError(msg) from None
    return payload if isinstance(payload, dict) else {"data": payload}


#: The verifier :func:`verify_signature` uses when it is given none.
_DEFAULT_VERIFIER = WebhookVerifier()


def verify_signature(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
    verifier: WebhookVerifier | None = None,
) -> dict[str, Any]:
    """Verify an MLflow webhook delivery and return its JSON payload.

    A delivery is accepted once: its id is remembered (per secret) by ``verifier``, by default
    one verifier shared by the whole process, and the same delivery again is refused.

    Args:
        body: the raw request body, exactly as received.
        headers: the request headers (any case).
        secret: the webhook's secret.
        tolerance: how many seconds the delivery's timestamp may differ from now.
        now: the current Unix time (for tests).
        verifier: the :class:`WebhookVerifier` that remembers accepted deliveries.

    Raises:
        InvalidSignatureError: a header is missing, the timestamp is not finite Unix seconds,
            stale or in the future, the signature does not match the body (which was then
            tampered with), the body is not UTF-8 JSON, or the delivery was accepted before.
        ConfigurationError: the secret is empty or blank, or ``tolerance`` or ``now`` is not a
            finite number (``tolerance`` not below 0).
    """
    chosen = _DEFAULT_VERIFIER if verifier is None else verifier
    return chosen.verify(body, headers, secret, tolerance=tolerance, now=now)

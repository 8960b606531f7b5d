"""Registry webhooks: typed admin over MLflow 3's webhooks, and signature checks for receivers.

An MLflow server POSTs a JSON payload to each active webhook whose events match, with headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (Unix seconds) and, when the webhook has a
secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``.
:func:`verify_signature` checks all three and rejects a tampered body or a stale delivery.

Note: an MLflow server refuses to deliver to private or loopback addresses unless it runs with
``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from registry_sdk.entities import _opt_str, _str, _timestamp
from registry_sdk.errors import InvalidResponseError, RegistryError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "EVENTS",
    "InvalidSignatureError",
    "Webhook",
    "WebhookTestResult",
    "verify_signature",
]

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
#: Deliveries older (or further in the future) than this are rejected as replays.
DEFAULT_TOLERANCE_S = 300.0

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
    signed = f"{delivery_id}.{timestamp}.{body}".encode()
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify_signature(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify an MLflow webhook delivery and return its JSON payload.

    Args:
        body: the raw request body, exactly as received.
        headers: the request headers (any case).
        secret: the webhook's secret.
        tolerance: how many seconds the delivery's timestamp may differ from now.
        now: the current Unix time (for tests).

    Raises:
        InvalidSignatureError: a header is missing, the timestamp is stale or in the future,
            or the signature does not match the body (which was then tampered with).
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
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
    try:
        sent = float(timestamp)
    except ValueError:
        msg = f"webhook timestamp {timestamp!r} is not Unix seconds"
        raise InvalidSignatureError(msg) from None
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        msg = (
            f"webhook delivery {delivery_id} is {abs(current - sent):.0f} s away from now "
            f"(tolerance {tolerance:.0f} s): rejected as stale or replayed"
        )
        raise InvalidSignatureError(msg)
    expected = signature(secret, delivery_id, timestamp, text)
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        msg = f"webhook delivery {delivery_id} has a signature that does not match its body"
        raise InvalidSignatureError(msg)
    try:
        payload = json.loads(text)
    except ValueError:
        msg = f"webhook delivery {delivery_id} is signed but its body is not JSON"
        raise InvalidSignatureError(msg) from None
    return payload if isinstance(payload, dict) else {"data": payload}

"""A real ``mlflow server`` (SQL store) delivers registry events to a receiver that verifies them.

The receiver is an ``http.server`` on 127.0.0.1 in a thread; it accepts a delivery only when
``registry_sdk.webhooks.verify_signature`` does. A captured genuine delivery is then replayed with
a tampered body and with a clock an hour ahead: both are rejected, by the function and by the
receiver over HTTP.

The server runs the installed mlflow: with MLflow 2 installed these tests are skipped (no 2.x
server has registry webhooks; test_server_capabilities.py checks the SDK's error there).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import pytest
from _client_version import needs_webhook_server

from registry_sdk import RegistryClient
from registry_sdk.webhooks import (
    DELIVERY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    InvalidSignatureError,
    WebhookVerifier,
    verify_signature,
)

pytestmark = [pytest.mark.timeout(300), needs_webhook_server]

SECRET = "receiver-secret-3c9d"
#: Deliveries run in the server's background pool: wait for them, bounded (a miss fails).
DELIVERY_WAIT_S = 90.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    payload: dict | None
    error: str | None


class Receiver:
    """Accepts (200) exactly the deliveries ``verify_signature`` accepts; 401 for the rest."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.clock = time.time
        self.verifier = WebhookVerifier()  # remembers what this receiver accepted
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                try:
                    payload = verify_signature(
                        body,
                        headers,
                        receiver.secret,
                        now=receiver.clock(),
                        verifier=receiver.verifier,
                    )
                except InvalidSignatureError as exc:
                    delivery = Delivery(headers, body, 401, None, str(exc))
                else:
                    delivery = Delivery(headers, body, 200, payload, None)
                with receiver._changed:  # recorded before the sender sees the answer
                    receiver.deliveries.append(delivery)
                    receiver._changed.notify_all()
                self.send_response(delivery.status)
                self.end_headers()
                self.wfile.write(b"ok" if delivery.status == 200 else b"invalid signature")

            def log_message(self, format, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Closing does not wait for a handler still reading a delivery the server is retrying.
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, predicate) -> Delivery:
        """The first delivery matching ``predicate``; fails after ``DELIVERY_WAIT_S``."""
        deadline = time.monotonic() + DELIVERY_WAIT_S
        with self._changed:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching delivery; received: {self.deliveries!r}")
                self._changed.wait(left)

    def send(self, body: bytes, headers: dict[str, str]) -> int:
        """POST a delivery to this receiver as the server would; returns the status."""
        wanted = {k: v for k, v in headers.items() if k.lower() not in {"host", "content-length"}}
        request = urllib.request.Request(  # noqa: S310 - http on loopback
            self.url, data=body, headers=wanted, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def receiver():
    r = Receiver(SECRET)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def client(mlflow_server_webhooks, tmp_path):
    uri = mlflow_server_webhooks.uri
    with RegistryClient(
        uri, registry_uri=uri, cache_dir=tmp_path / "cache", offline=False, timeout=30,
        max_retries=1,
    ) as registry:  # fmt: skip
        yield registry


@pytest.fixture
def webhook(client, receiver):
    """Creates webhooks for a test and deletes them afterwards."""
    made = []

    def create(events, secret=SECRET):
        hook = client.create_webhook(unique("it-hook"), receiver.url, events, secret=secret)
        made.append(hook.webhook_id)
        return hook

    try:
        yield create
    finally:
        for webhook_id in made:
            client.delete_webhook(webhook_id)


def of_model(name: str, action: str):
    def match(delivery: Delivery) -> bool:
        payload = json.loads(delivery.body)
        return payload.get("action") == action and payload.get("data", {}).get("name") == name

    return match


def test_the_server_delivers_alias_events_that_verify(client, receiver, webhook):
    hook = webhook(["model_version_alias.created", "model_version_alias.deleted"])
    assert hook.events == ("model_version_alias.created", "model_version_alias.deleted")
    name = unique("hooked")
    client.create_model(name)
    client.create_version(name, "s3://bucket/model-1")

    client.set_alias(name, "prod", 1, reason="webhook test")
    created = receiver.wait_for(of_model(name, "created"))
    assert created.status == 200, created.error
    assert created.payload is not None
    assert created.payload["entity"] == "model_version_alias"
    assert created.payload["action"] == "created"
    assert created.payload["data"] == {"name": name, "alias": "prod", "version": "1"}
    for header in (SIGNATURE_HEADER, TIMESTAMP_HEADER, DELIVERY_ID_HEADER):
        assert header in created.headers
    assert created.headers[SIGNATURE_HEADER].startswith("v1,")

    client.delete_alias(name, "prod")
    deleted = receiver.wait_for(of_model(name, "deleted"))
    assert deleted.status == 200, deleted.error
    assert deleted.payload["data"] == {"name": name, "alias": "prod"}
    assert deleted.headers[DELIVERY_ID_HEADER] != created.headers[DELIVERY_ID_HEADER]


def test_a_tampered_or_replayed_delivery_is_rejected(client, receiver, webhook):
    webhook(["model_version_alias.created"])
    name = unique("replayed")
    client.create_model(name)
    client.create_version(name, "s3://bucket/model-1")
    client.create_version(name, "s3://bucket/model-2")
    client.set_alias(name, "prod", 1)
    genuine = receiver.wait_for(of_model(name, "created"))
    assert genuine.status == 200, genuine.error
    body, headers = genuine.body, genuine.headers
    sent_at = float(headers[TIMESTAMP_HEADER])

    # The captured delivery verifies as received (by a verifier that has not seen it yet) ...
    checker = WebhookVerifier()
    assert verify_signature(body, headers, SECRET, verifier=checker) == genuine.payload
    # ... but not with its body changed (here: a different version to deploy),
    tampered = body.replace(b'"version": "1"', b'"version": "2"')
    assert tampered != body
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(tampered, headers, SECRET)
    # ... nor replayed long after it was sent, nor before (a clock far off),
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verify_signature(body, headers, SECRET, now=sent_at + 3600)
    with pytest.raises(InvalidSignatureError, match="stale or replayed"):
        verify_signature(body, headers, SECRET, now=sent_at - 3600)
    # ... nor with another secret, nor with the headers' case changed *and* a value swapped.
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body, headers, "not-the-secret")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_signature(body, lowered, SECRET, verifier=WebhookVerifier()) == genuine.payload
    # ... nor a second time, while it is still fresh (a replay), whatever the headers' case,
    with pytest.raises(InvalidSignatureError, match="already accepted: rejected as a replay"):
        verify_signature(body, lowered, SECRET, verifier=checker)
    lowered[DELIVERY_ID_HEADER.lower()] = "forged-id"
    with pytest.raises(InvalidSignatureError, match="does not match"):
        verify_signature(body, lowered, SECRET)

    # The receiver, over HTTP: the tampered body, a replay an hour later and a replay at once
    # (the receiver accepted this delivery already) all get 401.
    count = len(receiver.deliveries)
    assert receiver.send(tampered, headers) == 401
    receiver.clock = lambda: sent_at + 3600
    assert receiver.send(body, headers) == 401
    receiver.clock = time.time
    assert receiver.send(body, headers) == 401
    outcomes = receiver.deliveries[count:]
    assert [d.status for d in outcomes] == [401, 401, 401]
    assert "does not match" in outcomes[0].error
    assert "stale or replayed" in outcomes[1].error
    assert "rejected as a replay" in outcomes[2].error


def test_a_receiver_with_another_secret_rejects_real_deliveries(client, receiver, webhook):
    webhook(["model_version_alias.created"], secret="the-servers-secret-only")
    name = unique("wrongsecret")
    client.create_model(name)
    client.create_version(name, "s3://bucket/model-1")
    client.set_alias(name, "prod", 1)
    delivery = receiver.wait_for(of_model(name, "created"))
    assert delivery.status == 401
    assert delivery.payload is None
    assert "does not match" in delivery.error
    payload = verify_signature(
        delivery.body, delivery.headers, "the-servers-secret-only", verifier=WebhookVerifier()
    )
    assert payload["data"] == {
        "name": name,
        "alias": "prod",
        "version": "1",
    }

"""The CloudEvents envelope and the Standard Webhooks signature, read back by independent libraries.

`cloudevents` (the CNCF SDK) parses what we send; `standardwebhooks` verifies our signatures.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from powerx_governance.events.cloudevents import (
    BATCH_CONTENT_TYPE,
    CONTENT_TYPE,
    SecretError,
    encode,
    envelope,
    new_secret,
    secret_key,
    signature,
    signed_headers,
)

TENANT = "7d0e5a52-3c1f-4f7e-9a51-0c8f1d2b9e11"


@dataclass
class Stored:
    seq: int
    id: str = "0b7d7c0e-8c55-4d62-9d0c-2f1b6a8d9e01"
    type: str = "plugin.version.alert"
    tenant_uuid: str | None = TENANT
    subject: str = f"{TENANT}/com.powerx.plugins.crm"
    time: datetime = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    data: dict[str, Any] = field(default_factory=lambda: {"change": "opened", "risk_level": "critical"})


def test_an_event_is_cloudevents_1_0_structured_json() -> None:
    content_type, body = encode([envelope(Stored(42))], batch=False)
    assert content_type == CONTENT_TYPE == "application/cloudevents+json"
    assert json.loads(body) == {
        "specversion": "1.0",
        "id": "0b7d7c0e-8c55-4d62-9d0c-2f1b6a8d9e01",
        "source": "/powerx/version-governance",
        "type": "plugin.version.alert",
        "subject": f"{TENANT}/com.powerx.plugins.crm",
        "time": "2026-11-30T08:00:00Z",
        "datacontenttype": "application/json",
        "sequence": "42",
        "tenantuuid": TENANT,
        "data": {"change": "opened", "risk_level": "critical"},
    }


def test_the_cloudevents_sdk_reads_what_we_send() -> None:
    _, body = encode([envelope(Stored(7), "/powerx/test")], batch=False)
    event = JSONFormat().read(CloudEvent, body)
    assert isinstance(event, CloudEvent)
    assert (event.get_specversion(), event.get_type(), event.get_source()) == (
        "1.0",
        "plugin.version.alert",
        "/powerx/test",
    )
    assert event.get_time() == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert event.get_extension("sequence") == "7"
    assert event.get_extension("tenantuuid") == TENANT
    assert event.get_data() == {"change": "opened", "risk_level": "critical"}


def test_batch_mode_is_a_json_array_of_events() -> None:
    events = [envelope(Stored(seq, id=f"id-{seq}")) for seq in (3, 4, 5)]
    content_type, body = encode(events, batch=True)
    assert content_type == BATCH_CONTENT_TYPE == "application/cloudevents-batch+json"
    parsed = json.loads(body)
    assert [e["sequence"] for e in parsed] == ["3", "4", "5"]
    for item in parsed:
        event = JSONFormat().read(CloudEvent, json.dumps(item))
        assert event.get_id() == item["id"]


def test_structured_mode_refuses_more_than_one_event() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        encode([envelope(Stored(1)), envelope(Stored(2))], batch=False)


def test_an_event_without_tenant_has_no_tenantuuid_attribute() -> None:
    assert "tenantuuid" not in envelope(Stored(1, tenant_uuid=None))


def test_standard_webhooks_verifies_our_signature() -> None:
    secret = new_secret()
    content_type, body = encode([envelope(Stored(9))], batch=False)
    headers = signed_headers(secret, "msg-1", int(time.time()), body, content_type)
    assert headers["Idempotency-Key"] == headers["webhook-id"] == "msg-1"
    assert Webhook(secret).verify(body, headers)["sequence"] == "9"


def test_a_changed_body_or_another_secret_fails_verification() -> None:
    secret = new_secret()
    _, body = encode([envelope(Stored(9))], batch=False)
    headers = signed_headers(secret, "msg-1", int(time.time()), body, CONTENT_TYPE)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"critical", b"low"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_the_signature_matches_the_spec_example() -> None:
    # The example of the Standard Webhooks specification (its secret, id, timestamp and body).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_generated_secrets_are_whsec_with_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert len(secret_key(first)) == 32


@pytest.mark.parametrize(
    "bad",
    ["plain-secret", "whsec_not*base64", "whsec_" + base64.b64encode(b"short").decode()],
)
def test_a_given_secret_must_be_whsec_base64_of_24_to_64_bytes(bad: str) -> None:
    with pytest.raises(SecretError):
        secret_key(bad)

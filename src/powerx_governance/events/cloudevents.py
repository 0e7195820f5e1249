"""CloudEvents 1.0 structured JSON (one event, or the JSON batch format) and Standard Webhooks signing.

The envelope is built here rather than with the `cloudevents` SDK: it is a ten-key dict, the
SDK has no batch format, and the exact bytes we sign must be the bytes we send. The tests
read our output back with the SDK and check signatures with the `standardwebhooks` package.

Signature (Standard Webhooks): `webhook-signature: v1,<base64 HMAC-SHA256>` over
`"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded part of the
`whsec_...` secret. `webhook-id` (and `Idempotency-Key`) is the id of the first event in the
request; `webhook-timestamp` is the wall-clock second of sending (receivers reject stale ones).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from powerx_governance.times import iso

SPECVERSION: Final = "1.0"
DEFAULT_SOURCE: Final = "/powerx/version-governance"
CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
DATA_CONTENT_TYPE: Final = "application/json"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
_SECRET_BYTES: Final = 32
_MIN_SECRET_BYTES: Final = 24
_MAX_SECRET_BYTES: Final = 64


class StoredEvent(Protocol):
    """An event as stored (an EventRow, or a Core row with its columns)."""

    seq: int
    id: str
    type: str
    tenant_uuid: str | None
    subject: str
    time: datetime
    data: dict[str, Any]


def envelope(event: StoredEvent, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The CloudEvents 1.0 JSON object of a stored event, with the `sequence` and `tenantuuid` extensions."""
    body: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": source,
        "type": event.type,
        "subject": event.subject,
        "time": iso(event.time),
        "datacontenttype": DATA_CONTENT_TYPE,
        "sequence": str(event.seq),
    }
    if event.tenant_uuid is not None:
        body["tenantuuid"] = event.tenant_uuid
    body["data"] = event.data
    return body


def encode(envelopes: Sequence[Mapping[str, Any]], *, batch: bool) -> tuple[str, bytes]:
    """(Content-Type, body): one structured event, or a JSON array in batch mode."""
    if not batch and len(envelopes) != 1:
        raise ValueError("structured mode carries exactly one event")
    document: Any = list(envelopes) if batch else envelopes[0]
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    return (BATCH_CONTENT_TYPE if batch else CONTENT_TYPE), body


# -- secrets and signatures -----------------------------------------------------------------------


class SecretError(ValueError):
    """A signing secret that is not `whsec_` followed by base64 of 24 to 64 bytes."""


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret; SecretError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"a signing secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("the part after whsec_ is not base64") from exc
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise SecretError(f"the key must be {_MIN_SECRET_BYTES} to {_MAX_SECRET_BYTES} bytes")
    return key


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, message_id: str, timestamp: int, body: bytes, content_type: str
) -> dict[str, str]:
    """Every header of one delivery request but the client's own."""
    return {
        "Content-Type": content_type,
        "Idempotency-Key": message_id,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }

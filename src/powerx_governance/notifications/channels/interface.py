"""What every notification channel offers, and how it fails.

A channel sends one `OutboundMessage` to one recipient and returns a receipt, or raises:
`TransientChannelError` (worth retrying later, possibly after the receiver's `Retry-After`)
or `PermanentChannelError` (retrying cannot help: refused destination, rejected address,
malformed request). Each message carries an idempotency key that the channel passes on
(an `Idempotency-Key` header, the SMTP `Message-ID`, console card keys), so sending the same
message again after a crash or a lost acknowledgement never produces a second one downstream.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import httpx

from powerx_governance.http.client import HttpPolicy, request_headers, retry_after_seconds
from powerx_governance.notifications.model import MessageKind
from powerx_governance.notifications.routes_file import DeliveryPolicy, Recipient
from powerx_governance.notifications.templates import Part, TemplateSet, card_kind, item_context

_MAX_RESPONSE_BYTES: Final = 64 * 1024
_RETRIED_STATUSES: Final = frozenset({408, 429})
_UNSAFE_IN_ADDRESS: Final = re.compile(r"[^A-Za-z0-9._+-]")


class ChannelError(Exception):
    """A message could not be sent; `channel` and `detail` say where and why."""

    def __init__(self, channel: str, detail: str) -> None:
        super().__init__(f"{channel}: {detail}")
        self.channel = channel
        self.detail = detail


class TransientChannelError(ChannelError):
    """Try again later; `retry_after` (seconds) is the receiver's own wish, when it said one."""

    def __init__(self, channel: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(channel, detail)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """Retrying will not help; the delivery goes to the dead letters at once."""


class DestinationRefusedError(PermanentChannelError):
    """The destination is not allowed (webhook allow-list, private address)."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of sending: the receiver's reference for the message, when it gives one."""

    reference: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message for one recipient, renderable in every part a channel needs."""

    idempotency_key: str
    kind: MessageKind
    recipient: Recipient
    tenant_uuid: str | None
    tenant_key: str | None
    risk_level: str
    context: Mapping[str, Any]
    templates: TemplateSet

    def render(self, part: Part) -> str:
        """One part (subject, HTML body, IM markdown ...) of this message."""
        return self.templates.render(self.kind, part, self.context)

    @property
    def items(self) -> Sequence[Mapping[str, Any]]:
        """The findings (or the single event) the message is about: one console card each."""
        items: Sequence[Mapping[str, Any]] = self.context["items"]
        return items

    def render_card(self, item: Mapping[str, Any]) -> tuple[str, str]:
        """(title, body) of the console card for one item."""
        kind = card_kind(self.kind)
        context = item_context(self.context, item)
        return (
            self.templates.render(kind, Part.CARD_TITLE, context),
            self.templates.render(kind, Part.CARD_BODY, context),
        )

    def fill(self, text: str) -> str:
        """A recipient address with `{tenant_key}` / `{tenant_uuid}` filled in, address-safe."""
        return text.format(
            tenant_key=_address_safe(self.tenant_key), tenant_uuid=_address_safe(self.tenant_uuid)
        )


def _address_safe(value: str | None) -> str:
    """A tenant key fit for the local part of an address: no `@`, `,`, spaces or angle brackets."""
    return _UNSAFE_IN_ADDRESS.sub("-", value or "")


class Channel(Protocol):
    """Sends messages over one kind of medium."""

    name: str

    def send(self, message: OutboundMessage) -> Receipt:
        """Send, or raise TransientChannelError / PermanentChannelError."""
        ...


# -- HTTP, shared by the channels that speak it -----------------------------------------------------


def http_policy(delivery: DeliveryPolicy) -> HttpPolicy:
    """Timeouts of one attempt; retries (and Retry-After) are the delivery schedule's business."""
    return HttpPolicy(
        connect_timeout=delivery.connect_timeout, read_timeout=delivery.read_timeout, max_attempts=1
    )


def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            break  # the answer matters only for its status and a short error code
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(channel: str, response: httpx.Response) -> ChannelError:
    status = response.status_code
    detail = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in _RETRIED_STATUSES:
        hint = retry_after_seconds(response.headers.get("retry-after"), now=datetime.now(UTC))
        return TransientChannelError(channel, detail, retry_after=hint)
    return PermanentChannelError(channel, detail)


class JsonPoster:
    """POSTs JSON for one channel through a shared httpx client (thread-safe; no redirects).

    Connections are not kept alive between messages, so nothing is left open when the
    service stops; the TLS context is built once. Not RetryingClient: it fixes its headers at
    construction, and each message needs its own Idempotency-Key.
    """

    def __init__(self, channel: str, policy: HttpPolicy) -> None:
        self.channel = channel
        self._client = httpx.Client(
            timeout=policy.timeout(),
            follow_redirects=False,
            headers=request_headers(None),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
        )

    def post(self, url: str, payload: Any, *, headers: Mapping[str, str]) -> bytes:
        """The 2xx answer's body; TransientChannelError (408, 429, 5xx, network) or PermanentChannelError."""
        try:
            with self._client.stream("POST", url, json=payload, headers=dict(headers)) as response:
                body = _read_capped(response)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise TransientChannelError(self.channel, f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # unsupported scheme, bad URL, protocol misuse: will not improve
            raise PermanentChannelError(self.channel, f"{type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise _status_error(self.channel, response)
        return body

    def close(self) -> None:
        self._client.close()

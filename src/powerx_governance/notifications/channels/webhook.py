"""IM robot webhooks: WeCom, Feishu (interactive card or rich-text post), DingTalk and Slack-style.

Before every request the URL's host must be on the allow-list, and every address it resolves
to must be public unless an address or network entry allows it explicitly: a webhook can
never be pointed at the metadata service, loopback or the internal network by accident or by
a tampered routes file. Redirects are not followed. The check runs just before sending, so
a name that starts resolving to a private address is refused from then on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

import msgspec

from powerx_governance.http.allow_list import AllowList, is_public
from powerx_governance.http.client import HttpPolicy, request_headers
from powerx_governance.notifications.channels.interface import (
    DestinationRefusedError,
    JsonPoster,
    OutboundMessage,
    PermanentChannelError,
    Receipt,
    TransientChannelError,
)
from powerx_governance.notifications.config import ChannelType
from powerx_governance.notifications.templates import Part, safe_url

Resolver = Callable[[str, int], list[str]]

_LIMITS: Final = {ChannelType.WECOM: 4000, ChannelType.DINGTALK: 18000, ChannelType.FEISHU: 20000}
_SLACK_SECTION: Final = 2900
_SLACK_MAX_SECTIONS: Final = 45
_RATE_LIMITED_CODES: Final = frozenset({45009, 130101, 9499, 11232})
_FEISHU_COLORS: Final = {"critical": "red", "high": "orange", "medium": "yellow", "low": "blue"}


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (TCP)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def check_destination(
    channel: str, url: str, allow: AllowList, *, require_https: bool, resolver: Resolver = resolve
) -> None:
    """Refuse a URL whose host is not allow-listed or resolves to a non-public, non-allow-listed address."""
    parts = urlsplit(url)
    schemes = ("https",) if require_https else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise DestinationRefusedError(
            channel, f"refusing {parts.scheme or 'no'} scheme (allowed: {', '.join(schemes)})"
        )
    host = parts.hostname
    if not allow.allows_host(host):
        raise DestinationRefusedError(channel, f"host {host!r} is not on the webhook allow-list")
    try:
        addresses = resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise TransientChannelError(channel, f"cannot resolve {host!r}: {exc}") from exc
    if not addresses:
        raise TransientChannelError(channel, f"{host!r} resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not is_public(address) and not allow.allows_address(address):
            raise DestinationRefusedError(
                channel, f"{host!r} resolves to non-public address {address}, which is not allow-listed"
            )


def _clip(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a line end when possible."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[: limit - 8].decode(errors="ignore")
    return cut[: cut.rfind("\n")] + "\n…" if "\n" in cut else cut + "…"


def _buttons(message: OutboundMessage) -> list[tuple[str, str]]:
    return [(a["label"], url) for a in message.context["actions"] if (url := safe_url(a["url"]))]


def wecom_payload(message: OutboundMessage) -> dict[str, Any]:
    return {
        "msgtype": "markdown",
        "markdown": {"content": _clip(message.render(Part.MARKDOWN), _LIMITS[ChannelType.WECOM])},
    }


def dingtalk_payload(message: OutboundMessage) -> dict[str, Any]:
    return {
        "msgtype": "markdown",
        "markdown": {
            "title": message.render(Part.IM_TITLE),
            "text": _clip(message.render(Part.MARKDOWN), _LIMITS[ChannelType.DINGTALK]),
        },
    }


def feishu_payload(message: OutboundMessage) -> dict[str, Any]:
    """An interactive card (markdown plus action buttons), or a rich-text post when asked for."""
    title = message.render(Part.IM_TITLE)
    buttons = _buttons(message)
    if message.recipient.format == "post":
        lines = [[{"tag": "text", "text": line}] for line in message.render(Part.EMAIL_TEXT).splitlines()]
        links = [{"tag": "a", "text": label, "href": url} for label, url in buttons]
        return {
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": title, "content": [*lines, links]}}},
        }
    actions = [
        {
            "tag": "button",
            "text": {"tag": "plain_text", "content": label},
            "url": url,
            "type": "primary" if i == 0 else "default",
        }
        for i, (label, url) in enumerate(buttons)
    ]
    card = {
        "config": {"wide_screen_mode": True},
        "header": {
            "template": _FEISHU_COLORS.get(message.risk_level, "grey"),
            "title": {"tag": "plain_text", "content": title},
        },
        "elements": [
            {"tag": "markdown", "content": _clip(message.render(Part.MARKDOWN), _LIMITS[ChannelType.FEISHU])},
            {"tag": "action", "actions": actions},
        ],
    }
    return {"msg_type": "interactive", "card": card}


def _sections(text: str) -> list[str]:
    """Slack section texts (each at most ~3000 characters), split at line ends."""
    sections: list[str] = []
    current = ""
    for line in text.splitlines():
        if current and len(current) + len(line) + 1 > _SLACK_SECTION:
            sections.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line[:_SLACK_SECTION]
    if current:
        sections.append(current)
    return sections[:_SLACK_MAX_SECTIONS]


def slack_payload(message: OutboundMessage) -> dict[str, Any]:
    """Block Kit: a header, mrkdwn sections, and the action buttons."""
    title = message.render(Part.IM_TITLE)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": s}}
        for s in _sections(message.render(Part.SLACK))
    ]
    elements = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": label[:75]},
            "url": url,
            "action_id": f"pxg-{i}",
        }
        for i, (label, url) in enumerate(_buttons(message))
    ]
    if elements:
        blocks.append({"type": "actions", "elements": elements})
    return {"text": title, "blocks": blocks}


PAYLOADS: Final[Mapping[ChannelType, Callable[[OutboundMessage], dict[str, Any]]]] = {
    ChannelType.WECOM: wecom_payload,
    ChannelType.FEISHU: feishu_payload,
    ChannelType.DINGTALK: dingtalk_payload,
    ChannelType.SLACK: slack_payload,
}


def _signature(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def signed(
    kind: ChannelType, url: str, payload: dict[str, Any], secret: str | None
) -> tuple[str, dict[str, Any]]:
    """DingTalk signs in the query string (milliseconds), Feishu in the body (seconds)."""
    if secret is None:
        return url, payload
    if kind is ChannelType.DINGTALK:
        stamp = str(int(time.time() * 1000))
        sign = _signature(secret.encode(), f"{stamp}\n{secret}".encode())
        joiner = "&" if urlsplit(url).query else "?"
        return f"{url}{joiner}timestamp={stamp}&sign={quote(sign, safe='')}", payload
    if kind is ChannelType.FEISHU:
        stamp = str(int(time.time()))
        return url, {**payload, "timestamp": stamp, "sign": _signature(f"{stamp}\n{secret}".encode(), b"")}
    return url, payload


def check_answer(channel: str, body: bytes) -> None:
    """IM robots answer 200 with an error code in the body; rate limits are transient, the rest permanent."""
    try:
        answer = msgspec.json.decode(body) if body.strip() else None
    except msgspec.DecodeError:
        return  # Slack answers a plain `ok`
    if not isinstance(answer, dict):
        return
    code = next((answer[k] for k in ("errcode", "code", "StatusCode") if k in answer), 0)
    if code in (0, None):
        return
    detail = (
        f"answered code {code}: {answer.get('errmsg') or answer.get('msg') or answer.get('StatusMessage')}"
    )
    if code in _RATE_LIMITED_CODES:
        raise TransientChannelError(channel, detail, retry_after=60.0)
    raise PermanentChannelError(channel, detail)


class WebhookChannel:
    """Posts one kind of IM robot payload to the recipient's allow-listed webhook URL."""

    def __init__(
        self,
        kind: ChannelType,
        *,
        allow: AllowList,
        require_https: bool,
        policy: HttpPolicy,
        resolver: Resolver = resolve,
    ) -> None:
        if kind not in PAYLOADS:
            raise ValueError(f"{kind.value} is not a webhook channel")
        self.name = kind.value
        self._kind = kind
        self._allow = allow
        self._require_https = require_https
        self._poster = JsonPoster(self.name, policy)
        self._resolver = resolver

    def send(self, message: OutboundMessage) -> Receipt:
        """Check the destination, build the payload, POST it with the message's Idempotency-Key."""
        url = message.recipient.url
        if url is None:
            raise PermanentChannelError(self.name, "recipient has no webhook URL")
        check_destination(
            self.name, url, self._allow, require_https=self._require_https, resolver=self._resolver
        )
        url, payload = signed(self._kind, url, PAYLOADS[self._kind](message), message.recipient.secret)
        headers = {**request_headers(None), "Idempotency-Key": message.idempotency_key}
        check_answer(self.name, self._poster.post(url, payload, headers=headers))
        return Receipt(None)

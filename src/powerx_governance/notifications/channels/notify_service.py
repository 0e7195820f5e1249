"""The PowerX notification service: `POST /internal/notify/version`, which fans out to console, IM and email.

The body carries the rendered parts (subject, text, HTML, markdown) and the structured
findings, so the service can lay them out its own way; `Idempotency-Key` lets it drop a
message it has already accepted when an acknowledgement was lost and the attempt repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from powerx_governance.http.client import HttpPolicy, request_headers
from powerx_governance.notifications.channels.interface import JsonPoster, OutboundMessage, Receipt
from powerx_governance.notifications.templates import Part

NOTIFY_PATH: Final = "/internal/notify/version"
NOTIFY_SCHEMA: Final = "powerx.notify/v1"
_FINDING_FIELDS: Final = (
    "id",
    "plugin_id",
    "plugin_name",
    "current_version",
    "target_version",
    "risk_level",
    "cvss",
    "action",
    "priority",
    "critical_patch",
    "sla_deadline",
    "release_notes_url",
    "url",
    "change",
)


def _finding(f: Mapping[str, Any]) -> dict[str, Any]:
    return {**{name: f[name] for name in _FINDING_FIELDS}, "advisories": [a["id"] for a in f["advisories"]]}


def notify_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of `POST /internal/notify/version` for one message."""
    context = message.context
    event = context["event"]
    return {
        "schema": NOTIFY_SCHEMA,
        "idempotency_key": message.idempotency_key,
        "kind": message.kind.value,
        "tenant_uuid": message.tenant_uuid,
        "audience": message.fill(message.recipient.audience),
        "priority": message.risk_level,
        "title": message.render(Part.EMAIL_SUBJECT),
        "text": message.render(Part.EMAIL_TEXT),
        "html": message.render(Part.EMAIL_HTML),
        "markdown": message.render(Part.MARKDOWN),
        "findings": [_finding(f) for f in context["findings"]],
        "total": context["total"],
        "event": None if event is None else {k: v for k, v in event.items() if k != "finding"},
        "actions": list(context["actions"]),
    }


class NotifyServiceChannel:
    """Hands messages to the PowerX notification service."""

    name = "notify_service"

    def __init__(self, base_url: str, *, token: str | None, policy: HttpPolicy) -> None:
        self._url = base_url.rstrip("/") + NOTIFY_PATH
        self._token = token
        self._poster = JsonPoster(self.name, policy)

    def send(self, message: OutboundMessage) -> Receipt:
        """POST the message; the service's `id` (when it answers one) is the receipt."""
        headers = {**request_headers(self._token), "Idempotency-Key": message.idempotency_key}
        body = self._poster.post(self._url, notify_body(message), headers=headers)
        try:
            answer = msgspec.json.decode(body) if body.strip() else None
        except msgspec.DecodeError:
            answer = None
        reference = answer.get("id") if isinstance(answer, dict) else None
        return Receipt(str(reference) if reference is not None else None)

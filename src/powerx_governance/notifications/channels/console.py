"""The embedded channel: cards in the store for the console, one per finding or event (no network)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.db.chunks import chunks
from powerx_governance.db.session import transaction
from powerx_governance.notifications.channels.interface import OutboundMessage, Receipt, TransientChannelError
from powerx_governance.notifications.tables import ConsoleCardRow

_CARD_FIELDS = (
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
    "actions",
    "change",
)


def _card_key(message: OutboundMessage, item: Mapping[str, Any], index: int) -> str:
    """Stable across attempts: a finding's id, or the event's place in the message (its first event
    keeps the key of a message about one event)."""
    finding = item.get("finding")
    if finding:
        return f"{message.idempotency_key}:r{finding['id']}"
    return f"{message.idempotency_key}:e" + (f"{index}" if index else "")


def _card_data(item: Mapping[str, Any]) -> tuple[int | None, dict[str, Any]]:
    finding = item.get("finding") or (item.get("event") or {}).get("finding")
    data: dict[str, Any] = {name: finding[name] for name in _CARD_FIELDS} if finding else {}
    if finding:
        data["advisories"] = [a["id"] for a in finding["advisories"]]
    event = item.get("event")
    if event:
        data["event"] = {k: v for k, v in event.items() if k != "finding"}
    return (finding["id"] if finding else None), data


class ConsoleChannel:
    """Writes console cards in a transaction of its own; card keys make a re-send a no-op."""

    name = "console"

    def __init__(self, factory: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self._factory = factory
        self._clock = clock

    def send(self, message: OutboundMessage) -> Receipt:
        """Store one card per item the message is about (those not stored by an earlier attempt)."""
        return self.send_many([message])[0]

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[Receipt]:
        """`send` of several messages in one transaction: all their cards are stored, or none."""
        keyed = [{_card_key(m, item, i): item for i, item in enumerate(m.items)} for m in messages]
        try:
            with transaction(self._factory) as session:
                present: set[str] = set()
                for part in chunks([key for cards in keyed for key in cards]):
                    present.update(
                        session.execute(
                            select(ConsoleCardRow.idempotency_key).where(
                                ConsoleCardRow.idempotency_key.in_(part)
                            )
                        ).scalars()
                    )
                fresh = [
                    self._card(message, key, item)
                    for message, cards in zip(messages, keyed, strict=True)
                    for key, item in cards.items()
                    if key not in present
                ]
                if fresh:  # one statement for them all: nothing reads a card's id back here
                    session.execute(insert(ConsoleCardRow), fresh)
        except IntegrityError as exc:  # a concurrent attempt stored them first: the next one sees them
            raise TransientChannelError(self.name, "card written concurrently") from exc
        return [Receipt(f"{len(cards)} card(s)") for cards in keyed]

    def _card(self, message: OutboundMessage, key: str, item: Mapping[str, Any]) -> dict[str, Any]:
        title, body = message.render_card(item)
        recommendation_id, data = _card_data(item)
        finding = item.get("finding")
        return {
            "idempotency_key": key,
            "tenant_uuid": message.tenant_uuid,
            "recommendation_id": recommendation_id,
            "kind": message.kind.value if finding is None else "finding",
            "risk_level": finding["risk_level"] if finding else message.risk_level,
            "title": title[:500],
            "body": body,
            "data": data,
            "created_at": self._clock(),
            "dismissed_at": None,
        }

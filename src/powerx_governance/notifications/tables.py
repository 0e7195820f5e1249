"""Notification outbox, deliveries, digest bookkeeping and console cards.

An *event* (a finding opened or escalated, a decision, an SLA breach, an alert) is written in
the transaction of the change that causes it; its dedupe key is unique, so the same finding
is never announced twice unless it escalates. Each event is assigned to the recipients that
want it (an *entry*): immediately, into a delivery of this transaction's batch for that tenant,
or later, into a digest. A *delivery* is one message to one recipient over one channel; its
idempotency key is unique and travels with every attempt (Idempotency-Key header, SMTP
Message-ID, console card keys), so at-least-once sending never doubles a message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class NotificationEventRow(Base):
    """The outbox item: something worth telling someone, written with the change that causes it."""

    __tablename__ = "notification_events"
    __table_args__ = (Index("ix_notification_events_recommendation", "recommendation_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    tenant_uuid: Mapped[str | None] = mapped_column(String(128))
    recommendation_id: Mapped[int | None]
    change: Mapped[str | None] = mapped_column(String(16))  # opened | escalated | reopened (findings)
    risk_level: Mapped[str] = mapped_column(String(16))
    route: Mapped[str | None] = mapped_column(String(256))
    data: Mapped[dict[str, Any]]  # event facts: revision, decision, breach, alert message ...
    triggered_at: Mapped[datetime]  # when the data that caused it arrived (push latency)
    created_at: Mapped[datetime]


class NotificationDeliveryRow(Base):
    """One message to one recipient over one channel, with the key every attempt carries."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        Index("ix_notification_deliveries_status", "status", "next_attempt_at"),
        Index("ix_notification_deliveries_tenant", "tenant_uuid", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(32))
    tenant_uuid: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    max_attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(2000))
    provider_ref: Mapped[str | None] = mapped_column(String(256))  # Message-ID, notify service id
    triggered_at: Mapped[datetime]  # the earliest triggered_at of its events
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class NotificationEntryRow(Base):
    """An event assigned to a recipient; waits here (delivery_id NULL) until its digest is due."""

    __tablename__ = "notification_entries"
    __table_args__ = (
        Index("ix_notification_entries_due", "delivery_id", "due_at"),
        Index("ix_notification_entries_digest", "recipient_id", "tenant_uuid", "delivery_id"),
    )

    event_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notification_events.id", ondelete="CASCADE"), primary_key=True
    )
    recipient_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_uuid: Mapped[str | None] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    delivery_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("notification_deliveries.id", ondelete="CASCADE")
    )


class ConsoleCardRow(Base):
    """A card on the tenant's console, the embedded channel (no network involved)."""

    __tablename__ = "notification_console_cards"
    __table_args__ = (Index("ix_notification_console_cards_tenant", "tenant_uuid", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    tenant_uuid: Mapped[str | None] = mapped_column(String(128))
    recommendation_id: Mapped[int | None]
    kind: Mapped[str] = mapped_column(String(16))
    risk_level: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]]  # plugin, versions, advisories, action links
    created_at: Mapped[datetime]
    dismissed_at: Mapped[datetime | None]

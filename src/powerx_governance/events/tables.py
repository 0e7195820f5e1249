"""The event log (the outbox of downstream events) and the webhooks subscribed to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base

Sequence = BigInteger().with_variant(Integer(), "sqlite")  # SQLite only autoincrements INTEGER keys


class EventRow(Base):
    """One event, in the order it was recorded (`seq` is the replay cursor)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_time", "time"),)

    seq: Mapped[int] = mapped_column(Sequence, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    tenant_uuid: Mapped[str | None] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(512))
    time: Mapped[datetime]
    data: Mapped[dict[str, Any]]


class SubscriptionRow(Base):
    __tablename__ = "event_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))  # HMAC key; shown once, at creation
    types: Mapped[list[Any]]  # event types wanted (empty: all)
    tenants: Mapped[list[Any]]  # tenant_uuids wanted (empty: all)
    batch_size: Mapped[int]  # 1: one structured event per request; more: CloudEvents batch mode
    status: Mapped[str] = mapped_column(String(16))
    cursor: Mapped[int] = mapped_column(Sequence)  # last delivered seq
    failures: Mapped[int]  # failed attempts in a row
    max_attempts: Mapped[int]
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(2000))
    last_delivered_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

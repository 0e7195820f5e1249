"""Decisions: what an admin decided about one recommendation revision, and what became of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_tenant_plugin", "tenant_uuid", "plugin_id"),
        Index("ix_decisions_state_kind", "state", "kind"),
        # a key belongs to the token that sent it: another caller's key is never looked up
        UniqueConstraint("idempotency_scope", "idempotency_key", name="uq_decisions_idempotency"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    idempotency_scope: Mapped[str | None] = mapped_column(String(64))  # `token:<id>` of the caller
    request_digest: Mapped[str | None] = mapped_column(String(64))  # what was asked under the key
    recommendation_id: Mapped[int] = mapped_column(ForeignKey("recommendations.id"), index=True)
    revision: Mapped[int]
    tenant_uuid: Mapped[str] = mapped_column(String(128))
    plugin_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[str] = mapped_column(String(64))
    target_version: Mapped[str | None] = mapped_column(String(64))
    scheduled_for: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(String(2000))
    scope: Mapped[str | None] = mapped_column(String(16))
    until: Mapped[datetime | None]
    approver: Mapped[str | None] = mapped_column(String(256))
    actor: Mapped[str] = mapped_column(String(256))
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(500))
    details: Mapped[dict[str, Any]]

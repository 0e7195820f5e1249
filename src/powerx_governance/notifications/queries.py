"""Reading notifications: dead letters, console cards, delivery counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.notifications.model import DeliveryStatus
from powerx_governance.notifications.tables import ConsoleCardRow, NotificationDeliveryRow
from powerx_governance.times import iso


def dead_letters(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries that exhausted their attempts or were refused for good, newest first."""
    stmt = (
        select(NotificationDeliveryRow)
        .where(NotificationDeliveryRow.status == DeliveryStatus.DEAD.value)
        .order_by(NotificationDeliveryRow.finished_at.desc(), NotificationDeliveryRow.id)
        .limit(limit)
    )
    return [
        {
            "id": d.id,
            "idempotency_key": d.idempotency_key,
            "kind": d.kind,
            "recipient_id": d.recipient_id,
            "channel": d.channel,
            "tenant_uuid": d.tenant_uuid,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "created_at": iso(d.created_at),
            "finished_at": iso(d.finished_at),
        }
        for d in session.execute(stmt).scalars()
    ]


def console_cards(session: Session, *, tenant_uuid: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """A tenant's console cards (None: fleet-wide ones, such as alerts), newest first."""
    where = (
        ConsoleCardRow.tenant_uuid.is_(None)
        if tenant_uuid is None
        else ConsoleCardRow.tenant_uuid == tenant_uuid
    )
    stmt = (
        select(ConsoleCardRow)
        .where(where, ConsoleCardRow.dismissed_at.is_(None))
        .order_by(ConsoleCardRow.created_at.desc(), ConsoleCardRow.id.desc())
        .limit(limit)
    )
    return [
        {
            "id": c.id,
            "tenant_uuid": c.tenant_uuid,
            "recommendation_id": c.recommendation_id,
            "kind": c.kind,
            "risk_level": c.risk_level,
            "title": c.title,
            "body": c.body,
            "data": c.data,
            "created_at": iso(c.created_at),
        }
        for c in session.execute(stmt).scalars()
    ]


def delivery_counts(session: Session) -> dict[str, int]:
    """Deliveries by status (for operators and tests)."""
    rows = session.execute(
        select(NotificationDeliveryRow.status, func.count()).group_by(NotificationDeliveryRow.status)
    ).all()
    return dict(rows)

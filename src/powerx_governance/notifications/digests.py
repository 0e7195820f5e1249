"""Digests: due digest entries become one delivery per (recipient, tenant)."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.rows import rowcount
from powerx_governance.notifications.model import DeliveryStatus, MessageKind
from powerx_governance.notifications.outbox import delivery_row, enqueue_delivery
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.notifications.tables import (
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)

DIGEST_TASK: Final = "notify_digest"


def digests_due(session: Session, now: datetime) -> bool:
    """Whether any digest entry is waiting past its due time (a cheap check for the scheduler)."""
    stmt = select(NotificationEntryRow.event_id).where(
        NotificationEntryRow.delivery_id.is_(None), NotificationEntryRow.due_at <= now
    )
    return session.execute(stmt.limit(1)).first() is not None


def flush_digests(session: Session, runtime: NotificationRuntime, now: datetime) -> list[str]:
    """One delivery per (recipient, tenant) for the due digest entries; returns the new delivery ids."""
    groups = session.execute(
        select(
            NotificationEntryRow.recipient_id,
            NotificationEntryRow.tenant_uuid,
            func.min(NotificationEventRow.triggered_at),
        )
        .join(NotificationEventRow, NotificationEventRow.id == NotificationEntryRow.event_id)
        .where(NotificationEntryRow.delivery_id.is_(None), NotificationEntryRow.due_at <= now)
        .group_by(NotificationEntryRow.recipient_id, NotificationEntryRow.tenant_uuid)
        .order_by(NotificationEntryRow.recipient_id, NotificationEntryRow.tenant_uuid)
    ).all()
    created = []
    for recipient_id, tenant_uuid, triggered_at in groups:
        delivery_id = _digest_delivery(session, runtime, recipient_id, tenant_uuid, triggered_at, now)
        if delivery_id is not None:
            created.append(delivery_id)
    return created


def _digest_delivery(
    session: Session,
    runtime: NotificationRuntime,
    recipient_id: str,
    tenant_uuid: str | None,
    triggered_at: datetime,
    now: datetime,
) -> str | None:
    recipient = runtime.routes.recipients.get(recipient_id)
    channel = recipient.channel.value if recipient else "removed"
    row = delivery_row(
        recipient_id,
        channel,
        tenant_uuid,
        MessageKind.DIGEST,
        triggered_at,
        now,
        runtime.routes.delivery.max_attempts,
    )
    if recipient is None:  # removed from the routes file since: its entries are closed, visibly
        row |= {
            "status": DeliveryStatus.SKIPPED.value,
            "last_error": "recipient no longer configured",
            "finished_at": now,
        }
    bulk_insert(session, NotificationDeliveryRow, [row])
    same_tenant = (
        NotificationEntryRow.tenant_uuid.is_(None)
        if tenant_uuid is None
        else NotificationEntryRow.tenant_uuid == tenant_uuid
    )
    taken = session.execute(
        update(NotificationEntryRow)
        .where(
            NotificationEntryRow.recipient_id == recipient_id,
            same_tenant,
            NotificationEntryRow.delivery_id.is_(None),
            NotificationEntryRow.due_at <= now,
        )
        .values(delivery_id=row["id"])
        .execution_options(synchronize_session=False)
    )
    if rowcount(taken) == 0:  # a concurrent flush took them first
        session.execute(delete(NotificationDeliveryRow).where(NotificationDeliveryRow.id == row["id"]))
        return None
    if recipient is None:
        return None
    enqueue_delivery(session, row["id"], 1, now)
    return str(row["id"])

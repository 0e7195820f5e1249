"""Reading the audit trail: a record in PowerX's field names, filtered listings, the records about a
recommendation, and the trail's newest record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from powerx_governance.audit.chain import event_fields
from powerx_governance.audit.model import StoredEvent
from powerx_governance.audit.tables import AuditEventRow


def record_view(row: StoredEvent) -> dict[str, Any]:
    """A stored record in PowerX's audit field names (API answers and exports)."""
    fields = {k: v for k, v in event_fields(row).items() if k != "schema"}
    return {"seq": row.seq, **fields, "prev_hash": row.prev_hash, "hash": row.hash}


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which records a listing shows; `tenant_uuid` is the caller's resolved tenant scope."""

    tenant_uuid: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    operation: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None


def list_events(
    session: Session, wanted: EventFilter, *, limit: int, cursor: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """One page in seq order after `cursor` (a seq); the next cursor, or None on the last page."""
    stmt = select(AuditEventRow)
    for column, value in (
        (AuditEventRow.tenant_uuid, wanted.tenant_uuid),
        (AuditEventRow.operation, wanted.operation),
        (AuditEventRow.resource_type, wanted.resource_type),
        (AuditEventRow.resource_id, wanted.resource_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if wanted.start is not None:
        stmt = stmt.where(AuditEventRow.occurred_at >= wanted.start)
    if wanted.end is not None:
        stmt = stmt.where(AuditEventRow.occurred_at < wanted.end)
    if cursor is not None:
        stmt = stmt.where(AuditEventRow.seq > cursor)
    rows = list(session.execute(stmt.order_by(AuditEventRow.seq).limit(limit + 1)).scalars())
    page = rows[:limit]
    return [record_view(row) for row in page], (page[-1].seq if len(rows) > limit else None)


def records_about_recommendation(
    session: Session,
    *,
    tenant_uuid: str,
    recommendation_id: int,
    decision_ids: Sequence[int],
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest `limit` records about a recommendation and the decisions taken on it, oldest first."""
    about = [
        and_(
            AuditEventRow.resource_type == "recommendation",
            AuditEventRow.resource_id == str(recommendation_id),
        )
    ]
    if decision_ids:
        about.append(
            and_(
                AuditEventRow.resource_type == "decision",
                AuditEventRow.resource_id.in_([str(d) for d in decision_ids]),
            )
        )
    stmt = (
        select(AuditEventRow)
        .where(AuditEventRow.tenant_uuid == tenant_uuid, or_(*about))
        .order_by(AuditEventRow.seq.desc())
        .limit(limit)
    )
    return [record_view(row) for row in reversed(list(session.execute(stmt).scalars()))]


def has_record(session: Session, *, correlation_id: str, operation: str) -> bool:
    """Whether the trail holds a record of `operation` under `correlation_id`."""
    stmt = (
        select(AuditEventRow.seq)
        .where(AuditEventRow.correlation_id == correlation_id, AuditEventRow.operation == operation)
        .limit(1)
    )
    return session.execute(stmt).first() is not None


def newest_seq(session: Session) -> int | None:
    """The sequence number of the newest record (None: the trail is empty)."""
    return session.scalar(select(func.max(AuditEventRow.seq)))

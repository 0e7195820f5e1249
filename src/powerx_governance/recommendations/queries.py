"""Reading recommendations: filters, priority order, cursor pagination, tenant scope."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from powerx_governance.db.rows import MAX_ID
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow, VerdictRow
from powerx_governance.times import iso


class CursorError(ValueError):
    """A pagination cursor that was not produced by this service."""


@dataclass(frozen=True, slots=True)
class RecommendationFilter:
    tenant_uuid: str | None = None
    plugin_id: str | None = None
    risk_level: str | None = None
    action: str | None = None
    state: str | None = None


def encode_cursor(priority: int, rec_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([priority, rec_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        priority, rec_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        priority, rec_id = int(priority), int(rec_id)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CursorError("cursor is not valid; use the next_cursor of a previous page") from exc
    if not (0 <= priority <= 100 and 0 < rec_id <= MAX_ID):
        raise CursorError("cursor is out of range; use the next_cursor of a previous page")
    return priority, rec_id


def _filtered(stmt: Select[Any], f: RecommendationFilter) -> Select[Any]:
    conditions = [
        column == value
        for column, value in (
            (RecommendationRow.tenant_uuid, f.tenant_uuid),
            (RecommendationRow.plugin_id, f.plugin_id),
            (RecommendationRow.risk_level, f.risk_level),
            (RecommendationRow.action, f.action),
            (RecommendationRow.state, f.state),
        )
        if value is not None
    ]
    return stmt.where(and_(*conditions)) if conditions else stmt


def recommendation_dict(row: RecommendationRow, verdict: dict[str, Any]) -> dict[str, Any]:
    """A recommendation as the API shows it: the finding (DESIGN §4 fields) plus its state."""
    return {
        "id": row.id,
        "tenant_uuid": row.tenant_uuid,
        "plugin_id": row.plugin_id,
        **verdict,
        "sla_deadline": iso(
            row.sla_deadline
        ),  # counted from first sight (DESIGN §5.8), not the shared verdict's
        **row.tenant_facts,
        "revision": row.revision,
        "state": row.state,
        "first_seen_at": iso(row.first_seen_at),
        "updated_at": iso(row.updated_at),
        "resolved_at": iso(row.resolved_at),
        "scan_id": row.scan_id,
        "policy_version": row.policy_version,
    }


def list_recommendations(
    session: Session, f: RecommendationFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page sorted by priority (highest first, then id); the cursor of the next page or None."""
    stmt = _filtered(select(RecommendationRow, VerdictRow.document).join(VerdictRow), f)
    if cursor is not None:
        priority, rec_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                RecommendationRow.priority < priority,
                and_(RecommendationRow.priority == priority, RecommendationRow.id > rec_id),
            )
        )
    stmt = stmt.order_by(RecommendationRow.priority.desc(), RecommendationRow.id).limit(limit + 1)
    rows = session.execute(stmt).all()
    items = [recommendation_dict(row, doc) for row, doc in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return items, encode_cursor(last.priority, last.id) if last else None


def get_recommendation(session: Session, rec_id: int) -> dict[str, Any] | None:
    """One recommendation with its revision history; None when there is none with this id."""
    found = session.execute(
        select(RecommendationRow, VerdictRow.document).join(VerdictRow).where(RecommendationRow.id == rec_id)
    ).first()
    if found is None:
        return None
    row, doc = found
    revisions = session.execute(
        select(RecommendationRevisionRow)
        .where(RecommendationRevisionRow.recommendation_id == rec_id)
        .order_by(RecommendationRevisionRow.revision)
    ).scalars()
    history = [
        {
            "revision": r.revision,
            "change": r.change,
            "state": r.state,
            "target_version": r.target_version,
            "risk_level": r.risk_level,
            "priority": r.priority,
            "action": r.action,
            "scan_id": r.scan_id,
            "created_at": iso(r.created_at),
        }
        for r in revisions
    ]
    return {**recommendation_dict(row, doc), "history": history}

"""Retention: pruning the oldest records while the rest stays verifiable.

See `audit.service` for the `audit-pruned` checkpoint the oldest remaining record links to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.chain import CHECKPOINT_MARKER, lock_chain, record, write_marker
from powerx_governance.audit.model import AuditEvent, ChainBrokenError, RetentionError, rfc3339
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.audit.verify import broken
from powerx_governance.audit.walk import Walk, start_hash
from powerx_governance.db.rows import rowcount

MIN_RETENTION_DAYS: Final = 365
PRUNED_OPERATION: Final = "audit.pruned"


def check_retention(days: int) -> None:
    """Refuse a retention period under a year."""
    if days < MIN_RETENTION_DAYS:
        raise RetentionError(
            f"audit retention must be at least {MIN_RETENTION_DAYS} days; {days} days was refused"
        )


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What `prune` removed: the count, the last removed seq, and the checkpoint event it appended."""

    pruned: int
    through_seq: int | None
    checkpoint_event: AuditEventRow | None


def prune(
    session: Session,
    *,
    before: datetime,
    retention_days: int,
    now: datetime,
    actor: str = "system",
) -> PruneResult:
    """Delete the oldest records (a prefix of the chain) that both occurred and were recorded
    before `before`, in the caller's transaction, keeping the rest verifiable.

    Refused: a retention under 365 days, a `before` later than now minus the retention, and a
    prefix that does not verify. The hash of the last removed record becomes the checkpoint
    the oldest remaining record links to (locks row `audit-pruned`), and an `audit.pruned`
    event records the pruning with the same checkpoint.
    """
    check_retention(retention_days)
    limit = now - timedelta(days=retention_days)
    if before > limit:
        raise RetentionError(
            f"records before {rfc3339(before)} include some younger than the {retention_days}-day"
            f" retention; the latest allowed cut-off is {rfc3339(limit)}"
        )
    lock_chain(session)
    last = _last_prunable(session, before)
    if last is None:
        return PruneResult(0, None, None)
    walk = Walk(start_hash(session), None)
    found = walk.run(session, 50_000, last[0])
    if found is not None:
        raise ChainBrokenError(broken(session, walk, *found))
    pruned = rowcount(session.execute(delete(AuditEventRow).where(AuditEventRow.seq <= last[0])))
    write_marker(session, CHECKPOINT_MARKER, f"{last[0]}:{last[1]}")
    event = AuditEvent(
        source="governance",
        operation=PRUNED_OPERATION,
        resource_type="audit_trail",
        resource_id=None,
        actor=actor,
        meta={
            "checkpoint": {"seq": last[0], "hash": last[1]},
            "pruned": pruned,
            "before": rfc3339(before),
            "retention_days": retention_days,
        },
    )
    return PruneResult(int(pruned), last[0], record(session, event, now))


def _last_prunable(session: Session, before: datetime) -> tuple[int, str] | None:
    """(seq, hash) of the last record of the prefix older than `before`; None when there is none."""
    keep = session.execute(
        select(func.min(AuditEventRow.seq)).where(
            (AuditEventRow.occurred_at >= before) | (AuditEventRow.recorded_at >= before)
        )
    ).scalar_one_or_none()
    stmt = select(AuditEventRow.seq, AuditEventRow.hash)
    if keep is not None:
        stmt = stmt.where(AuditEventRow.seq < keep)
    found = session.execute(stmt.order_by(AuditEventRow.seq.desc()).limit(1)).one_or_none()
    return (int(found[0]), str(found[1])) if found else None

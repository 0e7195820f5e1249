"""Delivery bookkeeping: which events a subscriber gets next, and what an attempt's outcome changes.

One delivery of a subscription at a time, across every worker: `claim` takes a lease by setting
`next_attempt_at` to now + LEASE with a conditional update that only succeeds when the
subscription is active and not backing off or leased already. The batch is the next matching
events after the cursor, in seq order, up to the newest committed event (the horizon). A
success moves the cursor with a conditional update on the cursor it started from (a replay in
the meantime wins) and releases the lease; a failure counts, and either schedules the next
attempt (capped exponential backoff with jitter, or the receiver's Retry-After when longer) or,
after `max_attempts` failures in a row, suspends the subscription.

Every transaction here first takes the event log lock (see `outbox`), so a transaction recording
events and one changing a subscription's delivery state never interleave: an event recorded
while a delivery is in flight is read by the round after it, never stranded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from powerx_governance.db.rows import rowcount
from powerx_governance.events.cloudevents import StoredEvent, envelope
from powerx_governance.events.model import SubscriptionStatus
from powerx_governance.events.outbox import lock_log, newest_seq, wake
from powerx_governance.events.service import audit
from powerx_governance.events.tables import EventRow, SubscriptionRow
from powerx_governance.jobs import queue

LEASE: Final = timedelta(minutes=5)  # far above one request's timeouts: a lease outliving its worker expires
MAX_RETRY_AFTER: Final = 3600.0  # a receiver's Retry-After is honoured up to an hour
BACKOFF_BASE: Final = 2.0
BACKOFF_CAP: Final = 300.0


@dataclass(frozen=True, slots=True)
class Batch:
    """The events of one delivery attempt and where the cursor goes when it succeeds."""

    subscription_id: str
    url: str
    secret: str
    cursor: int  # the cursor the batch was read after
    through: int  # the cursor after success (the last event, or the horizon when fewer matched)
    envelopes: list[dict[str, Any]]
    batch_mode: bool


def pending(session: Session, row: SubscriptionRow, horizon: int, limit: int) -> list[StoredEvent]:
    """The subscription's next events after its cursor, up to `horizon`, in seq order."""
    stmt = select(EventRow).where(EventRow.seq > row.cursor, EventRow.seq <= horizon)
    if row.types:
        stmt = stmt.where(EventRow.type.in_(row.types))
    if row.tenants:
        stmt = stmt.where(EventRow.tenant_uuid.in_(row.tenants))
    return list(session.execute(stmt.order_by(EventRow.seq).limit(limit)).scalars())


def _acquire(session: Session, subscription_id: str, now: datetime) -> SubscriptionRow | None:
    free = (SubscriptionRow.next_attempt_at.is_(None)) | (SubscriptionRow.next_attempt_at <= now)
    taken = session.execute(
        update(SubscriptionRow)
        .where(
            SubscriptionRow.id == subscription_id,
            SubscriptionRow.status == SubscriptionStatus.ACTIVE.value,
            free,
        )
        .values(next_attempt_at=now + LEASE)
    )
    if rowcount(taken) != 1:
        return None
    stmt = select(SubscriptionRow).where(SubscriptionRow.id == subscription_id)
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one()


def claim(session: Session, subscription_id: str, now: datetime, source: str) -> Batch | None:
    """Lease the subscription and read its next batch; None when it is not deliverable or caught up.

    Caught up, the cursor moves to the horizon (events past it matched no filter) and the lease
    is released in the same transaction.
    """
    lock_log(session)
    row = _acquire(session, subscription_id, now)
    if row is None:
        return None
    horizon = newest_seq(session)
    events = pending(session, row, horizon, row.batch_size)
    if not events:
        row.cursor, row.next_attempt_at = max(row.cursor, horizon), None
        return None
    full = len(events) == row.batch_size
    return Batch(
        subscription_id=row.id,
        url=row.url,
        secret=row.secret,
        cursor=row.cursor,
        through=events[-1].seq if full else horizon,
        envelopes=[envelope(e, source) for e in events],
        batch_mode=row.batch_size > 1,
    )


def delivered(session: Session, batch: Batch, now: datetime) -> bool:
    """Record a successful attempt; False when a replay moved the cursor meanwhile, or the row is gone."""
    lock_log(session)
    moved = session.execute(
        update(SubscriptionRow)
        .where(SubscriptionRow.id == batch.subscription_id, SubscriptionRow.cursor == batch.cursor)
        .values(
            cursor=batch.through,
            failures=0,
            last_error=None,
            last_delivered_at=now,
            next_attempt_at=None,
            updated_at=now,
        )
    )
    if rowcount(moved) == 1:
        return True
    session.execute(
        update(SubscriptionRow)
        .where(SubscriptionRow.id == batch.subscription_id)
        .values(next_attempt_at=None)
    )
    return False


def retry_delay(failures: int, retry_after: float | None) -> timedelta:
    """Capped exponential backoff with jitter, or the receiver's Retry-After (capped) when longer."""
    delay = queue.backoff(failures, base=BACKOFF_BASE, cap=BACKOFF_CAP)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=min(retry_after, MAX_RETRY_AFTER)))
    return delay


def failed(
    session: Session,
    batch: Batch,
    error: str,
    now: datetime,
    *,
    permanent: bool = False,
    retry_after: float | None = None,
) -> SubscriptionStatus | None:
    """Record a failed attempt: schedule the next one, or suspend. The status afterwards (None: deleted)."""
    row = session.get(SubscriptionRow, batch.subscription_id, populate_existing=True)
    if row is None:
        return None
    failures, status = row.failures + 1, SubscriptionStatus(row.status)
    if status is SubscriptionStatus.ACTIVE and (permanent or failures >= row.max_attempts):
        status = SubscriptionStatus.SUSPENDED
        audit(session, row, "suspended", "system", now, {"failures": failures, "last_error": error[:500]})
    lock_log(session)  # after the audit record: the audit chain lock is always taken first
    values: dict[str, Any] = {"failures": failures, "last_error": error[:2000], "updated_at": now}
    values |= {"status": status.value, "next_attempt_at": None}
    if status is SubscriptionStatus.ACTIVE:
        values["next_attempt_at"] = now + retry_delay(failures, retry_after)
        wake(
            session,
            row.id,
            now,
            key=f"events:{row.id}:retry:{uuid.uuid4().hex}",
            at=values["next_attempt_at"],
        )
    session.execute(update(SubscriptionRow).where(SubscriptionRow.id == row.id).values(**values))
    return status

"""Recording events in the transaction of the change they announce (the outbox), and waking subscribers.

Nothing is recorded while no subscription exists (in any status): a first fleet-wide scan would
otherwise write a million events nobody will read. A subscription created later starts at the
newest event; older history is not kept for it.

Order. `seq` is the replay cursor, so a reader must never see seq N+1 committed while N is
still to come. On PostgreSQL sequence values are taken at insert and transactions commit in
any order, so recording takes a transaction-scoped advisory lock first: from the insert to the
commit no other transaction records events, and seq order is commit order. SQLite's single
writer gives the same. Call `record` late in a transaction (after the audit record, whose
chain lock is always taken first, so the two locks never wait on each other).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.chunks import chunks
from powerx_governance.db.locks import advisory_xact_lock
from powerx_governance.db.per_transaction import PerTransaction
from powerx_governance.db.rows import rowcount
from powerx_governance.events.model import EventType, SubscriptionStatus
from powerx_governance.events.tables import EventRow, SubscriptionRow
from powerx_governance.jobs import queue
from powerx_governance.recommendations.model import RecommendationChange
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.times import iso

DELIVER_TASK: Final = "events_deliver"
ALERT_CHANGES: Final = frozenset(
    {
        RecommendationChange.OPENED,
        RecommendationChange.REOPENED,
        RecommendationChange.ESCALATED,
        RecommendationChange.RESOLVED,
    }
)
JOB_ATTEMPTS: Final = 3  # queue-level retries cover crashes and database errors; HTTP failures are ours
_LOCK_CLASS: Final = 0x45564E54  # "EVNT"; the second key is the schema: one event log per schema
_WOKEN: Final[PerTransaction[set[str]]] = PerTransaction(set)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event before it is written."""

    type: EventType
    tenant_uuid: str | None
    subject: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def subject(tenant_uuid: str, plugin_id: str) -> str:
    return f"{tenant_uuid}/{plugin_id}"


def subscribed(session: Session) -> bool:
    """At least one subscription exists, whatever its status."""
    return session.execute(select(SubscriptionRow.id).limit(1)).first() is not None


def newest_seq(session: Session) -> int:
    """The seq of the newest committed event (0 when there is none)."""
    return int(session.execute(select(func.coalesce(func.max(EventRow.seq), 0))).scalar_one())


def lock_log(session: Session) -> None:
    """Serialise with every transaction that records events or changes a subscription's delivery state.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: its single writer does it already.
    """
    if session.get_bind().dialect.name == "postgresql":
        advisory_xact_lock(session, _LOCK_CLASS)


def record(session: Session, events: Sequence[NewEvent], now: datetime) -> int:
    """Write `events` in the caller's transaction and queue delivery to matching subscribers."""
    if not events or not subscribed(session):
        return 0
    lock_log(session)
    rows = [
        {
            "id": e.id,
            "type": e.type.value,
            "tenant_uuid": e.tenant_uuid,
            "subject": e.subject,
            "time": now,
            "data": e.data,
        }
        for e in events
    ]
    bulk_insert(session, EventRow, rows)
    wake_matching(session, {e.type.value for e in events}, {e.tenant_uuid for e in events}, now)
    return len(rows)


def matches(row: SubscriptionRow, types: set[str], tenants: set[str | None]) -> bool:
    """Some of these events pass the subscription's type and tenant filters."""
    type_ok = not row.types or bool(types & set(row.types))
    return type_ok and (not row.tenants or bool(tenants & set(row.tenants)))


def wake_matching(session: Session, types: set[str], tenants: set[str | None], now: datetime) -> None:
    """Queue a delivery for each active subscription the new events concern (once per transaction).

    A subscription backing off (or mid-delivery: `next_attempt_at` is its lease) is left alone:
    its retry job, or the delivery loop that holds the lease, reads these events too.
    """
    woken = _woken(session)
    stmt = select(SubscriptionRow).where(
        SubscriptionRow.status == SubscriptionStatus.ACTIVE.value,
        or_(SubscriptionRow.next_attempt_at.is_(None), SubscriptionRow.next_attempt_at <= now),
    )
    newest = newest_seq(session)
    for row in session.execute(stmt).scalars():
        if row.id not in woken and matches(row, types, tenants):
            woken.add(row.id)
            wake(session, row.id, now, key=f"events:{row.id}:seq:{newest}")


def wake(
    session: Session, subscription_id: str, now: datetime, *, key: str, at: datetime | None = None
) -> None:
    """Queue one run of the delivery task for a subscription."""
    queue.enqueue(
        session,
        DELIVER_TASK,
        {"subscription_id": subscription_id},
        key=key,
        now=now,
        run_after=at,
        max_attempts=JOB_ATTEMPTS,
    )


def _woken(session: Session) -> set[str]:
    """Subscriptions already given a delivery job in the current transaction."""
    return _WOKEN.of(session)


# -- what each event says ---------------------------------------------------------------------------


def _recommendation_facts(session: Session, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    columns = (
        RecommendationRow.id,
        RecommendationRow.current_version,
        RecommendationRow.latest_version,
        RecommendationRow.priority,
        RecommendationRow.sla_deadline,
    )
    found: dict[int, dict[str, Any]] = {}
    for part in chunks(sorted(set(ids))):
        for rec_id, current, latest, priority, deadline in session.execute(
            select(*columns).where(RecommendationRow.id.in_(part))
        ):
            found[rec_id] = {
                "current_version": current,
                "latest_version": latest,
                "priority": priority,
                "sla_deadline": iso(deadline),
            }
    return found


def _alert(change: Change, facts: dict[str, Any]) -> NewEvent:
    data = {
        "tenant_uuid": change.tenant_uuid,
        "plugin_id": change.plugin_id,
        "recommendation_id": change.recommendation_id,
        "revision": change.revision,
        "change": change.change.value,
        "previous_state": change.previous_state,
        "current_version": facts.get("current_version"),
        "target_version": change.target_version,
        "latest_version": facts.get("latest_version"),
        "risk_level": change.risk_level,
        "priority": facts.get("priority"),
        "action": change.action,
        "critical_patch": change.critical_patch,
        "sla_deadline": facts.get("sla_deadline"),
    }
    return NewEvent(EventType.ALERT, change.tenant_uuid, subject(change.tenant_uuid, change.plugin_id), data)


def on_recommendation_changes(
    session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime
) -> None:
    """Change hook: one `plugin.version.alert` per recommendation opened, reopened, escalated or resolved."""
    alerts = [c for c in changes.changes if c.change in ALERT_CHANGES]
    if not alerts or not subscribed(session):
        return
    facts = _recommendation_facts(session, [c.recommendation_id for c in alerts])
    record(session, [_alert(c, facts.get(c.recommendation_id, {})) for c in alerts], now)


def prune(session: Session, older_than: datetime) -> int:
    """Drop events recorded before `older_than` (the retention); how many went.

    Cursors are positions, not rows: a subscriber behind the retention resumes at the oldest
    event still kept.
    """
    gone = session.execute(delete(EventRow).where(EventRow.time < older_than))
    return rowcount(gone)

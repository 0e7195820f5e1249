"""The delivery worker's steps: prepare an attempt, record its outcome, schedule the retry."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from powerx_governance.db.chunks import chunks
from powerx_governance.db.rows import rowcount
from powerx_governance.jobs import queue
from powerx_governance.notifications.channels.interface import OutboundMessage
from powerx_governance.notifications.compose import Sources, compose, read_sources
from powerx_governance.notifications.model import DeliveryStatus
from powerx_governance.notifications.outbox import enqueue_delivery
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.notifications.tables import NotificationDeliveryRow

log = logging.getLogger("powerx.notifications")


@dataclass(frozen=True, slots=True)
class PreparedDelivery:
    """A delivery ready to send: its message and what recording the outcome needs."""

    delivery_id: str
    attempt: int
    max_attempts: int
    triggered_at: datetime
    message: OutboundMessage


def _finish(session: Session, delivery_id: str, attempt: int, values: Mapping[str, Any]) -> bool:
    """Conditionally record an attempt's outcome: False when another worker recorded it first."""
    done = session.execute(
        update(NotificationDeliveryRow)
        .where(
            NotificationDeliveryRow.id == delivery_id,
            NotificationDeliveryRow.status == DeliveryStatus.PENDING.value,
            NotificationDeliveryRow.attempts == attempt - 1,
        )
        .values(attempts=attempt, **values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(done) == 1


def prepare_deliveries(
    session: Session, runtime: NotificationRuntime, delivery_ids: Sequence[str], attempt: int, now: datetime
) -> list[PreparedDelivery]:
    """The messages of attempt `attempt` of these deliveries, in their order; those with nothing to
    send (done, stale, or skipped) are left out."""
    rows = session.execute(
        select(NotificationDeliveryRow).where(NotificationDeliveryRow.id.in_(delivery_ids))
    ).scalars()
    by_id = {row.id: row for row in rows}
    due = [
        row
        for row in (by_id[i] for i in delivery_ids if i in by_id)
        if row.status == DeliveryStatus.PENDING.value and row.attempts == attempt - 1
    ]  # the others were recorded already: at-least-once job delivery must not send twice
    sources = read_sources(session, due)
    found = (_prepared(session, runtime, row, attempt, now, sources) for row in due)
    return [p for p in found if p is not None]


def _prepared(
    session: Session,
    runtime: NotificationRuntime,
    delivery: NotificationDeliveryRow,
    attempt: int,
    now: datetime,
    sources: Sources,
) -> PreparedDelivery | None:
    recipient = runtime.routes.recipients.get(delivery.recipient_id)
    message = compose(runtime, delivery, recipient, now, sources) if recipient else None
    if message is None:
        reason = "nothing left to say" if recipient else "recipient no longer configured"
        _finish(
            session,
            delivery.id,
            attempt,
            {"status": DeliveryStatus.SKIPPED.value, "last_error": reason, "finished_at": now},
        )
        return None
    return PreparedDelivery(delivery.id, attempt, delivery.max_attempts, delivery.triggered_at, message)


def mark_delivered(
    session: Session, receipts: Sequence[tuple[PreparedDelivery, str | None]], now: datetime
) -> set[str]:
    """Record successful attempts, each (delivery, the receiver's reference); the ids recorded now
    (not those recorded already). One conditional UPDATE for the attempts that share an attempt
    number and a reference (a batch of console deliveries: one statement), each as `_finish`."""
    alike: dict[tuple[int, str | None], list[str]] = {}
    for prepared, reference in receipts:
        ref = (reference or "")[:256] or None
        alike.setdefault((prepared.attempt, ref), []).append(prepared.delivery_id)
    recorded: set[str] = set()
    for (attempt, ref), ids in alike.items():
        values = {
            "status": DeliveryStatus.DELIVERED.value,
            "provider_ref": ref,
            "last_error": None,
            "next_attempt_at": None,
            "finished_at": now,
        }
        for part in chunks(ids):
            recorded.update(
                session.execute(
                    update(NotificationDeliveryRow)
                    .where(
                        NotificationDeliveryRow.id.in_(part),
                        NotificationDeliveryRow.status == DeliveryStatus.PENDING.value,
                        NotificationDeliveryRow.attempts == attempt - 1,
                    )
                    .values(attempts=attempt, **values)
                    .returning(NotificationDeliveryRow.id)
                    .execution_options(synchronize_session=False)
                ).scalars()
            )
    return recorded


def retry_delay(attempt: int, retry_after: float | None, runtime: NotificationRuntime) -> float:
    """Seconds to the next attempt: the queue's jittered backoff, or the receiver's longer Retry-After."""
    policy = runtime.routes.delivery
    backoff = queue.backoff(attempt, base=policy.backoff_base, cap=policy.backoff_cap).total_seconds()
    if retry_after is None:
        return backoff
    return max(backoff, min(retry_after, policy.max_retry_after))


def _next_attempt(
    runtime: NotificationRuntime,
    prepared: PreparedDelivery,
    now: datetime,
    *,
    permanent: bool,
    retry_after: float | None,
) -> datetime | None:
    """When the next attempt runs; None when there is none (the delivery is dead)."""
    if permanent or prepared.attempt >= prepared.max_attempts:
        return None
    return now + timedelta(seconds=retry_delay(prepared.attempt, retry_after, runtime))


def mark_failed(
    session: Session,
    runtime: NotificationRuntime,
    prepared: PreparedDelivery,
    error: str,
    now: datetime,
    *,
    permanent: bool,
    retry_after: float | None = None,
) -> DeliveryStatus | None:
    """Record a failed attempt: the next attempt is queued, or the delivery is dead. None when stale."""
    run_after = _next_attempt(runtime, prepared, now, permanent=permanent, retry_after=retry_after)
    values: dict[str, Any] = {"next_attempt_at": run_after, "last_error": error[:2000]}
    if run_after is None:
        values |= {"status": DeliveryStatus.DEAD.value, "finished_at": now}
    if not _finish(session, prepared.delivery_id, prepared.attempt, values):
        return None
    if run_after is None:
        log.error(
            "notification delivery dead", extra={"delivery_id": prepared.delivery_id, "error": error[:500]}
        )
        return DeliveryStatus.DEAD
    enqueue_delivery(session, prepared.delivery_id, prepared.attempt + 1, now, run_after)
    return DeliveryStatus.PENDING

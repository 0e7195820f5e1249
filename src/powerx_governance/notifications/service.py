"""Notifications in the caller's transaction: outbox events, recipients, batches, digests, composition.

Everything here writes in the session it is given and never commits (the job or request owns
the transaction), so a notification exists exactly when the change that causes it does.

- `on_recommendation_changes` (the scan's change hook) announces opened, escalated and
  reopened findings. Dedupe keys make a re-scan without escalation announce nothing:
  `finding:{id}:opened`, `finding:{id}:escalated:{risk}:{action}`,
  `finding:{id}:reopened:{risk}:{action}:{target}` (what it says, never a revision number).
- `notify_reopened` announces a finding reopened by a decision's end (expired ignore,
  superseded decision), once per decision: `finding:{id}:reopened:decision:{decision_id}`.
- `notify_decision`, `notify_sla_breach`, `notify_ignore_broken`, `notify_alert` announce the
  other events; each is deduped on its own key (an SLA breach on its recommendation, kind and
  deadline, or its decision) and returns whether it was new.
- Each recipient of the event's route gets it at once or in its next digest (its priority
  filter). Findings sent at once are batched per transaction, recipient and tenant: a scan
  that opens ten critical findings for a tenant sends that tenant's admins one message.
- `flush_digests` turns due digest entries into one delivery per (recipient, tenant).
- `prepare_delivery`, `mark_delivered`, `mark_failed` are the delivery worker's steps.

The runtime (routes, templates, settings) travels in `session.info` of the service's sessions
(`jobs.install` puts it there); on a session without it these functions do nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from powerx_governance.catalog.tables import PluginRow
from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.chunks import chunks
from powerx_governance.domain import Severity
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.jobs import queue
from powerx_governance.notifications.channels.interface import OutboundMessage
from powerx_governance.notifications.config import DigestPeriod, NotificationSettings, Recipient, RoutesConfig
from powerx_governance.notifications.tables import (
    ConsoleCardRow,
    DeliveryStatus,
    EntryMode,
    EventKind,
    MessageKind,
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)
from powerx_governance.notifications.templates import TemplateSet, finding_context, message_context
from powerx_governance.recommendations.queries import recommendation_dict
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import (
    RecommendationChange,
    RecommendationRow,
    RecommendationState,
    VerdictRow,
)
from powerx_governance.times import iso

log = logging.getLogger("powerx.notifications")

DELIVER_TASK: Final = "notify_deliver"
DIGEST_TASK: Final = "notify_digest"
RUNTIME_KEY: Final = "powerx.notifications.runtime"
_BATCH_KEY: Final = "powerx.notifications.batch"
_JOB_ATTEMPTS: Final = 3  # queue-level retries cover crashes and database errors, not channel errors
_ANNOUNCED: Final = frozenset(
    {RecommendationChange.OPENED, RecommendationChange.ESCALATED, RecommendationChange.REOPENED}
)
_SILENCED: Final = frozenset({RecommendationState.RESOLVED.value, RecommendationState.IGNORED.value})
_ACTIVE: Final = (RecommendationState.OPEN.value, RecommendationState.DECIDED.value)


@dataclass(frozen=True, slots=True)
class NotificationRuntime:
    """What notification code needs besides a session: settings, routes and compiled templates."""

    settings: NotificationSettings
    routes: RoutesConfig
    templates: TemplateSet


def runtime_of(session: Session) -> NotificationRuntime | None:
    """The runtime attached to this session's factory, if notifications are installed."""
    found = session.info.get(RUNTIME_KEY)
    return found if isinstance(found, NotificationRuntime) else None


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to announce, before it is written."""

    dedupe_key: str
    kind: EventKind
    risk: Severity
    triggered_at: datetime
    tenant_uuid: str | None = None
    recommendation_id: int | None = None
    change: str | None = None
    route: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Assignment:
    recipient: Recipient
    mode: EntryMode
    due_at: datetime


def next_digest(period: DigestPeriod, now: datetime, routes: RoutesConfig) -> datetime:
    """When a digest entry made now goes out: the next full hour, or the next `daily_at` (UTC)."""
    now = now.astimezone(UTC)
    if period is DigestPeriod.HOURLY:
        return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    today = now.replace(hour=routes.daily_at.hour, minute=routes.daily_at.minute, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


def _assign(
    routes: RoutesConfig, event: NewEvent, tenant_key: str | None, now: datetime
) -> list[_Assignment]:
    found: dict[str, _Assignment] = {}
    for recipient in routes.recipients_for(event.route):
        if recipient.id in found or not recipient.covers(event.tenant_uuid, tenant_key):
            continue
        mode = recipient.mode_for(event.kind, event.risk)
        if mode is EntryMode.IMMEDIATE:
            found[recipient.id] = _Assignment(recipient, mode, now)
        elif mode is EntryMode.DIGEST:
            found[recipient.id] = _Assignment(recipient, mode, next_digest(recipient.digest, now, routes))
    return list(found.values())


def _unseen(session: Session, events: Sequence[NewEvent]) -> list[NewEvent]:
    """Events whose dedupe key is neither stored nor repeated earlier in the list."""
    by_key = {e.dedupe_key: e for e in reversed(events)}  # reversed: the first occurrence wins
    stored: set[str] = set()
    for part in chunks(list(by_key), 500):
        stored.update(
            session.execute(
                select(NotificationEventRow.dedupe_key).where(NotificationEventRow.dedupe_key.in_(part))
            ).scalars()
        )
    return [e for key, e in reversed(by_key.items()) if key not in stored]


def _tenant_keys(session: Session, tenant_uuids: Iterable[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for part in chunks(sorted(set(tenant_uuids))):
        rows = session.execute(
            select(TenantRow.tenant_uuid, TenantRow.tenant_key).where(TenantRow.tenant_uuid.in_(part))
        ).all()
        found.update(dict(rows))
    return found


def _event_row(event: NewEvent, event_id: str, now: datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "dedupe_key": event.dedupe_key,
        "kind": event.kind.value,
        "tenant_uuid": event.tenant_uuid,
        "recommendation_id": event.recommendation_id,
        "change": event.change,
        "risk_level": event.risk.value,
        "route": event.route,
        "data": event.data,
        "triggered_at": event.triggered_at,
        "created_at": now,
    }


def _message_kind(kind: EventKind) -> MessageKind:
    return MessageKind(kind.value)


@dataclass
class _Writes:
    """Deliveries and entries of one `record_events` call, written after their events."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)


def _batch(session: Session) -> dict[tuple[str, str | None, str], str]:
    """Immediate deliveries created in the current transaction, by (recipient, tenant, kind)."""
    session.connection()  # begin the transaction if the caller has not yet
    current = session.get_transaction()
    held = session.info.get(_BATCH_KEY)
    if held is None or held[0] is not current:
        held = session.info[_BATCH_KEY] = (current, {})
    batch: dict[tuple[str, str | None, str], str] = held[1]
    return batch


def _delivery_row(
    recipient_id: str,
    channel: str,
    tenant_uuid: str | None,
    kind: MessageKind,
    triggered_at: datetime,
    now: datetime,
    max_attempts: int,
) -> dict[str, Any]:
    delivery_id = str(uuid.uuid4())
    return {
        "id": delivery_id,
        "idempotency_key": f"pxg-{kind.value}-{delivery_id}",
        "kind": kind.value,
        "recipient_id": recipient_id,
        "channel": channel,
        "tenant_uuid": tenant_uuid,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "next_attempt_at": now,
        "last_error": None,
        "provider_ref": None,
        "triggered_at": triggered_at,
        "created_at": now,
        "finished_at": None,
    }


def _immediate_delivery(
    session: Session,
    writes: _Writes,
    event: NewEvent,
    recipient: Recipient,
    runtime: NotificationRuntime,
    now: datetime,
) -> str:
    # Findings of one transaction share a message per (recipient, tenant); other events each get their own.
    batch: dict[tuple[str, str | None, str], str] = _batch(session) if event.kind is EventKind.FINDING else {}
    kind = _message_kind(event.kind)
    slot = (recipient.id, event.tenant_uuid, kind.value)
    found = batch.get(slot)
    if found is None:
        row = _delivery_row(
            recipient.id,
            recipient.channel.value,
            event.tenant_uuid,
            kind,
            event.triggered_at,
            now,
            runtime.routes.delivery.max_attempts,
        )
        writes.deliveries.append(row)
        found = batch[slot] = row["id"]
    return found


def enqueue_delivery(
    session: Session, delivery_id: str, attempt: int, now: datetime, run_after: datetime | None = None
) -> None:
    """Queue one attempt of a delivery (each attempt is its own job, so Retry-After can be honoured)."""
    queue.enqueue(
        session,
        DELIVER_TASK,
        {"delivery_id": delivery_id, "attempt": attempt},
        key=f"notify:{delivery_id}:{attempt}",
        now=now,
        run_after=run_after,
        max_attempts=_JOB_ATTEMPTS,
    )


def _integrity_errors(session: Session) -> tuple[type[Exception], ...]:
    """SQLAlchemy's and the driver's own (bulk_insert writes through the driver directly)."""
    driver_error = getattr(session.connection().dialect.dbapi, "IntegrityError", IntegrityError)
    return IntegrityError, driver_error


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert event rows; the ids inserted. A dedupe key a concurrent transaction wrote first is skipped."""
    conflict = _integrity_errors(session)
    try:
        with session.begin_nested():
            bulk_insert(session, NotificationEventRow, rows)
    except conflict:
        inserted: set[str] = set()
        for row in rows:  # the rare race: row by row, each in a savepoint of its own
            try:
                with session.begin_nested():
                    bulk_insert(session, NotificationEventRow, [row])
            except conflict:
                continue
            inserted.add(row["id"])
        return inserted
    return {row["id"] for row in rows}


def record_events(session: Session, events: Sequence[NewEvent], now: datetime) -> int:
    """Write the events not announced before, assign them to recipients; returns how many were new.

    Events nobody wants (no recipient's filter admits them) are not written at all.
    """
    runtime = runtime_of(session)
    if runtime is None or not events:
        return 0
    fresh = _unseen(session, events)
    keys = _tenant_keys(session, (e.tenant_uuid for e in fresh if e.tenant_uuid))
    planned = [
        (event, str(uuid.uuid4()), assigned)
        for event in fresh
        if (assigned := _assign(runtime.routes, event, keys.get(event.tenant_uuid or ""), now))
    ]
    inserted = insert_events(session, [_event_row(event, event_id, now) for event, event_id, _ in planned])
    writes = _Writes()
    for event, event_id, assigned in planned:
        if event_id not in inserted:
            continue
        for a in assigned:
            delivery_id = (
                _immediate_delivery(session, writes, event, a.recipient, runtime, now)
                if a.mode is EntryMode.IMMEDIATE
                else None
            )
            writes.entries.append(_entry_row(event_id, event, a, delivery_id))
    bulk_insert(session, NotificationDeliveryRow, writes.deliveries)
    bulk_insert(session, NotificationEntryRow, writes.entries)
    for row in writes.deliveries:
        enqueue_delivery(session, row["id"], 1, now)
    return len(inserted)


def _entry_row(
    event_id: str, event: NewEvent, assignment: _Assignment, delivery_id: str | None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "recipient_id": assignment.recipient.id,
        "tenant_uuid": event.tenant_uuid,
        "mode": assignment.mode.value,
        "due_at": assignment.due_at,
        "delivery_id": delivery_id,
    }


# -- what other modules call ----------------------------------------------------------------------


def _routes_of(session: Session, rec_ids: Sequence[int]) -> dict[int, str | None]:
    """The notification route of each recommendation's finding (`notification` of its verdict)."""
    verdict_of: dict[int, str] = {}
    for part in chunks(list(rec_ids)):
        rows = session.execute(
            select(RecommendationRow.id, RecommendationRow.verdict).where(RecommendationRow.id.in_(part))
        ).all()
        verdict_of.update(dict(rows))
    route_of: dict[str, str | None] = {}
    for part in chunks(sorted(set(verdict_of.values()))):
        documents = session.execute(
            select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(part))
        ).all()
        route_of.update({fp: doc.get("notification") for fp, doc in documents})
    return {rec_id: route_of.get(fp) for rec_id, fp in verdict_of.items()}


def _finding_key(c: Change) -> str:
    """What the finding says, never its revision: a flag or policy switched back and forth
    announces nothing new."""
    if c.change is RecommendationChange.ESCALATED:
        return f"finding:{c.recommendation_id}:escalated:{c.risk_level}:{c.action}"
    if c.change is RecommendationChange.REOPENED:
        return f"finding:{c.recommendation_id}:reopened:{c.risk_level}:{c.action}:{c.target_version}"
    return f"finding:{c.recommendation_id}:opened"


def on_recommendation_changes(
    session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime
) -> None:
    """Change hook: announce opened, escalated and reopened findings (not ignored ones)."""
    if runtime_of(session) is None:
        return
    wanted = [
        c
        for c in changes.changes
        if c.change in _ANNOUNCED and c.previous_state != RecommendationState.IGNORED.value
    ]
    if not wanted:
        return
    routes = _routes_of(session, [c.recommendation_id for c in wanted])
    events = [
        NewEvent(
            dedupe_key=_finding_key(c),
            kind=EventKind.FINDING,
            risk=Severity(c.risk_level),
            triggered_at=triggered_at,
            tenant_uuid=c.tenant_uuid,
            recommendation_id=c.recommendation_id,
            change=c.change.value,
            route=routes.get(c.recommendation_id),
            data={
                "revision": c.revision,
                "plugin_id": c.plugin_id,
                "action": c.action,
                "target_version": c.target_version,
                "critical_patch": c.critical_patch,
            },
        )
        for c in wanted
    ]
    record_events(session, events, now)


def _about(session: Session, recommendation_id: int) -> tuple[str, Severity, str | None]:
    """(tenant, risk, route) of a recommendation; LookupError when there is none."""
    row = session.get(RecommendationRow, recommendation_id)
    if row is None:
        raise LookupError(f"no recommendation {recommendation_id}")
    return (
        row.tenant_uuid,
        Severity(row.risk_level),
        _routes_of(session, [recommendation_id]).get(recommendation_id),
    )


def _about_event(
    session: Session, key: str, kind: EventKind, recommendation_id: int, now: datetime, data: dict[str, Any]
) -> bool:
    if runtime_of(session) is None:
        return False
    tenant, risk, route = _about(session, recommendation_id)
    event = NewEvent(key, kind, risk, now, tenant, recommendation_id, None, route, data)
    return record_events(session, [event], now) == 1


def notify_decision(
    session: Session,
    *,
    decision_id: int,
    recommendation_id: int,
    decision: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    target_version: str | None = None,
    scheduled_for: datetime | None = None,
    until: datetime | None = None,
) -> bool:
    """Announce an admin decision (upgrade, schedule, ignore) on a recommendation; False when not new."""
    data = {
        "decision_id": decision_id,
        "decision": decision,
        "actor": actor,
        "reason": reason,
        "target_version": target_version,
        "scheduled_for": iso(scheduled_for),
        "until": iso(until),
    }
    return _about_event(session, f"decision:{decision_id}", EventKind.DECISION, recommendation_id, now, data)


def notify_sla_breach(
    session: Session,
    *,
    recommendation_id: int,
    breach: str,
    breach_key: str,
    now: datetime,
    sla_deadline: datetime | None = None,
    scheduled_for: datetime | None = None,
    decision_id: int | None = None,
) -> bool:
    """Announce an SLA breach (`breach`: critical_past_deadline, schedule_missed ...) once per key."""
    data = {
        "breach": breach,
        "sla_deadline": iso(sla_deadline),
        "scheduled_for": iso(scheduled_for),
        "decision_id": decision_id,
    }
    return _about_event(session, f"sla:{breach_key}", EventKind.SLA_BREACH, recommendation_id, now, data)


def notify_ignore_broken(
    session: Session, *, decision_id: int, recommendation_id: int, reason: str, now: datetime
) -> bool:
    """Announce that an ignore decision no longer holds (e.g. a new critical advisory)."""
    data = {"decision_id": decision_id, "reason": reason}
    return _about_event(
        session, f"ignore_broken:{decision_id}", EventKind.IGNORE_BROKEN, recommendation_id, now, data
    )


def notify_reopened(
    session: Session,
    *,
    recommendation_id: int,
    decision_id: int,
    decision_state: str,
    reason: str,
    now: datetime,
) -> bool:
    """Announce a finding a decision's end reopened (expired ignore, superseded decision), once per
    decision: a `finding` with change `reopened`, as a re-scan announces one."""
    if runtime_of(session) is None:
        return False
    row = session.get_one(RecommendationRow, recommendation_id)
    event = NewEvent(
        dedupe_key=f"finding:{recommendation_id}:reopened:decision:{decision_id}",
        kind=EventKind.FINDING,
        risk=Severity(row.risk_level),
        triggered_at=now,
        tenant_uuid=row.tenant_uuid,
        recommendation_id=recommendation_id,
        change=RecommendationChange.REOPENED.value,
        route=_routes_of(session, [recommendation_id]).get(recommendation_id),
        data={
            "revision": row.revision,
            "plugin_id": row.plugin_id,
            "action": row.action,
            "target_version": row.target_version,
            "critical_patch": row.critical_patch,
            "decision_id": decision_id,
            "decision_state": decision_state,
            "reason": reason,
        },
    )
    return record_events(session, [event], now) == 1


def notify_alert(
    session: Session,
    kind: str,
    message: str,
    channel: str | None,
    now: datetime,
    *,
    key: str | None = None,
    severity: Severity = Severity.HIGH,
    data: Mapping[str, Any] | None = None,
) -> bool:
    """Announce an operational alert on route `channel` (rules `defaults.alert_channel`).

    Deduped on `key` (default: kind and time), so a retried caller does not alert twice.
    """
    event = NewEvent(
        dedupe_key=f"alert:{key or f'{kind}:{iso(now)}'}",
        kind=EventKind.ALERT,
        risk=severity,
        triggered_at=now,
        route=channel,
        data={"alert": kind, "message": message, "severity": severity.value, "data": dict(data or {})},
    )
    return record_events(session, [event], now) == 1


# -- digests --------------------------------------------------------------------------------------


def digests_due(session: Session, now: datetime) -> bool:
    """Whether any digest entry is waiting past its due time (a cheap check for the scheduler)."""
    stmt = select(NotificationEntryRow.event_id).where(
        NotificationEntryRow.delivery_id.is_(None), NotificationEntryRow.due_at <= now
    )
    return session.execute(stmt.limit(1)).first() is not None


def flush_digests(session: Session, now: datetime) -> list[str]:
    """One delivery per (recipient, tenant) for the due digest entries; returns the new delivery ids."""
    runtime = runtime_of(session)
    if runtime is None:
        return []
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
    row = _delivery_row(
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
    if taken.rowcount == 0:  # type: ignore[attr-defined]  # a concurrent flush took them first
        session.execute(delete(NotificationDeliveryRow).where(NotificationDeliveryRow.id == row["id"]))
        return None
    if recipient is None:
        return None
    enqueue_delivery(session, row["id"], 1, now)
    return str(row["id"])


# -- composing and recording deliveries -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedDelivery:
    """A delivery ready to send: its message and what recording the outcome needs."""

    delivery_id: str
    attempt: int
    max_attempts: int
    triggered_at: datetime
    message: OutboundMessage


def _events_of(session: Session, delivery_id: str) -> list[NotificationEventRow]:
    stmt = (
        select(NotificationEventRow)
        .join(NotificationEntryRow, NotificationEntryRow.event_id == NotificationEventRow.id)
        .where(NotificationEntryRow.delivery_id == delivery_id)
        .order_by(NotificationEventRow.created_at, NotificationEventRow.id)
    )
    return list(session.execute(stmt).scalars())


def _recommendations(session: Session, rec_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for part in chunks(sorted(set(rec_ids))):
        rows = session.execute(
            select(RecommendationRow, VerdictRow.document)
            .join(VerdictRow)
            .where(RecommendationRow.id.in_(part))
        ).all()
        found.update({row.id: recommendation_dict(row, doc) for row, doc in rows})
    return found


def _plugin_names(session: Session, plugin_ids: Iterable[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for part in chunks(sorted(set(plugin_ids))):
        rows = session.execute(
            select(PluginRow.plugin_id, PluginRow.document["name"].as_string()).where(
                PluginRow.plugin_id.in_(part)
            )
        ).all()
        found.update(dict(rows))
    return found


def _tenant(session: Session, tenant_uuid: str | None) -> dict[str, Any] | None:
    """Who the message is about, and the impact: how many of its installations need action."""
    if tenant_uuid is None:
        return None
    row = session.get(TenantRow, tenant_uuid)
    installations = session.execute(
        select(func.count()).select_from(InstallationRow).where(InstallationRow.tenant_uuid == tenant_uuid)
    ).scalar_one()
    active = (RecommendationRow.tenant_uuid == tenant_uuid) & RecommendationRow.state.in_(_ACTIVE)
    needing, critical = session.execute(
        select(
            func.count(),
            func.count().filter(RecommendationRow.risk_level == Severity.CRITICAL.value),
        ).where(active)
    ).one()
    key = row.tenant_key if row else None
    return {
        "uuid": tenant_uuid,
        "key": key,
        "name": (row.name if row else None) or key or tenant_uuid,
        "installations": installations,
        "needing_action": needing,
        "critical": critical,
    }


def _finding_contexts(
    runtime: NotificationRuntime,
    events: Sequence[NotificationEventRow],
    recs: Mapping[int, dict[str, Any]],
    names: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    findings = []
    for event in events:
        rec = recs.get(event.recommendation_id or 0)
        if rec is None or rec["state"] in _SILENCED:
            continue  # resolved or ignored since it was announced: nothing left to say
        findings.append(
            finding_context(
                rec,
                change=event.change,
                plugin_name=names.get(rec["plugin_id"]),
                console_url=runtime.settings.console_url,
                labels=runtime.templates.labels,
            )
        )
    findings.sort(key=lambda f: (-int(f["priority"]), f["plugin_id"]))
    return findings


def _event_context(
    runtime: NotificationRuntime,
    event: NotificationEventRow,
    recs: Mapping[int, dict[str, Any]],
    names: Mapping[str, str | None],
) -> dict[str, Any]:
    rec = recs.get(event.recommendation_id or 0)
    finding = None
    if rec is not None:
        finding = finding_context(
            rec,
            change=None,
            plugin_name=names.get(rec["plugin_id"]),
            console_url=runtime.settings.console_url,
            labels=runtime.templates.labels,
        )
    return {**event.data, "finding": finding, "occurred_at": iso(event.triggered_at)}


def _risk(findings: Sequence[Mapping[str, Any]], events: Sequence[NotificationEventRow]) -> str:
    levels = [Severity(f["risk_level"]) for f in findings] or [Severity(e.risk_level) for e in events]
    return max(levels, key=lambda s: s.rank, default=Severity.NONE).value


def _compose(
    session: Session,
    runtime: NotificationRuntime,
    delivery: NotificationDeliveryRow,
    recipient: Recipient,
    now: datetime,
) -> OutboundMessage | None:
    """The message of a delivery, from the stored events and the recommendations as they are now."""
    events = _events_of(session, delivery.id)
    kind = MessageKind(delivery.kind)
    recs = _recommendations(session, [e.recommendation_id for e in events if e.recommendation_id is not None])
    names = _plugin_names(session, (r["plugin_id"] for r in recs.values()))
    is_findings = kind in (MessageKind.FINDING, MessageKind.DIGEST)
    findings = _finding_contexts(runtime, events, recs, names) if is_findings else []
    if not events or (is_findings and not findings):
        return None
    tenant = _tenant(session, delivery.tenant_uuid)
    context = message_context(
        kind,
        tenant=tenant,
        findings=findings,
        event=None if is_findings else _event_context(runtime, events[0], recs, names),
        console_url=runtime.settings.console_url,
        labels=runtime.templates.labels,
        generated_at=iso(now) or "",
        max_items=runtime.routes.delivery.max_items_per_message,
        period=recipient.digest.value if kind is MessageKind.DIGEST else None,
    )
    return OutboundMessage(
        idempotency_key=delivery.idempotency_key,
        kind=kind,
        recipient=recipient,
        tenant_uuid=delivery.tenant_uuid,
        tenant_key=tenant["key"] if tenant else None,
        risk_level=_risk(findings, events),
        context=context,
        templates=runtime.templates,
    )


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
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def prepare_delivery(
    session: Session, delivery_id: str, attempt: int, now: datetime
) -> PreparedDelivery | None:
    """The message for this attempt, or None when there is nothing to send (done, stale, or skipped)."""
    runtime = runtime_of(session)
    delivery = session.get(NotificationDeliveryRow, delivery_id)
    if runtime is None or delivery is None:
        return None
    if delivery.status != DeliveryStatus.PENDING.value or delivery.attempts != attempt - 1:
        return None  # already recorded: at-least-once job delivery must not send twice
    recipient = runtime.routes.recipients.get(delivery.recipient_id)
    message = _compose(session, runtime, delivery, recipient, now) if recipient else None
    if message is None:
        reason = "nothing left to say" if recipient else "recipient no longer configured"
        _finish(
            session,
            delivery_id,
            attempt,
            {"status": DeliveryStatus.SKIPPED.value, "last_error": reason, "finished_at": now},
        )
        return None
    return PreparedDelivery(delivery_id, attempt, delivery.max_attempts, delivery.triggered_at, message)


def mark_delivered(
    session: Session, prepared: PreparedDelivery, reference: str | None, now: datetime
) -> bool:
    """Record a successful attempt; False when it was recorded already."""
    values = {
        "status": DeliveryStatus.DELIVERED.value,
        "provider_ref": (reference or "")[:256] or None,
        "last_error": None,
        "next_attempt_at": None,
        "finished_at": now,
    }
    return _finish(session, prepared.delivery_id, prepared.attempt, values)


def retry_delay(attempt: int, retry_after: float | None, runtime: NotificationRuntime) -> float:
    """Seconds to the next attempt: the queue's jittered backoff, or the receiver's longer Retry-After."""
    policy = runtime.routes.delivery
    backoff = queue.backoff(attempt, base=policy.backoff_base, cap=policy.backoff_cap).total_seconds()
    if retry_after is None:
        return backoff
    return max(backoff, min(retry_after, policy.max_retry_after))


def _next_attempt(
    session: Session, prepared: PreparedDelivery, now: datetime, *, permanent: bool, retry_after: float | None
) -> datetime | None:
    """When the next attempt runs; None when there is none (the delivery is dead)."""
    runtime = runtime_of(session)
    if permanent or runtime is None or prepared.attempt >= prepared.max_attempts:
        return None
    return now + timedelta(seconds=retry_delay(prepared.attempt, retry_after, runtime))


def mark_failed(
    session: Session,
    prepared: PreparedDelivery,
    error: str,
    now: datetime,
    *,
    permanent: bool,
    retry_after: float | None = None,
) -> DeliveryStatus | None:
    """Record a failed attempt: the next attempt is queued, or the delivery is dead. None when stale."""
    run_after = _next_attempt(session, prepared, now, permanent=permanent, retry_after=retry_after)
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


# -- reading --------------------------------------------------------------------------------------


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

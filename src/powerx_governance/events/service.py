"""Subscriptions: create, list, show, pause, resume, replay, delete (each audited); the pull feed.

A subscription starts at the newest event (cursor = its seq): it gets what is recorded from
then on, and can replay older events. Replay sets the cursor to `after` (never past the newest
event) and reactivates a suspended subscription; the subscriber then gets every matching event
after that seq once more, in order. Pause keeps the cursor; resume (or replay) picks up there.
The signing secret is returned once, by `create`, and never shown, listed or audited.

Each change records its audit event before it takes the event log lock (the audit chain lock
is always taken first, see `outbox`), then queues delivery in the same transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.errors import ConflictError, InvalidError, NotFoundError
from powerx_governance.events.cloudevents import DEFAULT_SOURCE, SecretError, envelope, new_secret, secret_key
from powerx_governance.events.model import EventType, SubscriptionStatus
from powerx_governance.events.outbox import lock_log, newest_seq, wake
from powerx_governance.events.tables import EventRow, SubscriptionRow
from powerx_governance.http.allow_list import AllowList
from powerx_governance.notifications.channels.interface import ChannelError
from powerx_governance.notifications.channels.webhook import check_destination
from powerx_governance.observability.logging import mask_url
from powerx_governance.times import iso

MAX_BATCH: Final = 100
MAX_ATTEMPTS: Final = 50
DEFAULT_MAX_ATTEMPTS: Final = 8
MAX_FEED_PAGE: Final = 1000
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SubscriptionError(InvalidError):
    """A subscription request that cannot be carried out; `field` names the field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class UnknownSubscriptionError(SubscriptionError, NotFoundError):
    """No subscription with this id."""

    title = "Not found"


class DuplicateNameError(SubscriptionError, ConflictError):
    """A subscription with this name exists."""

    title = "Conflict"


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What an operator asks for; `secret` None means a new one is generated."""

    name: str
    url: str
    types: tuple[EventType, ...] = ()
    tenants: tuple[str, ...] = ()
    batch_size: int = 1
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class Destinations:
    """Where subscriptions may point: the IM webhooks' allow-list and scheme rule."""

    allow: AllowList
    require_https: bool


def check_url(url: str, destinations: Destinations) -> None:
    """The scheme, host and the addresses it resolves to must pass the webhook allow-list (now, and
    again at every send: a name may resolve elsewhere later)."""
    parts = urlsplit(url)
    schemes = ("https",) if destinations.require_https else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise SubscriptionError(f"the URL must be {' or '.join(schemes)} with a host", field="url")
    if not destinations.allow.allows_host(parts.hostname):
        raise SubscriptionError(f"host {parts.hostname!r} is not on webhooks.allow_hosts", field="url")
    try:
        check_destination("events", url, destinations.allow, require_https=destinations.require_https)
    except ChannelError as exc:
        raise SubscriptionError(exc.detail, field="url") from exc
    except ValueError as exc:  # a port out of range
        raise SubscriptionError(str(exc), field="url") from exc


def _check(spec: SubscriptionSpec, destinations: Destinations) -> None:
    if not _NAME.fullmatch(spec.name):
        raise SubscriptionError("letters, digits and . _ - (at most 128)", field="name")
    check_url(spec.url, destinations)
    if not 1 <= spec.batch_size <= MAX_BATCH:
        raise SubscriptionError(f"between 1 and {MAX_BATCH}", field="batch_size")
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS:
        raise SubscriptionError(f"between 1 and {MAX_ATTEMPTS}", field="max_attempts")
    if spec.secret is not None:
        try:
            secret_key(spec.secret)
        except SecretError as exc:
            raise SubscriptionError(str(exc), field="secret") from exc


def audit(
    session: Session, row: SubscriptionRow, action: str, actor: str, now: datetime, after: dict[str, Any]
) -> None:
    """The audit event of a subscription change (`events.subscription.<action>`); never the secret."""
    event = AuditEvent(
        source="governance",
        operation=f"events.subscription.{action}",
        resource_type="event_subscription",
        resource_id=row.id,
        actor=actor,
        changes={"before": {"status": row.status, "cursor": row.cursor}, "after": after},
        meta={
            "name": row.name,
            "url": mask_url(row.url),
            "types": list(row.types),
            "tenants": list(row.tenants),
        },
    )
    record(session, event, now)


def create(
    session: Session, spec: SubscriptionSpec, destinations: Destinations, actor: str, now: datetime
) -> tuple[SubscriptionRow, str]:
    """A new active subscription starting at the newest event; (row, secret): the secret is shown once."""
    _check(spec, destinations)
    if session.execute(select(SubscriptionRow.id).where(SubscriptionRow.name == spec.name)).first():
        raise DuplicateNameError(f"a subscription named {spec.name!r} exists", field="name")
    secret = spec.secret or new_secret()
    row = SubscriptionRow(
        id=str(uuid.uuid4()),
        name=spec.name,
        url=spec.url,
        secret=secret,
        types=sorted({t.value for t in spec.types}),
        tenants=sorted(set(spec.tenants)),
        batch_size=spec.batch_size,
        status=SubscriptionStatus.ACTIVE.value,
        cursor=0,
        failures=0,
        max_attempts=spec.max_attempts,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    record(session, _created_event(row, actor), now)
    lock_log(session)
    row.cursor = newest_seq(session)
    session.add(row)
    session.flush()
    return row, secret


def _created_event(row: SubscriptionRow, actor: str) -> AuditEvent:
    return AuditEvent(
        source="governance",
        operation="events.subscription.created",
        resource_type="event_subscription",
        resource_id=row.id,
        actor=actor,
        changes={"after": _settings(row)},
        meta={"name": row.name},
    )


def _settings(row: SubscriptionRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "url": mask_url(row.url),  # user:password@ and ?token= are for delivery, never shown or audited
        "types": list(row.types),
        "tenants": list(row.tenants),
        "batch_size": row.batch_size,
        "max_attempts": row.max_attempts,
        "status": row.status,
    }


def find(session: Session, ref: str) -> SubscriptionRow:
    """A subscription by id or by name; UnknownSubscriptionError otherwise."""
    stmt = select(SubscriptionRow).where(or_(SubscriptionRow.id == ref, SubscriptionRow.name == ref))
    row = session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None:
        raise UnknownSubscriptionError(f"no subscription {ref!r}", field="subscription")
    return row


def view(row: SubscriptionRow, newest: int) -> dict[str, Any]:
    """A subscription as the API and CLI show it (never its secret); lag = newest seq - cursor."""
    return {
        "id": row.id,
        **_settings(row),
        "cursor": row.cursor,
        "lag": max(0, newest - row.cursor),
        "failures": row.failures,
        "last_error": row.last_error,
        "next_attempt_at": iso(row.next_attempt_at),
        "last_delivered_at": iso(row.last_delivered_at),
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def listing(session: Session) -> list[dict[str, Any]]:
    newest = newest_seq(session)
    rows = session.execute(select(SubscriptionRow).order_by(SubscriptionRow.name)).scalars()
    return [view(row, newest) for row in rows]


def show(session: Session, ref: str) -> dict[str, Any]:
    return view(find(session, ref), newest_seq(session))


def pause(session: Session, ref: str, actor: str, now: datetime) -> SubscriptionRow:
    """Stop delivering (the cursor stays); a delivery in flight finishes."""
    row = find(session, ref)
    audit(
        session, row, "paused", actor, now, {"status": SubscriptionStatus.PAUSED.value, "cursor": row.cursor}
    )
    lock_log(session)
    row.status, row.updated_at = SubscriptionStatus.PAUSED.value, now
    session.flush()
    return row


def _reactivate(session: Session, row: SubscriptionRow, now: datetime, reason: str) -> None:
    """Active again (failures reset unless it was active); delivery queued after any lease or backoff."""
    if row.status != SubscriptionStatus.ACTIVE.value:
        row.failures = 0
    row.status, row.updated_at = SubscriptionStatus.ACTIVE.value, now
    due = row.next_attempt_at if row.next_attempt_at is not None and row.next_attempt_at > now else None
    session.flush()
    wake(session, row.id, now, key=f"events:{row.id}:{reason}:{uuid.uuid4().hex}", at=due)


def resume(session: Session, ref: str, actor: str, now: datetime) -> SubscriptionRow:
    """Deliver again from the cursor (a paused or suspended subscription)."""
    row = find(session, ref)
    audit(
        session, row, "resumed", actor, now, {"status": SubscriptionStatus.ACTIVE.value, "cursor": row.cursor}
    )
    lock_log(session)
    _reactivate(session, row, now, "resume")
    return row


def replay(session: Session, ref: str, after: int, actor: str, now: datetime) -> SubscriptionRow:
    """Move the cursor to `after` (≤ the newest seq); a suspended subscription becomes active again."""
    row = find(session, ref)
    newest = newest_seq(session)
    if not 0 <= after <= newest:
        raise SubscriptionError(f"`after` must be between 0 and the newest seq {newest}", field="after")
    status = (
        SubscriptionStatus.PAUSED
        if row.status == SubscriptionStatus.PAUSED.value
        else SubscriptionStatus.ACTIVE
    )
    audit(session, row, "replayed", actor, now, {"status": status.value, "cursor": after})
    lock_log(session)
    row.cursor = after
    if status is SubscriptionStatus.PAUSED:  # an operator's pause stands: resuming delivers from here
        row.updated_at = now
        session.flush()
        return row
    row.last_error = None
    _reactivate(session, row, now, "replay")
    return row


def remove(session: Session, ref: str, actor: str, now: datetime) -> str:
    """Delete a subscription (its queued deliveries find nothing to do); returns its id."""
    row = find(session, ref)
    audit(session, row, "deleted", actor, now, {"status": "deleted"})
    lock_log(session)
    session.execute(delete(SubscriptionRow).where(SubscriptionRow.id == row.id))
    return row.id


# -- the pull feed ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[dict[str, Any]]
    next_cursor: int


def feed(
    session: Session,
    *,
    after: int,
    limit: int,
    types: Sequence[str] = (),
    tenant_uuid: str | None = None,
    source: str = DEFAULT_SOURCE,
) -> FeedPage:
    """Matching events after `after` in seq order; continue from `next_cursor` (past non-matching ones)."""
    horizon = newest_seq(session)
    stmt = select(EventRow).where(EventRow.seq > after, EventRow.seq <= horizon)
    if types:
        stmt = stmt.where(EventRow.type.in_(types))
    if tenant_uuid is not None:
        stmt = stmt.where(EventRow.tenant_uuid == tenant_uuid)
    rows = list(session.execute(stmt.order_by(EventRow.seq).limit(limit)).scalars())
    done = len(rows) < limit
    next_cursor = max(after, horizon) if done else rows[-1].seq
    return FeedPage([envelope(r, source) for r in rows], next_cursor)

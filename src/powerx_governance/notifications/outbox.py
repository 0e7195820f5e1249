"""The outbox: events written in the caller's transaction, assigned to recipients, batched into
deliveries queued after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import FEW, DriverRows, bulk_insert, copy_field, insert_new
from powerx_governance.db.chunks import chunks
from powerx_governance.db.ordered_ids import time_ordered_id, time_ordered_ids
from powerx_governance.db.per_transaction import PerTransaction
from powerx_governance.domain import Severity
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.jobs import queue
from powerx_governance.notifications.config import ChannelType, DigestPeriod
from powerx_governance.notifications.model import DeliveryStatus, EntryMode, EventKind, MessageKind
from powerx_governance.notifications.routes_file import Recipient, RoutesConfig
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.notifications.tables import (
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)

DELIVER_TASK: Final = "notify_deliver"
DELIVER_BATCH_TASK: Final = "notify_deliver_batch"
BATCH_MOST: Final = 200  # console deliveries whose first attempts share a job
_BATCHES: Final[PerTransaction[dict[tuple[str, str | None, str], str]]] = PerTransaction(dict)
_JOB_ATTEMPTS: Final = 3  # queue-level retries cover crashes and database errors, not channel errors


class NewEvent(NamedTuple):
    """An event to announce, before it is written. A tuple: a fleet's first scan announces ~740,000,
    and a frozen dataclass cost 2 us each to make (its `__init__` sets each field through
    `object.__setattr__`), a tuple a fifth of that. Events of one announcement may share their `data`:
    nothing changes it once the event is made."""

    dedupe_key: str
    kind: EventKind
    risk: Severity
    triggered_at: datetime
    tenant_uuid: str | None = None
    recommendation_id: int | None = None
    change: str | None = None
    route: str | None = None
    data: dict[str, Any] = {}  # noqa: RUF012 - a tuple field's default, never changed (see above)


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


def _wanting(
    routes: RoutesConfig, route: str | None, kind: EventKind, risk: Severity, now: datetime
) -> list[_Assignment]:
    """The assignment of each recipient of `route` who wants such events, whichever their tenant."""
    found: dict[str, _Assignment] = {}
    for recipient in routes.recipients_for(route):
        if recipient.id in found:
            continue
        mode = recipient.mode_for(kind, risk)
        if mode is EntryMode.IMMEDIATE:
            found[recipient.id] = _Assignment(recipient, mode, now)
        elif mode is EntryMode.DIGEST:
            found[recipient.id] = _Assignment(recipient, mode, next_digest(recipient.digest, now, routes))
    return list(found.values())


def _unseen(session: Session, events: Sequence[NewEvent], *, unstored: bool = False) -> list[NewEvent]:
    """Events whose dedupe key is neither stored nor repeated earlier in the list (`unstored`: the
    caller knows none is stored, `none_stored`)."""
    by_key = {e.dedupe_key: e for e in reversed(events)}  # reversed: the first occurrence wins
    if unstored or (len(by_key) > FEW and none_stored(session, by_key)):
        return list(reversed(by_key.values()))  # a fleet's first findings: one lookup, not thousands
    stored = _stored_keys(session, list(by_key))
    return [e for key, e in reversed(by_key.items()) if key not in stored]


def _stored_keys(session: Session, keys: list[str]) -> set[str]:
    """The dedupe keys among `keys` some stored event has. PostgreSQL: one statement, `= ANY` of an
    array (each piece of a first ingest's announcement, 20,000 keys, took 40 statements as `IN` lists
    of 500, most of their time spent building and sending the parameters). SQLite: `IN` lists of 500,
    answered in the process."""
    key = NotificationEventRow.dedupe_key
    if session.get_bind().dialect.name == "postgresql":
        wanted = bindparam("keys", keys, type_=ARRAY(String))
        return set(session.execute(select(key).where(key == any_(wanted))).scalars())
    stored: set[str] = set()
    for part in chunks(keys, 500):
        stored.update(session.execute(select(key).where(key.in_(part))).scalars())
    return stored


def none_stored(session: Session, keys: Iterable[str]) -> bool:
    """Whether one lookup shows that no stored event has any of these dedupe keys (`keys` not empty):
    none lies between the least and the greatest of them, on a store that orders keys as Python does.
    False when one does, or when the store orders them otherwise.

    An announcement in pieces asks once for all of them, before its first piece: findings' keys
    interleave as text (`finding:1000:opened` sorts between `finding:100000:…` and
    `finding:119999:…`), so the range of each later piece takes in keys earlier pieces wrote."""
    return _orders_as_python(session) and not _any_stored_between(session, *_key_range(keys))


def _orders_as_python(session: Session) -> bool:
    """Whether the store orders dedupe keys as Python orders str: SQLite compares text byte by byte
    (UTF-8, so in code point order). PostgreSQL orders by its collation; asking it for the least and
    greatest of 20,000 keys took 55-85 ms, paid by every large announcement after a fleet's first
    piece (a delta push's included) to spare one piece's lookups, so it looks the keys up."""
    return session.get_bind().dialect.name == "sqlite"


def _key_range(keys: Iterable[str]) -> tuple[str, str]:
    """The least and the greatest of `keys`, in one pass (an iterator will do)."""
    each = iter(keys)
    low = high = next(each)
    for key in each:
        if key < low:
            low = key
        elif key > high:
            high = key
    return low, high


def _any_stored_between(session: Session, low: str, high: str) -> bool:
    """Whether an event's dedupe key lies in [low, high] (through the unique key's index)."""
    key = NotificationEventRow.dedupe_key
    found = session.execute(select(key).where(key >= low, key <= high).limit(1)).first()
    return found is not None


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
    return _MESSAGE_KINDS[kind]


_MESSAGE_KINDS: Final = {k: MessageKind(k.value) for k in EventKind}  # looked up for every event


@dataclass
class _Writes:
    """Deliveries and entries of one `record_events` call, written after their events."""

    batch: dict[tuple[str, str | None, str], str]  # the transaction's batched deliveries (`_batch`)
    entries: _EntryRows
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # the values after the event id of the entries an assignment makes for one tenant and event kind,
    # by (id of the assignment, tenant, kind): the same for each such event when it shares a message
    tails: dict[tuple[int, str | None, EventKind], Any] = field(default_factory=dict)


def _batch(session: Session) -> dict[tuple[str, str | None, str], str]:
    """Immediate deliveries created in the current transaction, by (recipient, tenant, kind)."""
    return _BATCHES.of(session)


def delivery_row(
    recipient_id: str,
    channel: str,
    tenant_uuid: str | None,
    kind: MessageKind,
    triggered_at: datetime,
    now: datetime,
    max_attempts: int,
) -> dict[str, Any]:
    delivery_id = time_ordered_id()
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


def _batched(event: NewEvent, recipient: Recipient) -> bool:
    """Whether the event shares its transaction's message to this recipient and tenant."""
    if event.kind is EventKind.FINDING:
        return True
    return event.kind is EventKind.DECISION and recipient.channel is ChannelType.CONSOLE


def _immediate_delivery(
    writes: _Writes,
    event: NewEvent,
    recipient: Recipient,
    runtime: NotificationRuntime,
    now: datetime,
) -> str:
    # Findings of one transaction share a message per (recipient, tenant), and so do decisions shown
    # on the console (a card each); other events each get their own message.
    batch: dict[tuple[str, str | None, str], str] = writes.batch if _batched(event, recipient) else {}
    kind = _message_kind(event.kind)
    slot = (recipient.id, event.tenant_uuid, kind)  # a str enum: the same key as its value
    found = batch.get(slot)
    if found is None:
        row = delivery_row(
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


def _delivery_job(delivery_id: str, attempt: int, run_after: datetime | None = None) -> queue.NewJob:
    return queue.NewJob(
        DELIVER_TASK,
        {"delivery_id": delivery_id, "attempt": attempt},
        key=f"notify:{delivery_id}:{attempt}",
        run_after=run_after,
        max_attempts=_JOB_ATTEMPTS,
    )


def _batch_job(delivery_ids: Sequence[str]) -> queue.NewJob:
    return queue.NewJob(
        DELIVER_BATCH_TASK,
        {"delivery_ids": list(delivery_ids)},
        key=f"notify:batch:{delivery_ids[0]}",  # a delivery is in one batch: its first names the job
        max_attempts=_JOB_ATTEMPTS,
    )


def _first_attempts(deliveries: Sequence[dict[str, Any]]) -> list[queue.NewJob]:
    """The jobs of new deliveries' first attempts: console deliveries (cards in the store, no
    network) share a job per `BATCH_MOST`; every other delivery has its own, so a slow receiver
    holds up its own messages only."""
    console = ChannelType.CONSOLE.value
    jobs = [_delivery_job(row["id"], 1) for row in deliveries if row["channel"] != console]
    local = [row["id"] for row in deliveries if row["channel"] == console]
    return jobs + [_batch_job(part) for part in chunks(local, BATCH_MOST)]


def enqueue_delivery(
    session: Session, delivery_id: str, attempt: int, now: datetime, run_after: datetime | None = None
) -> None:
    """Queue one attempt of a delivery (each attempt is its own job, so Retry-After can be honoured)."""
    job = _delivery_job(delivery_id, attempt, run_after)
    queue.enqueue(
        session,
        job.task,
        job.payload,
        key=job.key,
        now=now,
        run_after=job.run_after,
        max_attempts=job.max_attempts,
    )


def _integrity_errors(session: Session) -> tuple[type[Exception], ...]:
    """SQLAlchemy's and the driver's own (bulk_insert writes through the driver directly)."""
    driver_error = getattr(session.connection().dialect.dbapi, "IntegrityError", IntegrityError)
    return IntegrityError, driver_error


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert event rows; the ids inserted. A dedupe key a concurrent transaction wrote first is skipped."""
    if len(rows) <= FEW:
        return insert_new(session, NotificationEventRow, rows, unique="dedupe_key", key="id")
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


def _assigned(
    routes: RoutesConfig, events: Sequence[NewEvent], keys: dict[str, str | None], now: datetime
) -> list[tuple[NewEvent, list[_Assignment]]]:
    """Each event some recipient wants, with its assignments (`keys`: each tenant's key)."""
    assignments: dict[tuple[Any, ...], list[_Assignment]] = {}  # a fleet scan repeats a few per tenant
    wanting: dict[tuple[Any, ...], list[_Assignment]] = {}  # and a handful of (route, kind, risk)
    wanted = []
    for event in events:
        key = keys.get(event.tenant_uuid or "")
        slot = (event.route, event.tenant_uuid, key, event.kind, event.risk)
        assigned = assignments.get(slot)
        if assigned is None:
            of = (event.route, event.kind, event.risk)
            candidates = wanting.get(of)
            if candidates is None:
                candidates = wanting[of] = _wanting(routes, *of, now)
            assigned = assignments[slot] = [
                a for a in candidates if a.recipient.covers(event.tenant_uuid, key)
            ]
        if assigned:
            wanted.append((event, assigned))
    return wanted


def record_events(
    session: Session,
    runtime: NotificationRuntime,
    events: Sequence[NewEvent],
    now: datetime,
    *,
    tenant_keys: dict[str, str | None] | None = None,
    unstored: bool = False,
) -> int:
    """Write the events not announced before, assign them to recipients; returns how many were new.

    Events nobody wants (no recipient's filter admits them) are not written at all. `tenant_keys`:
    the tenants' keys looked up by earlier calls of one transaction, completed by this one (a fleet's
    first findings are announced in pieces, each naming most tenants). `unstored`: `none_stored` held
    for these events' keys before the transaction's earlier calls, whose keys they do not repeat (a
    key that does is still skipped, by its insert: the unique key).
    """
    if not events:
        return 0
    fresh = _unseen(session, events, unstored=unstored)
    tenants = {e.tenant_uuid for e in fresh if e.tenant_uuid}
    if tenant_keys is None:
        keys = _tenant_keys(session, tenants)
    else:
        missing = tenants - tenant_keys.keys()
        if missing:
            tenant_keys.update(dict.fromkeys(missing) | _tenant_keys(session, missing))
        keys = tenant_keys
    wanted = _assigned(runtime.routes, fresh, keys, now)
    planned = [
        (e, event_id, a) for (e, a), event_id in zip(wanted, time_ordered_ids(len(wanted)), strict=True)
    ]
    if len(planned) > FEW:
        inserted = _insert_many_events(session, planned, now)
    else:
        inserted = insert_events(
            session, [_event_row(event, event_id, now) for event, event_id, _ in planned]
        )
    writes = _Writes(_batch(session), _EntryRows(session))  # the batch looked up once, not per event
    add, tails = writes.entries.add, writes.tails
    for event, event_id, assigned in planned:
        if event_id not in inserted:
            continue
        for a in assigned:
            tail = tails.get((id(a), event.tenant_uuid, event.kind))
            add(event_id, _entry_tail(writes, event, a, runtime, now) if tail is None else tail)
    bulk_insert(session, NotificationDeliveryRow, writes.deliveries)
    writes.entries.insert()
    queue.enqueue_many(session, _first_attempts(writes.deliveries), now=now)
    return len(inserted)


def _entry_tail(
    writes: _Writes, event: NewEvent, assignment: _Assignment, runtime: NotificationRuntime, now: datetime
) -> Any:
    """The values after the event id of the event's entry for `assignment` (its delivery made or
    found), kept for the next events of its tenant and kind when they share it: a digest entry, or
    an immediate one whose message the transaction's events share (`_batched`)."""
    recipient, immediate = assignment.recipient, assignment.mode is EntryMode.IMMEDIATE
    delivery_id = _immediate_delivery(writes, event, recipient, runtime, now) if immediate else None
    tail = writes.entries.tail(
        recipient.id, event.tenant_uuid, assignment.mode.value, assignment.due_at, delivery_id
    )
    if not immediate or _batched(event, recipient):
        writes.tails[(id(assignment), event.tenant_uuid, event.kind)] = tail
    return tail


_ENTRY_COLUMNS: Final = ("event_id", "recipient_id", "tenant_uuid", "mode", "due_at", "delivery_id")
_EVENT_COLUMNS: Final = (
    "id",
    "dedupe_key",
    "kind",
    "tenant_uuid",
    "recommendation_id",
    "change",
    "risk_level",
    "route",
    "data",
    "triggered_at",
    "created_at",
)


class _EntryRows:
    """The entry rows of one `record_events` call, as driver rows (a fleet's first scan assigns as many
    entries as it finds findings). What follows an entry's event id (`tail`) is converted once for all
    the events that share it; PostgreSQL: as COPY text fields, the lines made as they are sent."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._table: DriverRows | None = None  # made at the first entry: most calls announce a handful
        self._fields: _Fields | None = None
        self._rows: list[tuple[Any, ...]] = []

    def tail(
        self, recipient_id: str, tenant_uuid: str | None, mode: str, due_at: datetime, delivery_id: str | None
    ) -> Any:
        """An entry's values after its event id, as `add` takes them."""
        table = self._table
        if table is None:
            table = self._table = DriverRows(self._session, NotificationEntryRow, _ENTRY_COLUMNS)
            self._fields = _Fields(table) if table.copies_text else None
        fields = self._fields
        if fields is not None:
            text = fields.text
            return (
                f"{text(recipient_id)}\t{text(tenant_uuid)}\t{text(mode)}"
                f"\t{fields.moment('due_at', due_at)}\t{text(delivery_id)}"
            )
        repeated = table.repeated
        return (recipient_id, tenant_uuid, repeated("mode", mode), repeated("due_at", due_at), delivery_id)

    def add(self, event_id: str, tail: Any) -> None:
        """An entry: its event's id and its `tail`. Event ids are UUID texts, COPY fields as they are."""
        self._rows.append((event_id, tail) if self._fields is not None else (event_id, *tail))

    def insert(self) -> None:
        table = self._table
        if table is None or not self._rows:
            return
        if self._fields is None:
            table.insert(self._rows)
            return
        table.insert_lines(f"{event_id}\t{tail}\n" for event_id, tail in self._rows)


class _Fields:
    """COPY text fields of the values rows repeat (`DriverRows.field`), each made once."""

    def __init__(self, table: DriverRows) -> None:
        self._table = table
        self._texts: dict[str | None, str] = {}
        self._moments: dict[tuple[str, datetime], str] = {}

    def text(self, value: str | None) -> str:
        """The field of a text value (or None) the column takes as it is."""
        found = self._texts.get(value)
        if found is None:
            found = self._texts[value] = self._table.field(value)
        return found

    def moment(self, column: str, value: datetime) -> str:
        """The field of a timestamp of `column`, converted as the column converts it."""
        found = self._moments.get((column, value))
        if found is None:
            found = self._moments[(column, value)] = self._table.field(self._table.repeated(column, value))
        return found


def _insert_many_events(
    session: Session, planned: Sequence[tuple[NewEvent, str, list[_Assignment]]], now: datetime
) -> set[str]:
    """`insert_events` of many events, their rows built as driver rows (`_event_row`'s values);
    PostgreSQL: as COPY text lines (`_event_lines`)."""
    table = DriverRows(session, NotificationEventRow, _EVENT_COLUMNS)
    try:
        with session.begin_nested():
            if table.copies_text:
                table.insert_lines(_event_lines(table, planned, now))
            else:
                table.insert(_event_values(table, planned, now))
    except _integrity_errors(session):  # the rare race: `insert_events` goes row by row
        return insert_events(session, [_event_row(event, event_id, now) for event, event_id, _ in planned])
    return {event_id for _, event_id, _ in planned}


def _documents(
    planned: Sequence[tuple[NewEvent, str, list[_Assignment]]], convert: Callable[[str, dict[str, Any]], Any]
) -> dict[int, Any]:
    """Each event's `data` converted (`convert`) once per document object, by its id: an announcement's
    events share their documents (`on_recommendation_changes`). `planned` holds them: ids stay theirs."""
    found: dict[int, Any] = {}
    for e, _, _ in planned:
        if id(e.data) not in found:
            found[id(e.data)] = convert("data", e.data)
    return found


def _event_values(
    table: DriverRows, planned: Sequence[tuple[NewEvent, str, list[_Assignment]]], now: datetime
) -> list[tuple[Any, ...]]:
    repeated = table.repeated
    created = repeated("created_at", now)
    kinds = {k: repeated("kind", k.value) for k in EventKind}  # an enum's `.value` costs a call per row
    risks = {r: repeated("risk_level", r.value) for r in Severity}
    documents = _documents(planned, table.document)
    return [
        (
            event_id,
            e.dedupe_key,
            kinds[e.kind],
            e.tenant_uuid,
            e.recommendation_id,
            e.change,
            risks[e.risk],
            e.route,
            documents[id(e.data)],
            repeated("triggered_at", e.triggered_at),
            created,
        )
        for e, event_id, _ in planned
    ]


def _event_lines(
    table: DriverRows, planned: Sequence[tuple[NewEvent, str, list[_Assignment]]], now: datetime
) -> Iterator[str]:
    """Event rows as COPY text lines, made as they are sent, the fields of the values events share
    (tenant, change, route, kind, risk, times, flat data documents) made once each. Event ids are
    UUID texts, fields as they are; each dedupe key is escaped (`copy_field`)."""
    fields = _Fields(table)
    text, moment = fields.text, fields.moment
    created = moment("created_at", now)
    kinds = {k: text(k.value) for k in EventKind}
    risks = {r: text(r.value) for r in Severity}
    documents = _documents(planned, table.document_field)
    return (
        f"{event_id}\t{copy_field(e.dedupe_key)}\t{kinds[e.kind]}\t{text(e.tenant_uuid)}"
        f"\t{_number(table, e.recommendation_id)}\t{text(e.change)}\t{risks[e.risk]}\t{text(e.route)}"
        f"\t{documents[id(e.data)]}\t{moment('triggered_at', e.triggered_at)}\t{created}\n"
        for e, event_id, _ in planned
    )


def _number(table: DriverRows, value: int | None) -> str:
    """The field of an integer column's value: an int's text dump is its decimal digits."""
    return str(value) if type(value) is int else table.field(value)

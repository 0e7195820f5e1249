"""The audit trail: append-only events with PowerX's audit fields, chained by SHA-256.

Chain. Every row stores `prev_hash` (the `hash` of the row before it in `seq` order; the first
row of a fresh trail uses 64 zeros) and `hash = hex(sha256(ascii(prev_hash) + canonical JSON))`.
The canonical JSON is the object of every stored column but seq, prev_hash and hash, plus
`"schema": "powerx.audit-event/v1"`, with sorted keys, no whitespace, UTF-8, and timestamps as
RFC 3339 UTC with microseconds and `Z` (`event_fields` builds it from a row). Changing,
deleting, inserting or reordering any row breaks a hash or a link, and `verify` names the first
record where that happens. The seq numbers only order the chain: gaps are fine.

Writers. `record`/`record_many` append in the caller's transaction (they flush, never commit), so
a decision and its audit event commit together. The chain stays linear with any number of
writers: before reading the last hash a writer takes the chain lock, held until its transaction
ends — `pg_advisory_xact_lock(AUDT, hashtext(current_schema()))` on PostgreSQL (one chain per
schema; READ COMMITTED is required so the next statement sees the previous holder's row), and on
SQLite the database write lock, taken by writing this component's own `locks` row. Call `record`
late in a transaction: the lock serialises audit writers until commit.

What a hash chain alone cannot show: someone with write access to the database who rewrites
the newest records and the head marker together, or empties the table and the markers. The
outside witness for that is the remote audit service the events are shipped to (`sink.py`).

State kept in the `locks` table (rows owned by this component, `owner` holds the value):
- `audit-chain`: `"<seq>:<hash>"` of the newest record, written with it. `verify` checks the
  chain reaches it, so deleting the newest records is detected too.
- `audit-pruned`: `"<seq>:<hash>"` of the last record removed by `prune`. After pruning, the
  oldest remaining record must link to it instead of the genesis hash. `prune` also appends an
  `audit.pruned` event carrying the same checkpoint, so the pruning itself is on the record.

Masking. `changes` and `meta` go through `observability.logging.mask` (sensitive keys, tokens and
e-mail addresses) before they are hashed and stored, so the hash covers what is stored. The
identity columns (actor, resource, tenant, correlation id) are kept as given: they are what an
audit trail is for.

JSON values are normalised so both stores give them back unchanged: keys become strings, tuples
lists, datetimes RFC 3339 strings, integral floats written with an exponent (1e20) integers and
-0.0 becomes 0.0 (PostgreSQL's jsonb keeps numbers as decimals); NaN, infinities and NUL
characters are refused.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from functools import cache
from subprocess import PIPE, Popen
from typing import Any, Final, Literal, Protocol

import msgspec
from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.db.session import make_engine, session_factory
from powerx_governance.jobs.tables import LockRow
from powerx_governance.observability.logging import mask
from powerx_governance.reports.csv_report import neutralise

log = logging.getLogger("powerx.audit")
GENESIS: Final = "0" * 64
SCHEMA: Final = "powerx.audit-event/v1"
MIN_RETENTION_DAYS: Final = 365
PRUNED_OPERATION: Final = "audit.pruned"
CHAIN_MARKER: Final = "audit-chain"
CHECKPOINT_MARKER: Final = "audit-pruned"
EXPORT_FORMATS: Final = ("jsonl", "csv")
EXPORT_FIELDS: Final = (
    "seq",
    "event_id",
    "occurred_at",
    "recorded_at",
    "tenant_uuid",
    "correlation_id",
    "source",
    "operation",
    "resource_type",
    "resource_id",
    "outcome",
    "severity",
    "actor",
    "changes",
    "meta",
    "prev_hash",
    "hash",
)
LIMITS: Final = {  # column widths of audit_events
    "event_id": 64,
    "tenant_uuid": 128,
    "correlation_id": 128,
    "source": 64,
    "operation": 64,
    "resource_type": 64,
    "resource_id": 256,
    "outcome": 16,
    "severity": 16,
    "actor": 256,
}
_REQUIRED: Final = ("source", "operation", "resource_type", "actor", "outcome", "severity")
_OPTIONAL: Final = ("tenant_uuid", "correlation_id", "resource_id")
_EVENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_CHANGE_KEYS: Final = frozenset({"before", "after"})
_PG_LOCK_CLASS: Final = 0x41554454  # "AUDT"; the second key is the schema, one chain per schema
_NEVER: Final = datetime(9999, 12, 31, tzinfo=UTC)  # the marker rows are never free for a lease
_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_DECODER: Final = msgspec.json.Decoder()


Raw = Sequence[Any]
"""A row of `_PAGE`: the stored values as the driver returns them, in its column order."""


class StoredEvent(Protocol):
    """A stored record: an AuditEventRow, or a Core row of the audit_events columns."""

    seq: int
    event_id: str
    occurred_at: datetime
    recorded_at: datetime
    tenant_uuid: str | None
    correlation_id: str | None
    source: str
    operation: str
    resource_type: str
    resource_id: str | None
    outcome: str
    severity: str
    actor: str
    changes: dict[str, Any]
    meta: dict[str, Any]
    prev_hash: str
    hash: str


class AuditError(Exception):
    """The audit trail refused an operation."""


class AuditEventError(AuditError, ValueError):
    """An event that cannot be recorded; `field` names the field at fault (dotted path)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class EventConflictError(AuditError):
    """An event id that is already recorded with different content."""

    def __init__(self, event_id: str, seq: int | None) -> None:
        where = f" (seq {seq})" if seq is not None else " earlier in the same batch"
        super().__init__(f"event {event_id} is already recorded{where} with different content")
        self.event_id = event_id
        self.seq = seq


class RetentionError(AuditError, ValueError):
    """A retention period or pruning date that would delete records kept for less than a year."""


class ChainBrokenError(AuditError):
    """Pruning refused: the records it would delete do not verify (deleting them hides tampering)."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"the audit chain is broken at seq {result.first_bad_seq}: {result.problem}")
        self.result = result


# -- events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event in PowerX's field names; `event_id` is a new uuid4 when not given."""

    source: str
    operation: str
    resource_type: str
    resource_id: str | None
    actor: str
    outcome: str = "success"
    severity: str = "info"
    tenant_uuid: str | None = None
    correlation_id: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)  # optional "before" / "after"
    meta: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None  # default: the time it is recorded
    event_id: str | None = None

    def __post_init__(self) -> None:
        """Check the fields; `changes` and `meta` become normalised, masked JSON (what is stored)."""
        if self.event_id is None:
            object.__setattr__(self, "event_id", str(uuid.uuid4()))
        _check_event(self)
        object.__setattr__(self, "changes", mask(_json_value(self.changes, "changes")))
        object.__setattr__(self, "meta", mask(_json_value(self.meta, "meta")))


def _check_text(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise AuditEventError(name, "must be a non-empty string")
    if len(value) > LIMITS[name]:
        raise AuditEventError(name, f"is longer than {LIMITS[name]} characters")
    _check_chars(value, name)


def _check_event(event: AuditEvent) -> None:
    for name in _REQUIRED:
        _check_text(name, getattr(event, name), required=True)
    for name in _OPTIONAL:
        _check_text(name, getattr(event, name), required=False)
    _check_text("event_id", event.event_id, required=True)
    if not _EVENT_ID.fullmatch(str(event.event_id)):
        raise AuditEventError("event_id", "may hold only letters, digits and . _ : -")
    if event.occurred_at is not None and event.occurred_at.tzinfo is None:
        raise AuditEventError("occurred_at", "needs a time zone")
    if not isinstance(event.changes, Mapping):
        raise AuditEventError("changes", "must be an object")
    for key, value in event.changes.items():
        if key not in _CHANGE_KEYS:
            raise AuditEventError(f"changes.{key}", "unknown key (changes holds 'before' and 'after')")
        if value is not None and not isinstance(value, Mapping):
            raise AuditEventError(f"changes.{key}", "must be an object or null")
    if not isinstance(event.meta, Mapping):
        raise AuditEventError("meta", "must be an object")


def rfc3339(moment: datetime) -> str:
    """The canonical timestamp: UTC, microseconds, `Z` (what the hash covers)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _json_number(value: float, path: str) -> float | int:
    if not math.isfinite(value):
        raise AuditEventError(path, "is not a finite number")
    if value == 0:
        return 0.0
    if value.is_integer() and "e" in repr(value):
        return int(value)
    return value


def _json_value(value: Any, path: str) -> Any:
    """`value` as plain JSON data that reads back identically from SQLite and PostgreSQL."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        _check_chars(value, path)
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_number(value, path)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise AuditEventError(path, "is a datetime without a time zone")
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_json_key(k, path): _json_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise AuditEventError(path, f"a {type(value).__name__} is not a JSON value")


def _json_key(key: Any, path: str) -> str:
    name = str(key.value if isinstance(key, Enum) else key)
    _check_chars(name, f"{path} (a key)")
    return name


def _check_chars(text: str, path: str) -> None:
    """Text both stores keep: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    if "\x00" in text:
        raise AuditEventError(path, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditEventError(path, "is not valid Unicode text") from exc


# -- the chain --------------------------------------------------------------------------------------


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The canonical JSON of an event's fields: sorted keys, no whitespace, UTF-8."""
    return _ENCODER.encode(fields)


def chain_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """sha256(prev_hash + canonical JSON), hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(fields)).hexdigest()


def hashed_fields(event: AuditEvent, occurred_at: datetime) -> dict[str, Any]:
    """What is stored and hashed, except `recorded_at`: masked, normalised, canonical timestamps."""
    return {
        "schema": SCHEMA,
        "event_id": event.event_id,
        "occurred_at": rfc3339(occurred_at),
        "tenant_uuid": event.tenant_uuid,
        "correlation_id": event.correlation_id,
        "source": event.source,
        "operation": event.operation,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "outcome": event.outcome,
        "severity": event.severity,
        "actor": event.actor,
        "changes": event.changes,
        "meta": event.meta,
    }


def event_fields(row: StoredEvent) -> dict[str, Any]:
    """The hashed fields of a stored record (everything but seq, prev_hash and hash)."""
    return {
        "schema": SCHEMA,
        "event_id": row.event_id,
        "occurred_at": rfc3339(row.occurred_at),
        "recorded_at": rfc3339(row.recorded_at),
        "tenant_uuid": row.tenant_uuid,
        "correlation_id": row.correlation_id,
        "source": row.source,
        "operation": row.operation,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
        "outcome": row.outcome,
        "severity": row.severity,
        "actor": row.actor,
        "changes": row.changes,
        "meta": row.meta,
    }


@dataclass(frozen=True, slots=True)
class _Entry:
    fields: dict[str, Any]
    occurred_at: datetime
    occurred_given: bool

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])


def _entry(event: AuditEvent, now: datetime) -> _Entry:
    occurred = (event.occurred_at or now).astimezone(UTC)
    return _Entry(hashed_fields(event, occurred), occurred, event.occurred_at is not None)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


_PG_LOCK: Final = text(
    "SELECT current_setting('transaction_isolation')"
    " FROM (SELECT pg_advisory_xact_lock(:lock, hashtext(current_schema()))) AS locked"
).bindparams(lock=_PG_LOCK_CLASS)
# Any write takes SQLite's database write lock; this one touches only the chain's own row.
_SQLITE_LOCK: Final = (
    sqlite_insert(LockRow)
    .values(name=CHAIN_MARKER, owner=None, expires_at=_NEVER)
    .on_conflict_do_update(index_elements=[LockRow.name], set_={"expires_at": _NEVER})
)
_LAST: Final = select(AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)


def _lock_chain(session: Session) -> None:
    """Hold the chain lock until the transaction ends (see the module docstring)."""
    dialect = _dialect(session)
    if dialect == "postgresql":
        level = session.execute(_PG_LOCK).scalar_one()
        if level != "read committed":
            raise AuditError(f"audit events need READ COMMITTED transactions on PostgreSQL, not {level}")
    elif dialect == "sqlite":
        session.execute(_SQLITE_LOCK)
    else:
        raise AuditError(f"the audit trail does not support {dialect} databases")


def read_marker(session: Session, name: str) -> str | None:
    """The value this component keeps in the `locks` row `name` (None when absent)."""
    return session.execute(select(LockRow.owner).where(LockRow.name == name)).scalar_one_or_none()


@cache
def _marker_upsert(dialect: str, only_if_greater: bool) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE of a marker row, built once per dialect."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    value = bindparam("value", type_=LockRow.owner.type)
    stmt = insert(LockRow).values(name=bindparam("name"), owner=value, expires_at=_NEVER)
    where = (LockRow.owner.is_(None) | (LockRow.owner < value)) if only_if_greater else None
    return stmt.on_conflict_do_update(index_elements=[LockRow.name], set_={"owner": value}, where=where)


def write_marker(session: Session, name: str, value: str, *, only_if_greater: bool = False) -> None:
    """Set the `locks` row `name` to `value`; with `only_if_greater`, never move it backwards."""
    session.execute(_marker_upsert(_dialect(session), only_if_greater), {"name": name, "value": value})


def _link(value: str | None) -> tuple[int, str] | None:
    """A `"<seq>:<hash>"` marker value."""
    if not value or ":" not in value:
        return None
    seq, _, digest = value.partition(":")
    return (int(seq), digest) if seq.isdigit() else None


def _last_hash(session: Session) -> str:
    last = session.execute(_LAST).scalar_one_or_none()
    if last is not None:
        return last
    head = _link(read_marker(session, CHAIN_MARKER))  # everything pruned: continue from the last record
    return head[1] if head else GENESIS


def _new_row(entry: _Entry, now: datetime, prev_hash: str, digest: str) -> AuditEventRow:
    f = entry.fields
    return AuditEventRow(
        event_id=f["event_id"],
        occurred_at=entry.occurred_at,
        recorded_at=now,
        tenant_uuid=f["tenant_uuid"],
        correlation_id=f["correlation_id"],
        source=f["source"],
        operation=f["operation"],
        resource_type=f["resource_type"],
        resource_id=f["resource_id"],
        outcome=f["outcome"],
        severity=f["severity"],
        actor=f["actor"],
        changes=f["changes"],
        meta=f["meta"],
        prev_hash=prev_hash,
        hash=digest,
    )


def _same_event(row: AuditEventRow, entry: _Entry) -> bool:
    """Whether a retry carries the event already recorded (occurred_at only when the retry gives one)."""
    ignored = {"recorded_at"} if entry.occurred_given else {"recorded_at", "occurred_at"}
    stored = {k: v for k, v in event_fields(row).items() if k not in ignored}
    retried = {k: v for k, v in entry.fields.items() if k not in ignored}
    return canonical(stored) == canonical(retried)


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event's record, and whether this call created it (False: the id was already recorded)."""

    row: AuditEventRow
    created: bool


def ingest(session: Session, events: Sequence[AuditEvent], now: datetime) -> list[Recorded]:
    """Append events in order in the caller's transaction, idempotently by event id.

    An event id already recorded with the same content gives the existing record
    (`created=False`); with different content it is an EventConflictError.
    """
    entries = [_entry(event, now) for event in events]
    if not entries:
        return []
    _lock_chain(session)
    ids = {entry.event_id for entry in entries}
    known = {
        row.event_id: row
        for row in session.execute(select(AuditEventRow).where(AuditEventRow.event_id.in_(ids))).scalars()
    }
    prev_hash = _last_hash(session)
    results: list[Recorded] = []
    fresh: list[AuditEventRow] = []
    for entry in entries:
        found = known.get(entry.event_id)
        if found is not None:
            if not _same_event(found, entry):
                raise EventConflictError(entry.event_id, found.seq)
            results.append(Recorded(found, created=False))
            continue
        digest = chain_hash(prev_hash, {**entry.fields, "recorded_at": rfc3339(now)})
        row = known[entry.event_id] = _new_row(entry, now, prev_hash, digest)
        fresh.append(row)
        results.append(Recorded(row, created=True))
        prev_hash = digest
    if fresh:
        _insert(session, fresh)
    return results


def _insert(session: Session, rows: list[AuditEventRow]) -> None:
    session.add_all(rows)
    session.flush()
    seqs = [row.seq for row in rows]
    if seqs != sorted(seqs):  # the chain order must be the seq order; never expected, checked anyway
        raise AuditError(f"the store numbered a batch of audit events out of order: {seqs}")
    write_marker(session, CHAIN_MARKER, f"{rows[-1].seq}:{rows[-1].hash}")


def record(session: Session, event: AuditEvent, now: datetime) -> AuditEventRow:
    """Append one event in the caller's transaction (flushes, never commits); idempotent by event id."""
    return ingest(session, [event], now)[0].row


def record_many(session: Session, events: Sequence[AuditEvent], now: datetime) -> list[AuditEventRow]:
    """Append a batch under one chain lock, chained in the given order."""
    return [recorded.row for recorded in ingest(session, events, now)]


# -- verification -----------------------------------------------------------------------------------

PARALLEL_FROM: Final = 500_000  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify`: how many records were checked and the first bad one, if any."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None
    last_seq: int | None = None


_PAGE_SQL: Final = (
    "SELECT seq, event_id, occurred_at, recorded_at, tenant_uuid, correlation_id, source, operation,"
    " resource_type, resource_id, outcome, severity, actor, CAST(changes AS TEXT), CAST(meta AS TEXT),"
    " prev_hash, hash FROM audit_events WHERE seq > :after AND seq <= :upto ORDER BY seq"
)
_PAGE: Final = text(_PAGE_SQL)
_NEXT_SEQ: Final = select(func.min(AuditEventRow.seq)).where(AuditEventRow.seq > bindparam("after"))
_SEQ, _EVENT, _PREV, _HASH = 0, 1, 15, 16  # positions in a `_PAGE` row


def _next_seq(session: Session, after: int) -> int | None:
    """The first seq after `after` (to jump over a gap in the numbering)."""
    found = session.execute(_NEXT_SEQ, {"after": after}).scalar_one_or_none()
    return None if found is None else int(found)


def _pages(session: Session, batch: int, after: int, until: int) -> Generator[Sequence[Raw]]:
    """The records after..until in seq order, in windows of `batch` seq numbers (constant memory).

    Windows of seq numbers, not LIMITed keyset pages: each query's cost is bounded by its window
    whatever plan the database picks, even on a freshly loaded table without statistics (where
    PostgreSQL sorts everything after the cursor for every page). Gaps are jumped over. Rows
    come through the driver's own cursor: plain tuples cost half of what result rows do here.
    """
    connection = session.connection()
    driver = connection.connection.dbapi_connection
    if driver is None:
        raise AuditError("no database connection to read the audit trail from")
    query = _page_query(connection.dialect.name)
    cursor = driver.cursor()
    try:
        while after < until:
            upto = min(until, after + batch)
            cursor.execute(query, (after, upto))
            rows: Sequence[Raw] = cursor.fetchall()
            if rows:
                yield rows
                after = upto
                continue
            following = _next_seq(session, upto)
            if following is None:
                return
            after = following - 1
    finally:
        cursor.close()


# PostgreSQL formats the timestamps canonically cheaper than the driver parses them; on SQLite
# (text 'YYYY-MM-DD HH:MM:SS.ffffff', naive UTC, as SQLAlchemy writes it) Python is the cheaper.
_STAMPS: Final = {"postgresql": "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"}


@cache
def _page_query(dialect: str) -> str:
    """`_PAGE_SQL` in the driver's parameter style, the store formatting the timestamps."""
    mark = "%s" if dialect == "postgresql" else "?"
    query = _PAGE_SQL.replace(":after", mark).replace(":upto", mark)
    stamp = _STAMPS.get(dialect)
    if stamp is None:
        return query
    return query.replace(
        "occurred_at, recorded_at", f"{stamp.format('occurred_at')}, {stamp.format('recorded_at')}", 1
    )


def _stamp(value: datetime | str) -> str:
    """A stored timestamp as `rfc3339`; text that does not parse stays as it is (and fails the hash)."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if len(value) == 26 and value[10] == " ":
        return f"{value[:10]}T{value[11:]}Z"
    if len(value) == 27 and value[10] == "T" and value[26] == "Z":
        return value
    try:
        return rfc3339(datetime.fromisoformat(value.removesuffix("Z")))
    except ValueError:
        return value


def _digest(row: Raw) -> str:
    """Recompute a page row's hash from its stored content and prev_hash (the hot loop of verify).

    Raises (msgspec.DecodeError, UnicodeError, TypeError, ...) on values no writer stores.
    """
    occurred, recorded = row[2], row[3]
    fields = {
        "schema": SCHEMA,
        "event_id": row[1],
        "occurred_at": f"{occurred[:10]}T{occurred[11:]}Z" if _sqlite_stamp(occurred) else _stamp(occurred),
        "recorded_at": f"{recorded[:10]}T{recorded[11:]}Z" if _sqlite_stamp(recorded) else _stamp(recorded),
        "tenant_uuid": row[4],
        "correlation_id": row[5],
        "source": row[6],
        "operation": row[7],
        "resource_type": row[8],
        "resource_id": row[9],
        "outcome": row[10],
        "severity": row[11],
        "actor": row[12],
        "changes": _DECODER.decode(row[13]),
        "meta": _DECODER.decode(row[14]),
    }
    return hashlib.sha256(row[_PREV].encode("ascii") + _ENCODER.encode(fields)).hexdigest()


def _sqlite_stamp(value: object) -> bool:
    """Whether `value` is SQLAlchemy's SQLite text for a naive UTC time ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    return type(value) is str and len(value) == 26 and value[10] == " "


@dataclass
class _Walk:
    """A walk along the chain: the record before the next one, and the head it must reach.

    `start_hash` is what the first record must link to; None accepts any (a range check, whose
    link to the range before it is checked by the caller through `first_prev_hash`).
    """

    start_hash: str | None
    head: tuple[int, str] | None
    checked: int = 0
    prev: Raw | None = None
    first_prev_hash: str | None = None

    def run(self, session: Session, batch: int, until: int, after: int = 0) -> tuple[Raw, str] | None:
        """Walk on to `until` (from `after`, or the last record walked); the first bad record and why."""
        if self.prev is not None:
            after = self.prev[_SEQ]
        with closing(_pages(session, batch, after, until)) as pages:
            for page in pages:
                found = self._walk_page(page)
                if found is not None:
                    return found
        return None

    def _walk_page(self, page: Sequence[Raw]) -> tuple[Raw, str] | None:
        """The hot loop: link, content and head checks of every record of a page."""
        if self.prev is None:
            self.first_prev_hash = page[0][_PREV]
        expected = self.prev[_HASH] if self.prev is not None else self.start_hash
        head_seq, head_hash = self.head if self.head is not None else (None, None)
        digest = _digest
        row = page[0]
        try:
            for row in page:
                if expected is not None and row[_PREV] != expected:
                    return row, "link"
                if digest(row) != row[_HASH]:
                    return row, "content"
                if row[_SEQ] == head_seq and row[_HASH] != head_hash:
                    return row, "head"
                self.prev, self.checked, expected = row, self.checked + 1, row[_HASH]
        except Exception:  # noqa: BLE001 - a stored value no writer produces: the record was modified
            return row, "content"
        return None


def _start_hash(session: Session) -> str:
    checkpoint = _link(read_marker(session, CHECKPOINT_MARKER))
    return checkpoint[1] if checkpoint else GENESIS


def verify(session: Session, *, batch: int = 50_000, workers: int | None = None) -> VerifyResult:
    """Check the whole chain; the first modified, deleted, inserted or moved record, if any.

    Every record's hash is recomputed and its prev_hash compared with the record before it, in
    seq order (gaps in seq are fine: PostgreSQL skips numbers on rollback). The chain must start
    at the genesis hash or the pruning checkpoint and reach the head marker. Large chains are
    split by seq range over `workers` processes (default: one per idle CPU, at most 4, from
    PARALLEL_FROM records on); a failure is then located by walking on from the last good range.
    """
    head = _link(read_marker(session, CHAIN_MARKER))
    walk = _Walk(_start_hash(session), head)
    low, high = session.execute(select(func.min(AuditEventRow.seq), func.max(AuditEventRow.seq))).one()
    if low is None:
        return _finish(session, walk)
    ranges = _ranges(int(low), int(high), _workers(workers, int(high) - int(low) + 1))
    url = _shareable_url(session)
    if len(ranges) > 1 and url is not None:
        _verify_ranges(session, walk, url, ranges, batch)
    found = walk.run(session, batch, int(high), after=int(low) - 1)
    return _broken(session, walk, *found) if found else _finish(session, walk)


def _workers(asked: int | None, size: int) -> int:
    """Processes for `size` records: those asked for, else one per idle CPU (at most 4).

    A CPU busy with other work makes a second process slower than one: the 1-minute load
    average (which counts this process) tells how many are idle.
    """
    if asked is not None:
        return max(1, asked)
    if size < PARALLEL_FROM:
        return 1
    cpus = os.cpu_count() or 1
    idle = cpus - os.getloadavg()[0] + 1
    return max(1, min(4, cpus, int(idle)))


def _ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive seq ranges (after, until] covering low..high."""
    step = max(1, -(-(high - low + 1) // parts))
    return [(start - 1, min(high, start + step - 1)) for start in range(low, high + 1, step)]


def _shareable_url(session: Session) -> str | None:
    """The database URL other processes can open (None for an in-memory SQLite database)."""
    url = session.get_bind().engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class _RangeCheck:
    """One seq range checked on its own: its ends, and whether everything inside it is good."""

    first_prev_hash: str | None
    last: tuple[int, str] | None
    checked: int
    good: bool


def _check_range(
    session: Session, after: int, until: int, batch: int, head: tuple[int, str] | None
) -> _RangeCheck:
    walk = _Walk(None, head)
    found = walk.run(session, batch, until, after)
    last = (int(walk.prev[_SEQ]), str(walk.prev[_HASH])) if walk.prev is not None else None
    return _RangeCheck(walk.first_prev_hash, last, walk.checked, good=found is None)


_WORKER: Final = "from powerx_governance.audit.service import range_worker; range_worker()"


def range_worker() -> None:
    """The entry point of a verify worker process: one JSON request on stdin, one answer on stdout."""
    request = json.loads(sys.stdin.readline())
    head = (int(request["head"][0]), str(request["head"][1])) if request["head"] else None
    engine = make_engine(request["url"])
    try:
        with session_factory(engine)() as session:
            check = _check_range(session, request["after"], request["until"], request["batch"], head)
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(dataclasses.asdict(check)))


def _start_worker(url: str, after: int, until: int, batch: int, head: tuple[int, str] | None) -> Popen[str]:
    """A worker process checking after..until; the URL goes through a pipe, never the command line."""
    worker = Popen(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-c", _WORKER], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True
    )
    request = {"url": url, "after": after, "until": until, "batch": batch, "head": head}
    if worker.stdin is not None:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
    return worker


def _worker_result(worker: Popen[str]) -> _RangeCheck:
    """A worker's answer; a worker that failed counts as a bad range (walked again in this process)."""
    out, err = worker.communicate()
    if worker.returncode != 0:
        log.warning("audit verify worker failed; its range is walked here", extra={"error": err[-2000:]})
        return _RangeCheck(None, None, 0, good=False)
    answer = json.loads(out)
    last = (int(answer["last"][0]), str(answer["last"][1])) if answer["last"] else None
    return _RangeCheck(answer["first_prev_hash"], last, int(answer["checked"]), bool(answer["good"]))


def _verify_ranges(
    session: Session, walk: _Walk, url: str, ranges: list[tuple[int, int]], batch: int
) -> None:
    """Check the ranges in parallel and move `walk` past every range that links up and is good."""
    workers = [_start_worker(url, after, until, batch, walk.head) for after, until in ranges[1:]]
    try:
        checks = [_check_range(session, *ranges[0], batch, walk.head)]
        checks += [_worker_result(worker) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:  # only when this process failed first
                worker.kill()
                worker.communicate()
    expected, good_until = walk.start_hash, None
    for check in checks:
        if not check.good or (check.last is not None and check.first_prev_hash != expected):
            break
        if check.last is not None:
            walk.checked += check.checked
            expected, good_until = check.last[1], check.last[0]
    if good_until is not None:
        walk.prev = session.execute(_PAGE, {"after": good_until - 1, "upto": good_until}).one()


def _finish(session: Session, walk: _Walk) -> VerifyResult:
    """A walk that found no bad record must also end where the audit writers last wrote.

    The head marker read before the walk must be reached (else the newest records were deleted);
    re-read after it, it must not be behind the walk's last record (else records were appended
    without the audit writer, which always moves the marker in the same transaction).
    """
    last = int(walk.prev[_SEQ]) if walk.prev is not None else None
    head = walk.head
    if head is not None and (last is None or last < head[0]):
        end = "nothing" if last is None else f"seq {last}"
        problem = (
            f"seq {head[0]}, the newest record written, is missing: the chain ends at {end}"
            " (records were deleted)"
        )
        return VerifyResult(False, walk.checked, head[0], None, problem, last)
    if last is None:
        return VerifyResult(True, 0)
    written = _link(read_marker(session, CHAIN_MARKER))
    if written is None:
        problem = "the chain head marker (locks row audit-chain) is missing: it was deleted"
        return VerifyResult(False, walk.checked, None, None, problem, last)
    if last > written[0]:
        return _appended(session, walk, written[0], last)
    return VerifyResult(True, walk.checked, last_seq=last)


def _appended(session: Session, walk: _Walk, written: int, last: int) -> VerifyResult:
    first = session.execute(
        select(AuditEventRow.seq, AuditEventRow.event_id)
        .where(AuditEventRow.seq > written)
        .order_by(AuditEventRow.seq)
        .limit(1)
    ).one()
    extra = session.execute(
        select(func.count()).where(AuditEventRow.seq > written, AuditEventRow.seq <= last)
    ).scalar_one()
    problem = (
        f"seq {first[0]}: appended after seq {written}, the newest record the audit writer wrote"
        " (inserted outside the audit trail)"
    )
    return VerifyResult(False, walk.checked - int(extra), int(first[0]), str(first[1]), problem, last)


def _broken(session: Session, walk: _Walk, row: Raw, kind: str) -> VerifyResult:
    seq, event_id = int(row[_SEQ]), str(row[_EVENT])
    last = int(walk.prev[_SEQ]) if walk.prev is not None else None
    if kind == "content":
        problem = f"seq {seq}: its content does not match its hash (the record was modified)"
    elif kind == "head":
        problem = (
            f"seq {seq}: its hash differs from the chain head marker "
            "(the newest records were rewritten with recomputed hashes)"
        )
    else:
        diagnosed = _diagnose_link(session, row, walk.prev)
        if diagnosed is not None:
            seq, event_id, problem = diagnosed
        else:
            problem = _missing_link(row, walk.prev)
    return VerifyResult(False, walk.checked, seq, event_id, problem, last)


def _missing_link(row: Raw, prev: Raw | None) -> str:
    if prev is None:
        return (
            f"seq {row[_SEQ]}: the chain does not start here (its prev_hash is neither the genesis hash"
            " nor the pruning checkpoint): the records before it were deleted"
        )
    gap = f"; seq jumps from {prev[_SEQ]} to {row[_SEQ]}" if row[_SEQ] - prev[_SEQ] > 1 else ""
    return (
        f"seq {row[_SEQ]}: its prev_hash does not match the hash of seq {prev[_SEQ]}: the record it was"
        f" chained to was deleted, or seq {prev[_SEQ]} was modified with a recomputed hash{gap}"
    )


def _diagnose_link(session: Session, row: Raw, prev: Raw | None) -> tuple[int, str, str] | None:
    """(seq, event id, problem) when the record `row` links to is still there; None when it is gone."""
    target = session.execute(
        select(AuditEventRow.seq).where(AuditEventRow.hash == row[_PREV]).order_by(AuditEventRow.seq).limit(1)
    ).scalar_one_or_none()
    if target is None or target == row[_SEQ]:
        return None
    if target > row[_SEQ]:
        return (
            int(row[_SEQ]),
            str(row[_EVENT]),
            f"seq {row[_SEQ]}: it is chained after seq {target}, which comes later: the records were"
            " reordered",
        )
    first = session.execute(
        select(AuditEventRow.seq, AuditEventRow.event_id)
        .where(AuditEventRow.seq > target)
        .order_by(AuditEventRow.seq)
        .limit(1)
    ).one()
    inserted = (
        f"seq {first[0]}" if prev is None or first[0] == prev[_SEQ] else f"seq {first[0]}..{prev[_SEQ]}"
    )
    return (
        int(first[0]),
        str(first[1]),
        f"{inserted}: not part of the chain (inserted): seq {row[_SEQ]} is chained directly after"
        f" seq {target}",
    )


# -- export and queries -----------------------------------------------------------------------------

ExportFormat = Literal["jsonl", "csv"]


def record_view(row: StoredEvent) -> dict[str, Any]:
    """A stored record in PowerX's audit field names (API answers and exports)."""
    fields = {k: v for k, v in event_fields(row).items() if k != "schema"}
    return {"seq": row.seq, **fields, "prev_hash": row.prev_hash, "hash": row.hash}


def _in_range(
    session: Session, start: datetime, end: datetime, tenant_uuid: str | None, batch: int
) -> Iterator[StoredEvent]:
    """The matching records in seq order, read in windows of `batch` seq numbers (see `_pages`)."""
    wanted = [AuditEventRow.occurred_at >= start, AuditEventRow.occurred_at < end]
    if tenant_uuid is not None:
        wanted.append(AuditEventRow.tenant_uuid == tenant_uuid)
    low, high = session.execute(
        select(func.min(AuditEventRow.seq), func.max(AuditEventRow.seq)).where(*wanted)
    ).one()
    if low is None:
        return
    page = select(*AuditEventRow.__table__.columns).where(*wanted).order_by(AuditEventRow.seq)
    after = int(low) - 1
    while after < high:
        upto = min(int(high), after + batch)
        rows = session.execute(page.where(AuditEventRow.seq > after, AuditEventRow.seq <= upto)).all()
        yield from rows
        following = upto if rows else _next_seq(session, upto)
        after = upto if following is None else max(upto, following - 1)


def _json_line(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return neutralise(str(value))


def _csv_line(cells: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def export(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    tenant_uuid: str | None = None,
    fmt: ExportFormat = "jsonl",
    batch: int = 5_000,
) -> Iterator[str]:
    """Records with start <= occurred_at < end (of one tenant), in seq order, as lines (with newline).

    CSV has a header row and CRLF line ends (write it to a file opened with newline=""); cells
    a spreadsheet would run as a formula are prefixed with a single quote.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (jsonl or csv)")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("export needs time-zone aware start and end times")
    render: Callable[[dict[str, Any]], str] = (
        _json_line if fmt == "jsonl" else lambda view: _csv_line([_csv_cell(view[f]) for f in EXPORT_FIELDS])
    )
    if fmt == "csv":
        yield _csv_line(EXPORT_FIELDS)
    for row in _in_range(session, start, end, tenant_uuid, batch):
        yield render(record_view(row))


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


# -- retention --------------------------------------------------------------------------------------


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
    _lock_chain(session)
    last = _last_prunable(session, before)
    if last is None:
        return PruneResult(0, None, None)
    walk = _Walk(_start_hash(session), None)
    found = walk.run(session, 50_000, last[0])
    if found is not None:
        raise ChainBrokenError(_broken(session, walk, *found))
    pruned = session.execute(delete(AuditEventRow).where(AuditEventRow.seq <= last[0])).rowcount  # type: ignore[attr-defined]
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

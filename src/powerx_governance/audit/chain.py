"""The hash chain and its writers: canonical JSON, the chain lock, the marker rows, `record`.

See `audit.service` for the chain's definition and the writers' locking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, cast

import msgspec
from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from powerx_governance.audit.model import AuditError, AuditEvent, EventConflictError, StoredEvent, rfc3339
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.db.locks import LockRow

GENESIS: Final = "0" * 64
SCHEMA: Final = "powerx.audit-event/v1"
CHAIN_MARKER: Final = "audit-chain"
CHECKPOINT_MARKER: Final = "audit-pruned"
_PG_LOCK_CLASS: Final = 0x41554454  # "AUDT"; the second key is the schema, one chain per schema
_NEVER: Final = datetime(9999, 12, 31, tzinfo=UTC)  # the marker rows are never free for a lease
ENCODER: Final = msgspec.json.Encoder(order="sorted")


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The canonical JSON of an event's fields: sorted keys, no whitespace, UTF-8."""
    return ENCODER.encode(fields)


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
    hashed: bytes  # the canonical JSON the chain hash covers, encoded before the chain lock is taken

    @property
    def event_id(self) -> str:
        return str(self.fields["event_id"])


def _entry(event: AuditEvent, now: datetime) -> _Entry:
    occurred = (event.occurred_at or now).astimezone(UTC)
    fields = hashed_fields(event, occurred)
    hashed = canonical({**fields, "recorded_at": rfc3339(now)})
    return _Entry(fields, occurred, event.occurred_at is not None, hashed)


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


def lock_chain(session: Session) -> None:
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


def marker_link(value: str | None) -> tuple[int, str] | None:
    """A `"<seq>:<hash>"` marker value."""
    if not value or ":" not in value:
        return None
    seq, _, digest = value.partition(":")
    return (int(seq), digest) if seq.isdigit() else None


def _last_hash(session: Session) -> str:
    last = session.execute(_LAST).scalar_one_or_none()
    if last is not None:
        return last
    head = marker_link(read_marker(session, CHAIN_MARKER))  # everything pruned: continue from the last record
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


def ingest(
    session: Session, events: Sequence[AuditEvent], now: datetime, *, drawn_ids: bool = False
) -> list[Recorded]:
    """Append events in order in the caller's transaction, idempotently by event id.

    An event id already recorded with the same content gives the existing record
    (`created=False`); with different content it is an EventConflictError. `drawn_ids`: the events'
    ids were drawn just now (`AuditEvent`'s uuid4), so no record holds them and none is looked up
    (a collision would still fail on the unique event id).
    """
    entries = [_entry(event, now) for event in events]
    if not entries:
        return []
    lock_chain(session)
    known = {} if drawn_ids else _recorded(session, {entry.event_id for entry in entries})
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
        digest = hashlib.sha256(prev_hash.encode("ascii") + entry.hashed).hexdigest()  # = chain_hash
        row = known[entry.event_id] = _new_row(entry, now, prev_hash, digest)
        fresh.append(row)
        results.append(Recorded(row, created=True))
        prev_hash = digest
    if fresh:
        _insert(session, fresh)
    return results


def _recorded(session: Session, event_ids: set[str]) -> dict[str, AuditEventRow]:
    """The records of these event ids, by id."""
    found = session.execute(select(AuditEventRow).where(AuditEventRow.event_id.in_(event_ids))).scalars()
    return {row.event_id: row for row in found}


# The batch in one statement: the ORM's unit of work sent one INSERT per row (SQLite cannot tell it
# which returned seq is whose), so each row's seq comes back here with its event id instead.
_TABLE: Final = cast("Table", AuditEventRow.__table__)
_COLUMNS: Final = tuple(c.key for c in _TABLE.columns if c.key != "seq")
_INSERT: Final = insert(_TABLE).returning(_TABLE.c.event_id, _TABLE.c.seq)


def _insert(session: Session, rows: list[AuditEventRow]) -> None:
    values = [{name: getattr(row, name) for name in _COLUMNS} for row in rows]
    seq_of: dict[str, int] = dict(session.execute(_INSERT, values).all())
    for row in rows:
        row.seq = seq_of[row.event_id]
    seqs = [row.seq for row in rows]
    if seqs != sorted(seqs):  # the chain order must be the seq order; never expected, checked anyway
        raise AuditError(f"the store numbered a batch of audit events out of order: {seqs}")
    write_marker(session, CHAIN_MARKER, f"{rows[-1].seq}:{rows[-1].hash}")


def record(session: Session, event: AuditEvent, now: datetime) -> AuditEventRow:
    """Append one event in the caller's transaction (flushes, never commits); idempotent by event id."""
    return ingest(session, [event], now)[0].row


def record_many(
    session: Session, events: Sequence[AuditEvent], now: datetime, *, drawn_ids: bool = False
) -> list[AuditEventRow]:
    """Append a batch under one chain lock, chained in the given order (`drawn_ids`: see `ingest`)."""
    return [recorded.row for recorded in ingest(session, events, now, drawn_ids=drawn_ids)]

"""Walking the stored chain in seq order: windows of records, recomputed hashes, link checks."""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

import msgspec
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from powerx_governance.audit.chain import (
    CHECKPOINT_MARKER,
    ENCODER,
    GENESIS,
    SCHEMA,
    marker_link,
    read_marker,
)
from powerx_governance.audit.model import AuditError, rfc3339
from powerx_governance.audit.tables import AuditEventRow

_DECODER: Final = msgspec.json.Decoder()


Raw = Sequence[Any]
"""A row of `PAGE`: the stored values as the driver returns them, in its column order."""


_PAGE_SQL: Final = (
    "SELECT seq, event_id, occurred_at, recorded_at, tenant_uuid, correlation_id, source, operation,"
    " resource_type, resource_id, outcome, severity, actor, CAST(changes AS TEXT), CAST(meta AS TEXT),"
    " prev_hash, hash FROM audit_events WHERE seq > :after AND seq <= :upto ORDER BY seq"
)
PAGE: Final = text(_PAGE_SQL)
_NEXT_SEQ: Final = select(func.min(AuditEventRow.seq)).where(AuditEventRow.seq > bindparam("after"))
SEQ, EVENT, PREV, HASH = 0, 1, 15, 16  # positions in a `PAGE` row


def next_seq(session: Session, after: int) -> int | None:
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
            following = next_seq(session, upto)
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
    return hashlib.sha256(row[PREV].encode("ascii") + ENCODER.encode(fields)).hexdigest()


def _sqlite_stamp(value: object) -> bool:
    """Whether `value` is SQLAlchemy's SQLite text for a naive UTC time ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    return type(value) is str and len(value) == 26 and value[10] == " "


@dataclass
class Walk:
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
            after = self.prev[SEQ]
        with closing(_pages(session, batch, after, until)) as pages:
            for page in pages:
                found = self._walk_page(page)
                if found is not None:
                    return found
        return None

    def _walk_page(self, page: Sequence[Raw]) -> tuple[Raw, str] | None:
        """The hot loop: link, content and head checks of every record of a page."""
        if self.prev is None:
            self.first_prev_hash = page[0][PREV]
        expected = self.prev[HASH] if self.prev is not None else self.start_hash
        head_seq, head_hash = self.head if self.head is not None else (None, None)
        digest = _digest
        row = page[0]
        try:
            for row in page:
                if expected is not None and row[PREV] != expected:
                    return row, "link"
                if digest(row) != row[HASH]:
                    return row, "content"
                if row[SEQ] == head_seq and row[HASH] != head_hash:
                    return row, "head"
                self.prev, self.checked, expected = row, self.checked + 1, row[HASH]
        except Exception:  # noqa: BLE001 - a stored value no writer produces: the record was modified
            return row, "content"
        return None


def start_hash(session: Session) -> str:
    checkpoint = marker_link(read_marker(session, CHECKPOINT_MARKER))
    return checkpoint[1] if checkpoint else GENESIS

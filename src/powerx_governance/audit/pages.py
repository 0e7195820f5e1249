"""The stored chain read through the bare database driver, page by page, and checked row by row.

No SQLAlchemy here: `verify`'s worker processes import this module, msgspec and the driver
only, so each starts in a fraction of the time the service takes. `walk` gives the same walk
to callers that hold a session.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

import msgspec

from powerx_governance.audit.model import AuditError, rfc3339

Raw = Sequence[Any]
"""A row of a page: the stored values as the driver returns them, in `PAGE_SQL`'s column order."""

PAGE_SQL: Final = (
    "SELECT seq, event_id, occurred_at, recorded_at, tenant_uuid, correlation_id, source, operation,"
    " resource_type, resource_id, outcome, severity, actor, CAST(changes AS TEXT), CAST(meta AS TEXT),"
    " prev_hash, hash FROM audit_events WHERE seq > :after AND seq <= :upto ORDER BY seq"
)
_NEXT_SQL: Final = "SELECT MIN(seq) FROM audit_events WHERE seq > :after"
SEQ, EVENT, PREV, HASH = 0, 1, 15, 16  # positions in a page row

# PostgreSQL formats the timestamps canonically cheaper than the driver parses them; on SQLite
# (text 'YYYY-MM-DD HH:MM:SS.ffffff', naive UTC, as SQLAlchemy writes it) Python is the cheaper.
_STAMPS: Final = {"postgresql": "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"}


def page_sql(dialect: str) -> str:
    """`PAGE_SQL` with named parameters, the store formatting the timestamps where it is cheaper."""
    stamp = _STAMPS.get(dialect)
    if stamp is None:
        return PAGE_SQL
    return PAGE_SQL.replace(
        "occurred_at, recorded_at", f"{stamp.format('occurred_at')}, {stamp.format('recorded_at')}", 1
    )


@cache
def _driver_sql(dialect: str, sql: str) -> str:
    """`sql` in the driver's parameter style (positional: `after`, then `upto`)."""
    mark = "%s" if dialect == "postgresql" else "?"
    return sql.replace(":after", mark).replace(":upto", mark)


def read_pages(cursor: Any, dialect: str, batch: int, after: int, until: int) -> Generator[Sequence[Raw]]:
    """The records after..until in seq order through a driver cursor, in windows of `batch` seq numbers.

    Windows of seq numbers, not LIMITed keyset pages: each query's cost is bounded by its window
    whatever plan the database picks, even on a freshly loaded table without statistics (where
    PostgreSQL sorts everything after the cursor for every page). Gaps are jumped over. Rows
    stay the driver's plain tuples: result rows of a library cost twice as much here.
    """
    query = _driver_sql(dialect, page_sql(dialect))
    following_query = _driver_sql(dialect, _NEXT_SQL)
    while after < until:
        upto = min(until, after + batch)
        cursor.execute(query, (after, upto))
        rows: Sequence[Raw] = cursor.fetchall()
        if rows:
            yield rows
            after = upto
            continue
        cursor.execute(following_query, (upto,))
        following = cursor.fetchone()[0]
        if following is None:
            return
        after = int(following) - 1


class _Hashed(msgspec.Struct, gc=False):
    """The hashed fields of a record, declared in sorted key order: its JSON is byte for byte the
    canonical JSON of the same fields as a dict (`chain.canonical`), and cheaper to build."""

    actor: Any
    changes: Any
    correlation_id: Any
    event_id: Any
    meta: Any
    occurred_at: Any
    operation: Any
    outcome: Any
    recorded_at: Any
    resource_id: Any
    resource_type: Any
    schema: Any
    severity: Any
    source: Any
    tenant_uuid: Any


_ENCODER: Final = msgspec.json.Encoder(order="sorted")  # as `chain.ENCODER`
_DECODE: Final = msgspec.json.Decoder().decode


def stamp(value: datetime | str) -> str:
    """A stored timestamp as `rfc3339`; text that does not parse stays as it is (and fails the hash)."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if len(value) == 26 and value[10] == " ":  # SQLAlchemy's SQLite text for a naive UTC time
        return f"{value[:10]}T{value[11:]}Z"
    if len(value) == 27 and value[10] == "T" and value[26] == "Z":
        return value
    try:
        return rfc3339(datetime.fromisoformat(value.removesuffix("Z")))
    except ValueError:
        return value


def canonical_row(row: Raw, schema: str) -> bytes:
    """The canonical JSON a page row's hash covers, from its stored content.

    Raises (msgspec.DecodeError, UnicodeError, TypeError, ...) on values no writer stores.
    """
    (_, event_id, occurred, recorded, tenant, correlation, source, operation, resource_type) = row[:9]
    (resource_id, outcome, severity, actor, changes, meta) = row[9:15]
    fields = _Hashed(
        actor,
        _DECODE(changes),
        correlation,
        event_id,
        _DECODE(meta),
        stamp(occurred),
        operation,
        outcome,
        stamp(recorded),
        resource_id,
        resource_type,
        schema,
        severity,
        source,
        tenant,
    )
    return _ENCODER.encode(fields)


def row_hash(row: Raw, schema: str) -> str:
    """A page row's hash recomputed from its stored content and prev_hash."""
    return hashlib.sha256(row[PREV].encode("ascii") + canonical_row(row, schema)).hexdigest()


@dataclass
class ChainWalk:
    """A walk along the chain: the record before the next one, and the head it must reach.

    `start_hash` is what the first record must link to; None accepts any (a range check, whose
    link to the range before it is checked by the caller through `first_prev_hash`). `schema`
    is the event schema the hashes cover (`chain.SCHEMA`).
    """

    start_hash: str | None
    head: tuple[int, str] | None
    schema: str
    checked: int = 0
    prev: Raw | None = None
    first_prev_hash: str | None = None

    def follow(self, pages: Generator[Sequence[Raw]]) -> tuple[Raw, str] | None:
        """Walk on through `pages`; the first bad record and why ("link", "content" or "head")."""
        with closing(pages):
            for page in pages:
                found = self._page(page)
                if found is not None:
                    return found
        return None

    def follow_driver(
        self, cursor: Any, dialect: str, batch: int, until: int, after: int
    ) -> tuple[Raw, str] | None:
        """Walk on to `until` (from `after`, or the last record walked) through a driver cursor."""
        if self.prev is not None:
            after = int(self.prev[SEQ])
        return self.follow(read_pages(cursor, dialect, batch, after, until))

    def _page(self, page: Sequence[Raw]) -> tuple[Raw, str] | None:
        """The hot loop: link, content and head checks of every record of a page.

        `canonical_row` and `stamp` inlined for the common shapes: this loop is most of verify's time.
        """
        if self.prev is None:
            self.first_prev_hash = page[0][PREV]
        expected = self.prev[HASH] if self.prev is not None else self.start_hash
        head_seq, head_hash = self.head if self.head is not None else (None, None)
        sha256, encode, decode, hashed = hashlib.sha256, _ENCODER.encode, _DECODE, _Hashed
        schema = self.schema
        row, checked = page[0], self.checked
        try:
            for row in page:
                (
                    seq, event_id, occurred, recorded, tenant, correlation, source, operation,
                    resource_type, resource_id, outcome, severity, actor, changes, meta, prev, digest,
                ) = row  # fmt: skip
                if expected is not None and prev != expected:
                    return self._stop(row, checked, "link")
                if type(occurred) is str and len(occurred) == 26 and occurred[10] == " ":
                    occurred = f"{occurred[:10]}T{occurred[11:]}Z"
                else:
                    occurred = stamp(occurred)
                if type(recorded) is str and len(recorded) == 26 and recorded[10] == " ":
                    recorded = f"{recorded[:10]}T{recorded[11:]}Z"
                else:
                    recorded = stamp(recorded)
                fields = hashed(
                    actor, decode(changes), correlation, event_id, decode(meta), occurred, operation,
                    outcome, recorded, resource_id, resource_type, schema, severity, source, tenant,
                )  # fmt: skip
                if sha256(prev.encode("ascii") + encode(fields)).hexdigest() != digest:
                    return self._stop(row, checked, "content")
                if seq == head_seq and digest != head_hash:
                    return self._stop(row, checked, "head")
                self.prev, checked, expected = row, checked + 1, digest
        except Exception:  # noqa: BLE001 - a stored value no writer produces: the record was modified
            return self._stop(row, checked, "content")
        self.checked = checked
        return None

    def _stop(self, row: Raw, checked: int, kind: str) -> tuple[Raw, str]:
        self.checked = checked
        return row, kind


def connect(dialect: str, arguments: Sequence[Any], options: dict[str, Any]) -> Any:
    """A bare driver connection from the connect arguments SQLAlchemy's dialect made of the URL."""
    if dialect == "sqlite":
        import sqlite3  # noqa: PLC0415 - a worker loads only the driver it uses

        return sqlite3.connect(*arguments, **options)
    if dialect == "postgresql":
        import psycopg  # noqa: PLC0415

        return psycopg.connect(*arguments, **options)
    raise AuditError(f"the audit trail does not support {dialect} databases")


@dataclass(frozen=True, slots=True)
class RangeCheck:
    """One seq range checked on its own: its ends, and whether everything inside it is good."""

    first_prev_hash: str | None
    last: tuple[int, str] | None
    checked: int
    good: bool


def check_range(
    cursor: Any, dialect: str, schema: str, span: tuple[int, int], batch: int, head: tuple[int, str] | None
) -> RangeCheck:
    """Check the records after..until of `span` on their own (their link to the range before aside)."""
    walk = ChainWalk(None, head, schema)
    found = walk.follow_driver(cursor, dialect, batch, span[1], span[0])
    last = (int(walk.prev[SEQ]), str(walk.prev[HASH])) if walk.prev is not None else None
    return RangeCheck(walk.first_prev_hash, last, walk.checked, good=found is None)


def range_worker() -> None:
    """A verify worker process: one JSON request on stdin (see `verify`), one RangeCheck on stdout."""
    request = json.loads(sys.stdin.readline())
    head = (int(request["head"][0]), str(request["head"][1])) if request["head"] else None
    dialect = request["dialect"]
    connection = connect(dialect, request["arguments"], request["options"])
    try:
        cursor = connection.cursor()
        span = (int(request["after"]), int(request["until"]))
        check = check_range(cursor, dialect, request["schema"], span, int(request["batch"]), head)
        cursor.close()
    finally:
        connection.close()
    answer = {"first_prev_hash": check.first_prev_hash, "last": check.last, "checked": check.checked}
    sys.stdout.write(json.dumps(answer | {"good": check.good}))

"""Set-based writes for the fleet-sized paths (1M installations, recommendations).

Rows go to the driver directly: SQLite gets one `executemany` per chunk with values prepared
by SQLAlchemy's own bind processors (so they read back exactly like ORM-written ones);
PostgreSQL gets `COPY ... FROM STDIN`. Going through SQLAlchemy's executemany costs about
ten times more per row here, which is most of a million-installation scan.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import JSON, Column, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session

from powerx_governance.db.session import before_driver_write

if TYPE_CHECKING:
    from psycopg.abc import Transformer

CHUNK = 10_000
LINES_SENT = 1_000  # COPY text lines sent at a time by `insert_lines`
FEW = 64  # up to this many rows, one INSERT ... ON CONFLICT DO NOTHING beats a savepoint and a COPY
Processor = Callable[[Any], Any]
_UNSEEN: Final = object()


def _table(model: type[DeclarativeBase]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a plain table")
    return table


def _is_json(column: Column[Any]) -> bool:
    kind = column.type
    return isinstance(kind, JSON) or isinstance(getattr(kind, "impl", None), JSON)


# `json.dumps` with these arguments builds an encoder per call, which cost as much as encoding
_JSON_TEXT: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(value: Any) -> Any:
    return None if value is None else _JSON_TEXT(value)


def _converters(table: Table, columns: Sequence[str], dialect: Dialect) -> list[tuple[int, Processor]]:
    """(position, conversion) for the columns whose values the driver cannot take as they are."""
    found: list[tuple[int, Processor]] = []
    for i, name in enumerate(columns):
        column = table.c[name]
        if dialect.name == "postgresql":
            if _is_json(column):
                found.append((i, _json))
            continue
        convert = column.type._cached_bind_processor(dialect)
        if convert is not None:
            found.append((i, convert))
    return found


def _converted_column(values: tuple[Any, ...], convert: Processor) -> Sequence[Any]:
    """One column's values converted, each distinct value once (a chunk repeats `now`, states,
    deadlines...); the lookups run in C, which is most of a million-row write."""
    try:
        distinct = set(values)
    except TypeError:  # unhashable (JSON documents)
        return _converted_documents(values, convert)
    converted = {value: convert(value) for value in distinct}
    return list(map(converted.__getitem__, values))


def _converted_documents(values: tuple[Any, ...], convert: Processor) -> list[Any]:
    """JSON documents converted, each distinct flat one once: a tenant's counts by risk and action
    repeat across tenants. A flat document (members strings, integers, booleans or null) is keyed by
    its members in order, each value with its type (True and 1 are equal keys, not the same JSON);
    any other document is converted every time, and a column whose first one is not flat at once.
    A column whose first `_SAMPLE` documents are mostly distinct (each tenant's own facts) is given
    up on there: the rest are converted without keys, which cost more than they saved."""
    if not values or _flat_key(values[0]) is None:
        return list(map(convert, values))
    converted: dict[tuple[Any, ...], Any] = {}
    found: list[Any] = []
    for value in values:
        if len(found) == _SAMPLE and len(converted) > _SAMPLE // 2:
            found.extend(map(convert, values[_SAMPLE:]))
            break
        key = _flat_key(value)
        text = converted.get(key) if key is not None else None
        if text is None:
            text = convert(value)
            if key is not None:
                converted[key] = text
        found.append(text)
    return found


_SAMPLE = 256  # documents looked at before a column whose keys do not repeat is given up on
_FLAT: Final = frozenset((str, int, bool, type(None)))


def _flat_key(value: Any) -> tuple[Any, ...] | None:
    """A flat JSON document's members in order, and their values' types (True and 1 are equal keys
    in Python, not the same JSON text); None for anything else. Built by C-level calls: a first
    ingest keys ~740,000 event documents."""
    if type(value) is not dict:
        return None
    kinds = tuple(map(type, value.values()))
    return (tuple(value.items()), kinds) if _FLAT.issuperset(kinds) else None


def _converted(
    rows: list[tuple[Any, ...]], converting: list[tuple[int, Processor]]
) -> Sequence[Sequence[Any]]:
    if not converting:
        return rows
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    for i, convert in converting:
        columns[i] = _converted_column(tuple(columns[i]), convert)
    return list(zip(*columns, strict=True))


def integrity_errors(session: Session) -> tuple[type[Exception], ...]:
    """SQLAlchemy's and the driver's own: `bulk_insert` writes through the driver directly."""
    driver_error = getattr(session.connection().dialect.dbapi, "IntegrityError", IntegrityError)
    return IntegrityError, driver_error


def insert_new(
    session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]], *, unique: str, key: str
) -> set[Any]:
    """Insert the rows whose `unique` column value is not stored yet, in one statement without a
    savepoint (a handful of rows: a decision's event, its delivery job); the `key` values inserted."""
    if not rows:
        return set()
    table = _table(model)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).on_conflict_do_nothing(index_elements=[table.c[unique]]).returning(table.c[key])
    return set(session.execute(stmt, list(rows)).scalars())


def bulk_insert(session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]]) -> None:
    """Insert plain-dict rows (all with the same keys, at least two columns) in the session's transaction."""
    if not rows:
        return
    table = _table(model)
    columns = list(rows[0])
    connection = session.connection()
    dialect = connection.dialect
    converting = _converters(table, columns, dialect)
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    before_driver_write(connection)
    pick = itemgetter(*columns)
    for start in range(0, len(rows), CHUNK):
        values = _converted(list(map(pick, rows[start : start + CHUNK])), converting)
        _write(raw, dialect, table.name, columns, values)


class DriverRows:
    """Rows of one table built as tuples in a fixed column order, written as `bulk_insert` writes:
    the caller converts each value with `value` (once per distinct value it shares between rows: a
    first ingest repeats `now`, deadlines and verdict columns in every row), `insert` sends them."""

    def __init__(self, session: Session, model: type[DeclarativeBase], columns: Sequence[str]) -> None:
        self._session, self._table, self.columns = session, _table(model), list(columns)
        dialect = session.connection().dialect
        self._convert = {
            self.columns[i]: convert for i, convert in _converters(self._table, self.columns, dialect)
        }
        self._dialect = dialect
        self._dumps: Transformer | None = None
        self._text_encoding: str | None = None
        self._fields: dict[tuple[type, Any], str] = {}
        self._seen: dict[tuple[str, Any], Any] = {}
        self._documents: dict[tuple[str, tuple[Any, ...]], Any] = {}
        self._document_fields: dict[tuple[str, tuple[Any, ...]], str] = {}
        self._texts: dict[str, str] = {}

    def value(self, column: str, value: Any) -> Any:
        """`value` of `column` as the driver takes it."""
        convert = self._convert.get(column)
        return value if convert is None else convert(value)

    def repeated(self, column: str, value: Any) -> Any:
        """`value(column, value)` of a hashable value rows repeat, converted once."""
        key = (column, value)
        found = self._seen.get(key, _UNSEEN)
        if found is _UNSEEN:
            found = self._seen[key] = self.value(column, value)
        return found

    def document(self, column: str, document: dict[str, Any]) -> Any:
        """`value(column, document)` of a JSON document, each distinct flat one (`_flat_key`)
        converted once: a fleet's findings announce the same plugin, action and target for
        thousands of tenants."""
        key = _flat_key(document)
        if key is None:
            return self.value(column, document)
        found = self._documents.get((column, key), _UNSEEN)
        if found is _UNSEEN:
            found = self._documents[(column, key)] = self.value(column, document)
        return found

    def document_field(self, column: str, document: dict[str, Any]) -> str:
        """`field(document(column, document))`, each distinct flat document's field made once."""
        key = _flat_key(document)
        if key is None:
            return self.field(self.value(column, document))
        found = self._document_fields.get((column, key))
        if found is None:
            found = self._document_fields[(column, key)] = self.field(self.document(column, document))
        return found

    def insert_lines(self, lines: Iterable[str]) -> None:
        """Insert rows given as COPY text lines (`copy_of`), on this thread, sent `LINES_SENT` at a
        time as the iterable makes them: the server stores each piece while the next one is made
        (made whole first, the server waited for the lines and then the caller for the server)."""
        raw, _ = self._driver()
        encoding = self.encoding()
        names = ", ".join(f'"{c}"' for c in self.columns)
        statement = f'COPY "{self._table.name}" ({names}) FROM STDIN'
        with raw.cursor() as cursor, cursor.copy(statement) as copying:
            each = iter(lines)
            while piece := "".join(islice(each, LINES_SENT)):
                copying.write(piece.encode(encoding))

    def with_member(self, column: str, document: dict[str, Any], member: str) -> Spliced:
        """`value(column, {**document, member: x})` for each hashable x, made by splicing x's own text
        into the document's (`Spliced`): one conversion per distinct x, not one per row."""
        convert = self._convert.get(column)
        mark = "\ue000member\ue000"
        text = None if convert is None else convert({**document, member: mark})
        marked = None if convert is None else convert(mark)
        if not isinstance(text, str) or not isinstance(marked, str) or text.count(marked) != 1:
            return Spliced(self, column, document, member, None, None)
        head, _, tail = text.partition(marked)
        texts = self._texts  # documents of one shape share their text on each side of the member
        return Spliced(
            self, column, document, member, texts.setdefault(head, head), texts.setdefault(tail, tail)
        )

    @property
    def copies_text(self) -> bool:
        """Whether rows can go as COPY text lines (`field`, `copy_of`): PostgreSQL."""
        return self._dialect.name == "postgresql"

    def field(self, value: Any) -> str:
        """A converted value as `insert`'s COPY sends it: its driver dump (text format), escaped
        for COPY text, `\\N` for None; each distinct value but text dumped once."""
        if value is None:
            return r"\N"
        if type(value) is str:  # the driver's text dump is the text itself
            return copy_field(value)
        key = (type(value), value)  # True and 1 are equal keys, not the same field
        found = self._fields.get(key)
        if found is None:
            found = self._fields[key] = self._dumped(value)
        return found

    def _dumped(self, value: Any) -> str:
        """The field as the driver's COPY row formatting makes it (psycopg `format_row_text`)."""
        from psycopg.adapt import PyFormat, Transformer  # noqa: PLC0415 - PostgreSQL only

        if self._dumps is None:
            raw, _ = self._driver()
            self._dumps = Transformer(raw)
        dumped = self._dumps.get_dumper(value, PyFormat.TEXT).dump(value)
        return r"\N" if dumped is None else copy_field(bytes(dumped).decode(self.encoding()))

    def copy_of(self, lines: Sequence[str]) -> Callable[[], None]:
        """A call that inserts rows given as COPY text lines (fields from `field` or `copy_field`,
        each line ending in a newline) in the session's transaction: one COPY, no per-value work.
        The driver connection is resolved here, so the call may run on another thread while this
        one leaves the session alone (the server stores one chunk while the caller builds the next)."""
        raw, _ = self._driver()
        encoding = self.encoding()
        names = ", ".join(f'"{c}"' for c in self.columns)
        statement = f'COPY "{self._table.name}" ({names}) FROM STDIN'

        def copy() -> None:
            if not lines:
                return
            with raw.cursor() as cursor, cursor.copy(statement) as copying:
                for start in range(0, len(lines), CHUNK):
                    copying.write("".join(lines[start : start + CHUNK]).encode(encoding))

        return copy

    def encoding(self) -> str:
        """The Python name of the connection's client encoding (PostgreSQL), in which text goes."""
        if self._text_encoding is None:
            raw, _ = self._driver()
            self._text_encoding = str(raw.info.encoding)
        return self._text_encoding

    def insert(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows of converted values, in `columns` order, in the session's transaction."""
        if not rows:
            return
        raw, dialect = self._driver()
        for start in range(0, len(rows), CHUNK):
            _write(raw, dialect, self._table.name, self.columns, rows[start : start + CHUNK])

    def update(self, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Update rows of converted values of `columns` (some of `self.columns`), matched on the last
        one, as `bulk_update` does, in the session's transaction."""
        if not rows:
            return
        raw, dialect = self._driver()
        *assigned, key = columns
        update = _update_from_copy if dialect.name == "postgresql" else _update_each
        for start in range(0, len(rows), CHUNK):
            update(raw, self._table.name, assigned, key, rows[start : start + CHUNK])

    def _driver(self) -> tuple[Any, Dialect]:
        connection = self._session.connection()
        raw = connection.connection.dbapi_connection
        if raw is None:
            raise RuntimeError("no driver connection inside the transaction")
        before_driver_write(connection)
        return raw, connection.dialect


# What COPY text escapes in a field, as the driver's own row formatting does (psycopg `_dump_re`)
_COPY_SPECIAL: Final = re.compile("[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES: Final = str.maketrans(
    {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}
)


def copy_field(text: str) -> str:
    """A text value as a COPY text field (its special characters escaped)."""
    return text.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(text) else text


class Spliced:
    """`DriverRows.with_member`: a document's driver value with one member set to x, as its text on
    each side of the member around x's own text, where the conversion writes a member's value as it
    writes that value alone (JSON text does); converted whole otherwise (and for an x that is no
    text alone: None is SQL NULL on PostgreSQL)."""

    __slots__ = ("_column", "_document", "_head", "_member", "_rows", "_tail")

    def __init__(
        self,
        rows: DriverRows,
        column: str,
        document: dict[str, Any],
        member: str,
        head: str | None,
        tail: str | None,
    ) -> None:
        self._rows, self._column, self._document, self._member = rows, column, document, member
        self._head, self._tail = head, tail

    def __call__(self, x: Any) -> Any:
        if self._head is not None and self._tail is not None:
            own = self._rows.repeated(self._column, x)
            if isinstance(own, str):
                return self._head + own + self._tail
        return self._rows.value(self._column, {**self._document, self._member: x})


class CopiedApart:
    """PostgreSQL: a chunk's COPY calls (`DriverRows.copy_of`) made by a thread of their own while the
    caller builds the next chunk, or does other work that leaves the session alone (a first ingest
    evaluates a batch while its installations are copied), one chunk at a time. Sending ready COPY text
    holds the GIL little, so the server stores a chunk while Python works instead of each waiting for
    the other. `wait` returns once the chunk is in, and raises what its copy raised."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, *copies: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=copies, name="powerx-copy")
        self._thread.start()

    def wait(self) -> None:
        self.settle()
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def settle(self) -> None:
        """Wait for the chunk being copied, if any, leaving what it raised for `wait`."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, *copies: Callable[[], None]) -> None:
        try:
            for copy in copies:
                copy()
        except BaseException as exc:  # noqa: BLE001 - raised again by `wait`, on the writer's thread
            self._error = exc


def _write(
    raw: Any, dialect: Dialect, table: str, columns: list[str], values: Sequence[Sequence[Any]]
) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = raw.cursor()
    try:
        if dialect.name == "postgresql":
            with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', values)  # noqa: S608 - our own names
    finally:
        cursor.close()


def bulk_update(
    session: Session, model: type[DeclarativeBase], rows: Sequence[dict[str, Any]], *, key: str
) -> None:
    """Update rows matched on `key`; every row must carry the same set of columns.

    Through the driver, as `bulk_insert` writes: SQLite one prepared `UPDATE` per chunk
    (`executemany`), PostgreSQL a `COPY` into a temporary table and one `UPDATE ... FROM` it.
    SQLAlchemy's executemany cost about as much per row as everything else a delta scan does."""
    if not rows:
        return
    table = _table(model)
    columns = [c for c in rows[0] if c != key]
    connection = session.connection()
    dialect = connection.dialect
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    before_driver_write(connection)
    names = [*columns, key]
    converting = _converters(table, names, dialect)
    pick = itemgetter(*names)
    for start in range(0, len(rows), CHUNK):
        values = _converted(list(map(pick, rows[start : start + CHUNK])), converting)
        if dialect.name == "postgresql":
            _update_from_copy(raw, table.name, columns, key, values)
        else:
            _update_each(raw, table.name, columns, key, values)


def _update_each(raw: Any, table: str, columns: list[str], key: str, values: Sequence[Sequence[Any]]) -> None:
    assignments = ", ".join(f'"{c}" = ?' for c in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(f'UPDATE "{table}" SET {assignments} WHERE "{key}" = ?', values)  # noqa: S608 - our own names
    finally:
        cursor.close()


def _update_from_copy(
    raw: Any, table: str, columns: list[str], key: str, values: Sequence[Sequence[Any]]
) -> None:
    """The rows copied into a temporary table shaped like `table`'s columns, then one `UPDATE`."""
    names = ", ".join(f'"{c}"' for c in [*columns, key])
    assignments = ", ".join(f'"{c}" = changed."{c}"' for c in columns)
    staged = "_bulk_update"
    cursor = raw.cursor()
    try:
        shaped = f'CREATE TEMPORARY TABLE "{staged}" AS SELECT {names} FROM "{table}" WITH NO DATA'  # noqa: S608
        cursor.execute(shaped)
        with cursor.copy(f'COPY "{staged}" ({names}) FROM STDIN') as copy:
            for row in values:
                copy.write_row(row)
        cursor.execute(
            f'UPDATE "{table}" SET {assignments} FROM "{staged}" AS changed'  # noqa: S608 - our own names
            f' WHERE "{table}"."{key}" = changed."{key}"'
        )
        cursor.execute(f'DROP TABLE "{staged}"')
    finally:
        cursor.close()

"""Long id lists in bounded pieces: `IN (…)` lists and bulk writes stay within what the stores accept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from sqlalchemy import ARRAY, ColumnElement, any_, bindparam
from sqlalchemy.orm import QueryableAttribute, Session

CHUNK: Final = 5000
READ_ALL_ABOVE: Final = 2000  # more keys than this: one sequential read beats thousands of IN lookups


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(session: Session, column: QueryableAttribute[Any], keys: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN keys`; on PostgreSQL `column = ANY(:keys)`, the keys bound as one array: an `IN`
    list is one parameter per key, and the driver parsed a statement of 5,000 placeholders afresh
    each time (too long for its cache), which was most of a steady scan's tenant writes."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(keys), type_=ARRAY(column.type)))
    return column.in_(keys)


def rows_for(session: Session, stmt: Any, column: Any, keys: Sequence[Any] | None) -> Iterator[Any]:
    """Rows of `stmt` (its first column `column`) for `keys` (None: all): one sequential read,
    filtered here, when they are many (a push for a plugin the whole fleet runs)."""
    if keys is None or len(keys) > READ_ALL_ABOVE:
        wanted = None if keys is None else set(keys)
        for row in read_rows(session, stmt):
            if wanted is None or row[0] in wanted:
                yield row
        return
    for part in chunks(list(keys)):
        yield from read_rows(session, stmt.where(among(session, column, part)))


def read_rows(session: Session, stmt: Any) -> Iterable[Any]:
    """Every row of `stmt`, whose columns need no result conversion of SQLAlchemy's, in the session's
    transaction. PostgreSQL: through the driver in binary: a tenant's kept sum (`report_sum`, 512
    bytes) came as 1,026 characters of hex text, and reading 20,000 of them (twice a push) took the
    server as long again as in binary. SQLite: streamed through SQLAlchemy, as before."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return connection.execute(stmt)
    compiled = stmt.compile(dialect=connection.dialect)
    raw: Any = connection.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.execute(str(compiled), compiled.params, binary=True)
        rows: list[Any] = cursor.fetchall()
    return rows

"""Long id lists in bounded pieces: `IN (…)` lists and bulk writes stay within what the stores accept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from sqlalchemy.orm import Session

CHUNK: Final = 5000
READ_ALL_ABOVE: Final = 2000  # more keys than this: one sequential read beats thousands of IN lookups


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rows_for(session: Session, stmt: Any, column: Any, keys: Sequence[Any] | None) -> Iterator[Any]:
    """Rows of `stmt` (its first column `column`) for `keys` (None: all): one sequential read,
    filtered here, when they are many (a push for a plugin the whole fleet runs)."""
    if keys is None or len(keys) > READ_ALL_ABOVE:
        wanted = None if keys is None else set(keys)
        for row in session.connection().execute(stmt):
            if wanted is None or row[0] in wanted:
                yield row
        return
    for part in chunks(list(keys)):
        yield from session.connection().execute(stmt.where(column.in_(part)))

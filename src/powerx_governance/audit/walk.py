"""Walking the stored chain in seq order from a session: windows of records, recomputed hashes,
link checks (the rows themselves are read and checked by `pages`, through the bare driver)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from powerx_governance.audit.chain import CHECKPOINT_MARKER, GENESIS, SCHEMA, marker_link, read_marker
from powerx_governance.audit.model import AuditError
from powerx_governance.audit.pages import EVENT, HASH, PAGE_SQL, PREV, SEQ, ChainWalk, Raw, read_pages
from powerx_governance.audit.tables import AuditEventRow

__all__ = ["EVENT", "HASH", "PAGE", "PREV", "SEQ", "Raw", "Walk", "next_seq", "start_hash"]

PAGE: Final = text(PAGE_SQL)
_NEXT_SEQ: Final = select(func.min(AuditEventRow.seq)).where(AuditEventRow.seq > bindparam("after"))


def next_seq(session: Session, after: int) -> int | None:
    """The first seq after `after` (to jump over a gap in the numbering)."""
    found = session.execute(_NEXT_SEQ, {"after": after}).scalar_one_or_none()
    return None if found is None else int(found)


def _pages(session: Session, batch: int, after: int, until: int) -> Generator[Sequence[Raw]]:
    """`pages.read_pages` through the session's own driver connection (its transaction)."""
    connection = session.connection()
    driver = connection.connection.dbapi_connection
    if driver is None:
        raise AuditError("no database connection to read the audit trail from")
    cursor = driver.cursor()
    try:
        yield from read_pages(cursor, connection.dialect.name, batch, after, until)
    finally:
        cursor.close()


@dataclass
class Walk(ChainWalk):
    """A `ChainWalk` of the chain's own schema that reads its records from a session."""

    schema: str = SCHEMA

    def run(self, session: Session, batch: int, until: int, after: int = 0) -> tuple[Raw, str] | None:
        """Walk on to `until` (from `after`, or the last record walked); the first bad record and why."""
        if self.prev is not None:
            after = int(self.prev[SEQ])
        return self.follow(_pages(session, batch, after, until))


def start_hash(session: Session) -> str:
    checkpoint = marker_link(read_marker(session, CHECKPOINT_MARKER))
    return checkpoint[1] if checkpoint else GENESIS

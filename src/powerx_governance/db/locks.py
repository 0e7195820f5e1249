"""A lock held until the caller's transaction ends, on either backend.

PostgreSQL: a transaction-scoped advisory lock keyed by (class, schema), so stores sharing a
database in different schemas do not wait on each other. SQLite: any write takes the database
write lock; this one upserts the lock's own row in `locks`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy import String, func, select, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from powerx_governance.db.base import Base


class LockRow(Base):
    """A named lease: whoever updates the row while it is free or expired holds it."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime]


_NEVER: Final = datetime(9999, 12, 31, tzinfo=UTC)
# a write statement writing nothing: SQLite opens the write transaction (its database write lock) anyway
_WRITE_NOTHING: Final = text("UPDATE locks SET owner = owner WHERE 0")


def advisory_xact_lock(session: Session, lock_class: int) -> None:
    """PostgreSQL only: the advisory lock (`lock_class`, this schema) until the transaction ends."""
    session.execute(select(func.pg_advisory_xact_lock(lock_class, func.hashtext(func.current_schema()))))


def transaction_lock(session: Session, lock_class: int, name: str) -> None:
    """Wait for, then hold, the lock `name` (`lock_class` on PostgreSQL) until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        advisory_xact_lock(session, lock_class)
        return
    session.execute(
        sqlite_insert(LockRow)
        .values(name=name, owner=None, expires_at=_NEVER)
        .on_conflict_do_update(index_elements=[LockRow.name], set_={"expires_at": _NEVER})
    )


def sqlite_writer_now(session: Session) -> None:
    """SQLite: make the transaction the database's writer now, so what it reads next stays true until
    it commits (the driver runs reads before a transaction's first write outside any transaction, so
    another connection, or process, may change them in between). PostgreSQL: nothing (row locks)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(_WRITE_NOTHING)

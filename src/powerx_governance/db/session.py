"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout on every connection."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_HOLDS_WRITE_LOCK: Final = "powerx.sqlite_write_lock"
_WRITE_LOCK_WAIT: Final = 10.0  # seconds, as the busy timeout: then SQLite's own locking decides
_WRITES: Final = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def sqlite_url(path: Path) -> str:
    return f"sqlite+pysqlite:///{path}"


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them to the psycopg 3 driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute(
        "PRAGMA cache_size=-131072"
    )  # 128 MiB of page cache: fleet-sized index writes stay in memory
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


class _WriterLock:
    """One SQLite writer at a time inside this process, queued on a lock instead of polling.

    SQLite lets one transaction write at a time; the others retry on its busy handler, which
    sleeps up to 100 ms between attempts, so concurrent requests (16 decision clients) mostly
    sleep. The driver opens the write transaction at a connection's first INSERT/UPDATE/DELETE;
    the lock is taken just before that statement and released when the transaction ends. Reads
    are not serialised. A wait longer than the busy timeout gives up the lock and lets SQLite's
    own locking decide, so a thread writing through two connections at once is never worse off
    than without it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def before_execute(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            self.take(conn)

    def take(self, conn: Connection) -> None:
        if conn.info.get(_HOLDS_WRITE_LOCK) is None and conn.in_transaction():
            conn.info[_HOLDS_WRITE_LOCK] = self._lock.acquire(timeout=_WRITE_LOCK_WAIT)

    def commit(self, conn: Connection) -> None:
        self._end(conn, "commit")

    def rollback(self, conn: Connection) -> None:
        self._end(conn, "rollback")

    def _end(self, conn: Connection, how: str) -> None:
        """End the driver's transaction here, then let the next writer in (the event runs just
        before SQLAlchemy's own commit or rollback, which then finds nothing left to do)."""
        if not conn.info.pop(_HOLDS_WRITE_LOCK, None):
            return
        try:
            driver = conn.connection.dbapi_connection
            if driver is not None:
                getattr(driver, how)()
        finally:
            self._lock.release()


_WRITERS: Final = weakref.WeakKeyDictionary[Engine, _WriterLock]()


def before_driver_write(conn: Connection) -> None:
    """A write straight through the driver (db.bulk) takes the SQLite writer lock as statements do."""
    writers = _WRITERS.get(conn.engine)
    if writers is not None:
        writers.take(conn)


def _serialise_sqlite_writers(engine: Engine) -> None:
    writers = _WRITERS[engine] = _WriterLock()
    event.listen(engine, "before_cursor_execute", writers.before_execute)
    event.listen(engine, "commit", writers.commit)
    event.listen(engine, "rollback", writers.rollback)


def make_engine(url: str, **options: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        _serialise_sqlite_writers(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **options)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The edge owns the transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session

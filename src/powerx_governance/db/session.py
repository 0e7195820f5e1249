"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout on every connection."""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Final

import msgspec
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.orm import Session, sessionmaker

_HOLDS_WRITE_LOCK: Final = "powerx.sqlite_write_lock"
_WRITE_LOCK_WAIT: Final = 10.0  # seconds, as the busy timeout: then SQLite's own locking decides
_WRITES: Final = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# Connections kept open: the API's thread pool runs up to 40 requests at once, and a connection
# opened per request (SQLAlchemy's default keeps 5) costs a file open and six PRAGMAs each time.
_SQLITE_POOL: Final = {"pool_size": 20, "max_overflow": 20}
WRITERS_SUFFIX: Final = "-writers"  # the file beside a SQLite database its writers lock
PING_AFTER_IDLE: Final = 1.0  # seconds a pooled PostgreSQL connection sits unused before it is pinged
_IDLE_SINCE: Final = "powerx.idle_since"
_AUTOCHECKPOINT: Final = 1000  # SQLite's default: a commit past this many WAL pages checkpoints
CHECKPOINT_THREAD: Final = "powerx-sqlite-checkpoint"
log = logging.getLogger(__name__)


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
    """One SQLite writer at a time, queued on a lock instead of polling.

    SQLite lets one transaction write at a time; the others retry on its busy handler, which
    sleeps up to 100 ms between attempts, so concurrent requests (16 decision clients) mostly
    sleep. The driver opens the write transaction at a connection's first INSERT/UPDATE/DELETE;
    the lock is taken just before that statement and released when the transaction ends. Reads
    are not serialised. Inside a process the writers queue on a thread lock; between processes
    (`serve --workers`, the CLI next to a server) on an `flock` of the file `<database>-writers`,
    which the kernel releases when a process dies. A wait longer than the busy timeout gives up
    and lets SQLite's own locking decide, so a thread writing through two connections at once is
    never worse off than without it.
    """

    def __init__(self, database: str | None) -> None:
        self._lock = threading.Lock()
        self._file: int | None = None
        if database and database != ":memory:" and not database.startswith("file:"):  # a file
            self._file = os.open(f"{database}{WRITERS_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def before_execute(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(_WRITES):
            self.take(conn)

    def take(self, conn: Connection) -> None:
        if conn.info.get(_HOLDS_WRITE_LOCK) is None and conn.in_transaction():
            deadline = time.monotonic() + _WRITE_LOCK_WAIT
            held = self._lock.acquire(timeout=_WRITE_LOCK_WAIT)
            if held and not self._other_processes(deadline):
                self._lock.release()
                held = False
            conn.info[_HOLDS_WRITE_LOCK] = held

    def _other_processes(self, deadline: float) -> bool:
        """Wait for the writers of other processes (their `flock`) until `deadline`; whether it was got."""
        if self._file is None:
            return True
        pause = 0.0002
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)  # a short transaction of another process: poll briefly, not 100 ms
                pause = min(pause * 2, 0.005)
            else:
                return True

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
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._lock.release()

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None


_WRITERS: Final = weakref.WeakKeyDictionary[Engine, _WriterLock]()


def before_driver_write(conn: Connection) -> None:
    """A write straight through the driver (db.bulk) takes the SQLite writer lock as statements do."""
    writers = _WRITERS.get(conn.engine)
    if writers is not None:
        writers.take(conn)


def _serialise_sqlite_writers(engine: Engine) -> None:
    writers = _WRITERS[engine] = _WriterLock(engine.url.database)
    weakref.finalize(engine, writers.close)
    event.listen(engine, "before_cursor_execute", writers.before_execute)
    event.listen(engine, "commit", writers.commit)
    event.listen(engine, "rollback", writers.rollback)


def _file_database(url: str) -> bool:
    database = make_url(url).database
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


def make_engine(url: str, **options: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        pool = _SQLITE_POOL if _file_database(url) else {}
        engine = create_engine(url, connect_args={"check_same_thread": False}, **{**pool, **options})
        event.listen(engine, "connect", _sqlite_pragmas)
        _serialise_sqlite_writers(engine)
        return engine
    # jsonb columns (verdict documents, events) decoded by msgspec: 2.5x faster than the json module, for
    # the same values (PostgreSQL sends jsonb as standard JSON); writes keep SQLAlchemy's encoder.
    engine = create_engine(
        url, **{"pool_size": 10, "max_overflow": 10, "json_deserializer": msgspec.json.decode, **options}
    )
    _ping_idle_connections(engine, PING_AFTER_IDLE)
    convert_batch_statements_once()
    return engine


# the largest statements a batch of decisions sends (up to 64 rows of a few dozen columns)
BATCH_STATEMENT_PARAMS: Final = 4096
BATCH_STATEMENT_BYTES: Final = 128 * 1024


def convert_batch_statements_once() -> None:
    """Let psycopg keep its conversion of statements as large as a batch of decisions sends.

    psycopg turns a statement's `%(name)s` placeholders into `$n` by parsing it in Python, and
    keeps the result (in an LRU of 128) only for statements of at most 4 KiB and 50 parameters
    (`psycopg._queries`, to keep one-off ORM statements out). A batch of decisions inserts its
    decisions, audit records and notification events with multi-row INSERTs of hundreds of
    parameters, and their text repeats from batch to batch (as many rows as concurrent clients):
    parsing them again was a quarter of a batch's CPU on PostgreSQL (15 % less CPU per batch once
    kept). Fleet-sized writes go by COPY, or are larger than these limits and stay uncached."""
    try:
        queries = importlib.import_module("psycopg._queries")  # loaded with the driver already
    except ImportError:  # another psycopg layout: its defaults stand
        return
    for name, wanted in (
        ("MAX_CACHED_STATEMENT_PARAMS", BATCH_STATEMENT_PARAMS),
        ("MAX_CACHED_STATEMENT_LENGTH", BATCH_STATEMENT_BYTES),
    ):
        if isinstance(getattr(queries, name, None), int):
            setattr(queries, name, max(getattr(queries, name), wanted))


def _ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled connection at checkout only when it sat unused for `idle_seconds` or more.

    `pool_pre_ping` costs a round trip on every checkout (two per API request; 5.6 % of a
    decision server's samples). A connection used a moment ago is known to work; one that sat
    idle may have been closed by the server, a restart or the network. A failed ping is a
    `DisconnectionError`: the pool discards that connection and checks out a fresh one. A
    disconnect found by a statement still invalidates every connection the pool held then.
    """

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle_seconds:
            return  # just opened, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise exc.DisconnectionError(f"a pooled connection failed its ping: {error}") from error
        if not alive:
            raise exc.DisconnectionError("a pooled connection failed its ping")

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def checkpoint_apart(session: Session) -> None:
    """SQLite: the WAL checkpoint after this transaction runs in a thread of its own, not in its commit.

    A delta scan after a push rewrites ~20,000 rows scattered over the file; the automatic
    checkpoint of the commit that takes the WAL past 1,000 pages copied them all back into the
    database before the commit returned (0.5-1 s of the push's latency on the reference fleet).
    The connection's automatic checkpoint is off until the transaction ends and back on after;
    then one PASSIVE checkpoint (it never blocks a reader or a writer) runs on a connection of its
    own in a short-lived thread, so the WAL is still copied back after each such transaction and
    does not grow without bound. PostgreSQL and in-memory databases: nothing to do.
    """
    connection = session.connection()
    database = connection.engine.url.database
    raw = connection.connection.dbapi_connection
    if connection.dialect.name != "sqlite" or not database or not _file_database(str(connection.engine.url)):
        return
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    raw.execute("PRAGMA wal_autocheckpoint=0")
    ended = False

    def end(_session: Session) -> None:
        nonlocal ended
        if not ended:
            ended = True
            try:
                raw.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT}")
            except sqlite3.Error:  # a broken connection: never back into the pool without its checkpoints
                connection.invalidate()
            apart = threading.Thread(target=_checkpoint, args=(database,), name=CHECKPOINT_THREAD)
            apart.daemon = True  # an exit meanwhile loses nothing: the WAL keeps every commit till then
            apart.start()

    event.listen(session, "after_commit", end)
    event.listen(session, "after_rollback", end)


def _checkpoint(database: str) -> None:
    """One PASSIVE checkpoint of `database` (opened read-write, never created)."""
    try:
        uri = f"{Path(database).absolute().as_uri()}?mode=rw"
        with closing(sqlite3.connect(uri, uri=True, timeout=_WRITE_LOCK_WAIT)) as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:  # gone meanwhile: the next commit's automatic checkpoint does it instead
        log.warning("SQLite checkpoint apart failed", extra={"database": database, "error": str(exc)})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The edge owns the transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


@contextmanager
def sqlite_page_cache(session: Session, mebibytes: int) -> Iterator[None]:
    """SQLite: a page cache of `mebibytes` for this connection while the block runs (the size every
    connection is opened with after it). A first ingest's index writes outgrow the usual cache
    and spill pages to the WAL that it then reads back; PostgreSQL: nothing.

    The usual size comes back on the driver's connection, whatever state the block left the
    transaction in (a failed statement's error stays the one raised); a connection whose size
    cannot be set back is invalidated, never pooled with the larger cache."""
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    usual = int(raw.execute("PRAGMA cache_size").fetchone()[0])
    raw.execute(f"PRAGMA cache_size=-{mebibytes * 1024}")
    try:
        yield
    finally:
        try:
            raw.execute(f"PRAGMA cache_size={usual}")
        except sqlite3.Error:
            connection.invalidate()


def plan_each_query(session: Session) -> None:
    """PostgreSQL: plan every statement of the rest of this transaction for its own values.

    For a transaction that fills a table it then queries (a first ingest announcing ~740,000
    findings a piece at a time): the driver prepares a statement run five times, and the plan
    PostgreSQL then keeps was made while the table was still empty, a scan of the whole table, so
    each later piece's lookups of its keys read everything written so far (a 20,000-tenant first
    ingest ran for over 13 minutes instead of about 3). SQLite plans each statement anyway.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@contextmanager
def indexes_built_after(session: Session, tables: Sequence[str]) -> Iterator[None]:
    """The tables' secondary indexes dropped while the block fills them and built again, as they
    were, at its end, in the same transaction (DDL is transactional in both stores: a rollback
    brings them back). Building an index sorts its keys once; kept up row by row, each insert went
    into the middle of every index keyed by tenant or plugin. Unique indexes stay (they are the
    constraints the writes are checked against), and so do those SQLite makes itself. SQLite: the
    driver's transaction is opened here if no write has opened it yet (its DDL would commit alone).
    PostgreSQL: dropping an index locks its table against every other session until the end.

    For tables the block fills from empty: a query inside it that needs a dropped index scans."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        built = _postgresql_secondary_indexes(connection, tables)
    else:
        built = _sqlite_secondary_indexes(connection, tables)
        _open_driver_transaction(connection)
    for name, _ in built:
        connection.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    for _, definition in built:
        connection.exec_driver_sql(definition)


def _sqlite_secondary_indexes(connection: Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    found = connection.exec_driver_sql(
        "SELECT tbl_name, name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).all()
    return [
        (name, sql)
        for table, name, sql in found
        if table in tables and not sql.lstrip().upper().startswith("CREATE UNIQUE")
    ]


def _postgresql_secondary_indexes(connection: Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    found = connection.execute(
        text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(:tables)"
            " AND NOT x.indisunique AND NOT x.indisprimary ORDER BY i.relname"
        ),
        {"tables": list(tables)},
    ).all()
    return [(name, definition) for name, definition in found]


def _open_driver_transaction(connection: Connection) -> None:
    """SQLite: the driver's transaction begun, with the writer lock, before a DDL statement."""
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("no driver connection inside the transaction")
    before_driver_write(connection)  # the writer lock, as any write takes it
    if not raw.in_transaction:  # the driver opens its transaction at a first write, never for DDL
        raw.execute("BEGIN")


@contextmanager
def postgresql_foreign_keys_checked_after(session: Session, tables: Sequence[str]) -> Iterator[None]:
    """PostgreSQL: the foreign keys between `tables` (both ends among them) dropped while the block
    fills them and added again, as they were, at its end, in the same transaction: adding a foreign
    key checks every row in one set-based statement, and the transaction fails if any is wrong.
    Checked row by row, each insert ran a query that locked its referenced row (a write of its own).
    Dropping one locks both its tables against every other session until the transaction ends.
    SQLite: nothing (its checks read the parent's index, and write nothing)."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    connection = session.connection()
    found = connection.execute(
        text(
            "SELECT child.relname, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c"
            " JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid"
            " WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"
            " AND child.relname = ANY(:tables) AND parent.relname = ANY(:tables)"
            " ORDER BY child.relname, c.conname"
        ),
        {"tables": list(tables)},
    ).all()
    for table, name, _ in found:
        connection.exec_driver_sql(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    yield
    for table, name, definition in found:
        connection.exec_driver_sql(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')


def analyse_after_bulk_load(factory: sessionmaker[Session], tables: Sequence[str]) -> None:
    """PostgreSQL: `ANALYZE` `tables` after a bulk load committed (PostgreSQL's own advice after
    populating a database): until autovacuum gets round to them (never, where it is off), the
    planner guesses their sizes, and the next scans' joins of hundreds of thousands of rows were
    planned for a few pages (a push's hash join of the kept sums spilled to disk). SQLite: nothing
    (its planner keeps to its defaults unless statistics were gathered before)."""
    with factory() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        session.execute(text("ANALYZE " + ", ".join(f'"{table}"' for table in tables)))
        session.commit()

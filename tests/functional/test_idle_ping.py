"""PostgreSQL pool: a connection that sat idle is pinged at checkout and replaced when the server
closed it; one used a moment ago is not pinged (no round trip per checkout)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from powerx_governance.db import session as db_session
from powerx_governance.db.session import make_engine
from tests.conftest import PostgresServer, provisioned_database

_PID = text("SELECT pg_backend_pid()")


@pytest.fixture
def server(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


@pytest.fixture
def url(server: PostgresServer, tmp_path: Path) -> Iterator[str]:
    with provisioned_database("postgresql", tmp_path, lambda: server) as found:
        yield found


def _pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(_PID).scalar_one())


def _terminate(server: PostgresServer, pid: int) -> None:
    server.execute(sql.SQL("SELECT pg_terminate_backend({})").format(sql.Literal(pid)))


def _engine(url: str, idle_seconds: float, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr(db_session, "PING_AFTER_IDLE", idle_seconds)
    return make_engine(url, pool_size=1, max_overflow=0)  # one connection: the same one comes back


def test_an_idle_connection_closed_by_the_server_is_replaced_at_checkout(
    server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(url, 0.0, monkeypatch)  # every checked-in connection counts as idle
    try:
        first = _pid(engine)
        _terminate(server, first)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert _pid(engine) != first
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
    server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(url, 3600.0, monkeypatch)
    try:
        first = _pid(engine)
        _terminate(server, first)
        with pytest.raises(OperationalError), engine.connect() as connection:  # no ping found it
            connection.execute(text("SELECT 1"))
        assert _pid(engine) != first  # the disconnect invalidated it: the next checkout reconnects
    finally:
        engine.dispose()

"""`checkpoint_apart`: a transaction's writes as without it, its WAL still copied back into the
database (by a thread of its own on SQLite), the connection's automatic checkpoint back on after."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.session import CHECKPOINT_THREAD, checkpoint_apart, transaction
from powerx_governance.recommendations.tables import VerdictRow
from tests.conftest import NOW, ServiceFactory

ROWS = 3000  # well past the 1,000 WAL pages of an automatic checkpoint


def _verdicts(start: int) -> list[dict[str, Any]]:
    return [
        {"fingerprint": f"{i:064d}", "created_at": NOW, "document": {"filler": "x" * 1000, "i": i}}
        for i in range(start, start + ROWS)
    ]


def _checkpoints_done() -> None:
    for thread in threading.enumerate():
        if thread.name == CHECKPOINT_THREAD:
            thread.join(timeout=30)


def _autocheckpoint(raw: Any) -> int | None:
    return None if raw is None else int(raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


@pytest.mark.parametrize("ends", ["commit", "rollback"])
def test_writes_as_without_it_and_the_wal_checkpointed_after(make_service: ServiceFactory, ends: str) -> None:
    service = make_service(POWERX_WORKER="0")
    with transaction(service.factory) as session:
        bulk_insert(session, VerdictRow, _verdicts(0))  # the plain path
    sqlite = service.engine.dialect.name == "sqlite"
    with service.factory() as session, session.begin():
        checkpoint_apart(session)
        raw = session.connection().connection.dbapi_connection if sqlite else None
        assert _autocheckpoint(raw) in (None, 0)
        bulk_insert(session, VerdictRow, _verdicts(ROWS))
        if ends == "rollback":
            session.rollback()
    _checkpoints_done()
    assert _autocheckpoint(raw) in (None, 1000)
    with Session(service.engine) as session:
        count = session.scalar(select(func.count()).select_from(VerdictRow))
        assert count == (2 * ROWS if ends == "commit" else ROWS)
        if sqlite:  # the database file holds every page already: the WAL was copied back
            pages = session.scalar(text("PRAGMA page_count")) * session.scalar(text("PRAGMA page_size"))
            assert Path(str(service.engine.url.database)).stat().st_size == pages

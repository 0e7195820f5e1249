"""Shards running at once meet the same new verdicts: on PostgreSQL a writer in flight neither
fails on nor waits for another writer's verdicts (they are committed apart, content-addressed)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from powerx_governance.db.session import transaction
from powerx_governance.recommendations.store import _store_verdicts
from powerx_governance.recommendations.tables import VerdictRow
from powerx_governance.service import GovernanceService
from tests.conftest import NOW, ServiceFactory

DOCUMENTS = [(f"{n:064x}", {"action": "upgrade", "n": n}) for n in range(1, 4)]


def _stored(service: GovernanceService) -> int:
    with service.factory() as session:
        return int(session.scalar(select(func.count()).select_from(VerdictRow)) or 0)


def _first_writer_fails_while_a_second_stores(service: GovernanceService) -> None:
    second_done = threading.Event()

    def second_writer() -> None:
        with transaction(service.factory) as session:
            _store_verdicts(session, DOCUMENTS, NOW)
        second_done.set()

    with transaction(service.factory) as first:
        _store_verdicts(first, DOCUMENTS[:2], NOW)
        writer = threading.Thread(target=second_writer)
        writer.start()
        # the first writer's transaction is still open: the second does not wait for it
        assert second_done.wait(timeout=30), "the second writer waited for the first's commit"
        writer.join()
        raise RuntimeError("shard failed")  # the first writer's transaction rolls back


def test_writers_in_flight_store_the_same_new_verdicts_without_conflict_or_wait(
    make_service: ServiceFactory, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: its writers never meet in flight")
    service = make_service(POWERX_WORKER="0")
    with pytest.raises(RuntimeError, match="shard failed"):
        _first_writer_fails_while_a_second_stores(service)
    assert _stored(service) == 3  # what both stored stays: immutable, content-addressed
    with transaction(service.factory) as again:  # the first shard run again finds them there
        _store_verdicts(again, DOCUMENTS, NOW)
    assert _stored(service) == 3

"""The procrastinate backend in one process, on the real PostgreSQL: the same tasks and idempotency
keys as the local table, dead letters with their error, transient errors retried, stats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.jobs.interface import QueueBackend
from powerx_governance.scans.tables import ScanKind, ScanRow, ScanStatus, ScanTrigger
from tests.conftest import ServiceFactory, built_services, postgres_getter, provisioned_database


@pytest.fixture
def make_pg_service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServiceFactory]:
    with (
        provisioned_database("postgresql", tmp_path, postgres_getter(request)) as url,
        built_services(url, tmp_path) as build,
    ):
        yield build


def test_a_scan_runs_as_a_procrastinate_job(make_pg_service: ServiceFactory) -> None:
    service = make_pg_service(POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    assert service.queue.backend is QueueBackend.PROCRASTINATE
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    assert service.queue.stats().depth == 1
    assert service.run_pending() >= 1
    with service.factory() as session:
        row = session.get_one(ScanRow, scan_id)
        assert row.status == ScanStatus.SUCCEEDED.value, row.failure
        assert row.tenants_total > row.tenants_scanned > 0  # the example fleet has a broken manifest
    assert service.run_pending() >= 0
    assert service.queue.stats().depth == 0


def test_the_same_key_is_one_job(make_pg_service: ServiceFactory) -> None:
    service = make_pg_service(POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    with transaction(service.factory) as session:
        assert queue.enqueue(session, "scan", {"scan_id": "none"}, key="k:1", now=service.clock())
        assert not queue.enqueue(session, "scan", {"scan_id": "none"}, key="k:1", now=service.clock())
    assert service.queue.stats().by_state == {"todo": 1}


def test_a_job_that_always_fails_is_a_dead_letter_with_its_error(make_pg_service: ServiceFactory) -> None:
    service = make_pg_service(POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    with transaction(service.factory) as session:  # a scan that does not exist: KeyError-like, not transient
        queue.enqueue(session, "scan", {"scan_id": "no-such-scan"}, key="broken", now=service.clock())
    service.run_pending()
    letters = service.queue.dead_letters()
    assert [(d.task, d.key, d.attempts) for d in letters] == [("scan", "broken", 1)]
    assert letters[0].error is not None
    assert "no-such-scan" in letters[0].error or "NoResultFound" in letters[0].error
    assert service.queue.stats().by_state == {"failed": 1}

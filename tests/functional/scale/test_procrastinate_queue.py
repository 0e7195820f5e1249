"""The procrastinate backend in one process, on the real PostgreSQL: the same tasks and idempotency
keys as the local table, dead letters with their error, transient errors retried, stats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from powerx_governance.auth.model import Role
from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.jobs.interface import QueueBackend
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.shards import shard_progress
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import (
    LiveServer,
    ServiceFactory,
    built_services,
    issue_token,
    postgres_getter,
    provisioned_database,
    wait_until,
)
from tests.functional.console.support import sign_in


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


def _recommendations(service: GovernanceService) -> list[tuple[Any, ...]]:
    with service.factory() as session:
        rows = session.execute(
            select(
                RecommendationRow.tenant_uuid,
                RecommendationRow.plugin_id,
                RecommendationRow.action,
                RecommendationRow.target_version,
            )
        ).all()
    return sorted(tuple(r) for r in rows)


def test_a_sharded_scan_finds_what_one_job_finds(
    make_pg_service: ServiceFactory, make_service: ServiceFactory, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the reference is the embedded default")
    reference = make_service()
    reference.request_scan(ScanKind.FULL, ScanTrigger.API)
    reference.run_pending()
    sharded = make_pg_service(
        POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0", POWERX_SCAN_SHARD_SIZE="7"
    )
    scan_id = sharded.request_scan(ScanKind.FULL, ScanTrigger.API)
    sharded.run_pending()
    with sharded.factory() as session:
        row = session.get_one(ScanRow, scan_id)
        progress = shard_progress(session, scan_id)
    with reference.factory() as session:
        expected = session.execute(select(ScanRow)).scalar_one()
    assert row.status == expected.status
    assert (row.tenants_total, row.tenants_scanned, row.installations, row.findings) == (
        expected.tenants_total,
        expected.tenants_scanned,
        expected.installations,
        expected.findings,
    )
    assert row.errors == expected.errors
    assert progress is not None
    assert progress["shards"] == 15  # 100 tenants by 7
    assert progress["by_status"] == {"done": 15}
    assert _recommendations(sharded) == _recommendations(reference)


def test_the_console_scans_page_lists_the_dead_letters(make_pg_service: ServiceFactory) -> None:
    service = make_pg_service(POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    with transaction(service.factory) as session:
        queue.enqueue(session, "scan", {"scan_id": "gone"}, key="broken-for-the-console", now=service.clock())
    service.run_pending()
    token = issue_token(service, Role.OPERATOR)
    with (
        LiveServer(service, background=False) as live,
        httpx.Client(base_url=live.base_url, timeout=30) as client,
    ):
        sign_in(client, token, "/console/scans")
        page = client.get("/console/scans").text
    assert 'id="dead-letters"' in page
    assert "broken-for-the-console" in page
    assert "Queue procrastinate" in page


def test_the_local_queue_runs_a_sharded_scan_too(make_service: ServiceFactory, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the embedded default")
    reference = make_service()
    reference.request_scan(ScanKind.FULL, ScanTrigger.API)
    reference.run_pending()
    sharded = reference.reconfigured({"POWERX_SCAN_SHARD_SIZE": "30"})
    scan_id = sharded.request_scan(ScanKind.FULL, ScanTrigger.API)
    before = _recommendations(reference)
    sharded.run_pending()
    with sharded.factory() as session:
        row = session.get_one(ScanRow, scan_id)
        progress = shard_progress(session, scan_id)
    sharded.stop()
    assert row.status == ScanStatus.SUCCEEDED.value
    assert row.changes == 0  # the same fleet again: nothing changed
    assert progress is not None
    assert progress["by_status"] == {"done": 4}
    assert _recommendations(reference) == before


def test_serve_without_no_worker_runs_a_procrastinate_worker_in_process(
    make_pg_service: ServiceFactory,
) -> None:
    service = make_pg_service(
        POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="1", POWERX_SCAN_SHARD_SIZE="40"
    )
    service.start()
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)

    def finished() -> bool:
        with service.factory() as session:
            return session.get_one(ScanRow, scan_id).status == ScanStatus.SUCCEEDED.value

    wait_until(finished, timeout=120, interval=0.2)
    service.stop()  # the worker thread stops with the service


@pytest.mark.parametrize("count", [2, 100])  # a handful (one statement) and a batch (bulk insert)
def test_jobs_enqueued_in_a_batch_are_procrastinate_jobs_too(
    make_pg_service: ServiceFactory, count: int
) -> None:
    service = make_pg_service(POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    jobs = [queue.NewJob("scan_shard", {"scan_id": "none", "shard": n}, f"batch:{n}") for n in range(count)]
    with transaction(service.factory) as session:
        assert queue.enqueue_many(session, [*jobs, jobs[0]], now=service.clock()) == count
    assert service.queue.stats().by_state == {"todo": count}
    assert service.run_pending() == count
    with service.factory() as session:
        assert queue.counts(session) == {"done": count}

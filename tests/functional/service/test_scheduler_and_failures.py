"""Scheduling across instances, and scans whose sources fail: retries, coverage truth, alerts.

Real services on a shared SQLite file or PostgreSQL schema, real HTTP sources (the loopback fake
of the PowerX tenant directory and catalog service, or a port nothing listens on). The clock is
moved by hand, so a retry due "in 90 s" runs at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import select, text

from powerx_governance.auth.model import Role
from powerx_governance.jobs.tables import JobRow
from powerx_governance.policy.loader import load_rules
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.tables import AlertRow, ScanRow
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings
from tests.conftest import (
    NOW,
    RULES,
    Backend,
    FakeClock,
    LiveServer,
    ServiceFactory,
    issue_token,
    wait_until,
)
from tests.functional.service.support import API, Inputs, metric, metric_sum, wait_for_scan
from tests.functional.sources.fake_directory import FakePowerX, Faults, closed_port_url, tenant_uuid

SCAN_INTERVAL: Final = 300.0  # defaults.scan_interval of the shipped rules (5m)
RETRY_DELAY: Final = 90.0
TENANTS: Final = 100
HTTP_ATTEMPTS: Final = 5  # the default HttpPolicy of the service's HTTP sources


@pytest.fixture
def small_inputs(tmp_path: Path) -> Inputs:
    """Two example tenants: scheduled scans stay cheap."""
    return Inputs(tmp_path / "inputs", tenants=["sandbox-tenant-a", "acme-retail"])


def _scans(service: GovernanceService) -> list[ScanRow]:
    with service.factory() as session:
        return list(
            session.execute(select(ScanRow).order_by(ScanRow.requested_at, ScanRow.attempt)).scalars()
        )


def _job(service: GovernanceService, scan_id: str) -> JobRow:
    with service.factory() as session:
        return session.execute(select(JobRow).where(JobRow.idempotency_key == f"scan:{scan_id}")).scalar_one()


def _alerts(service: GovernanceService) -> list[AlertRow]:
    with service.factory() as session:
        return list(session.execute(select(AlertRow).order_by(AlertRow.id)).scalars())


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run `calls` at the same moment, one thread each; their results, or the first exception raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if failures:
        raise failures[0]
    return results


def _slot(moment: datetime) -> str:
    return datetime.fromtimestamp(
        moment.timestamp() // SCAN_INTERVAL * SCAN_INTERVAL, moment.tzinfo
    ).isoformat()


# -- the scheduler ---------------------------------------------------------------------------------


def _two_instances(make_service: ServiceFactory, inputs: Inputs, clock: FakeClock) -> list[GovernanceService]:
    """Two services on the same database, no worker threads: the test runs their queues."""
    return [
        make_service(
            clock=clock,
            POWERX_WORKER="0",
            **inputs.sources,
        )
        for _ in range(2)
    ]


def test_one_scheduled_scan_per_slot_across_instances(
    make_service: ServiceFactory, small_inputs: Inputs
) -> None:
    """Two instances, three threads each, tick at the same moment of a slot: one scan, run once."""
    assert load_rules(RULES).defaults.scan_interval == "5m"
    clock = FakeClock(NOW + timedelta(seconds=7))
    instances = _two_instances(make_service, small_inputs, clock)
    slots = []
    for _ in range(3):
        slots.append(_slot(clock()))
        ticks = _concurrently([instance.schedule_tick for instance in instances for _ in range(3)])
        [scan_id] = [tick for tick in ticks if tick is not None]
        assert instances[0].schedule_tick() is None  # a later tick in the same slot adds nothing
        _concurrently([instance.run_pending for instance in instances])  # both work the queue at once
        [scan] = [s for s in _scans(instances[1]) if s.scan_id == scan_id]
        assert (scan.status, scan.schedule_slot, scan.tenants_scanned) == ("succeeded", slots[-1], 2)
        job = _job(instances[0], scan_id)
        assert (job.status, job.attempts) == ("done", 1)  # claimed once: by one instance, one time
        clock.advance(SCAN_INTERVAL)
    scheduled = [s for s in _scans(instances[0]) if s.trigger == ScanTrigger.SCHEDULE.value]
    assert [s.schedule_slot for s in scheduled] == slots
    assert {(s.kind, s.requested_by) for s in scheduled} == {("full", "scheduler")}


def _lock_waiters(service: GovernanceService, table: str) -> int:
    """PostgreSQL sessions waiting for a lock on `table` of this test's schema."""
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(:table)")
    with service.engine.connect() as connection:
        return int(connection.execute(query, {"table": table}).scalar_one())


def test_two_instances_scanning_at_once_both_succeed(
    make_service: ServiceFactory, small_inputs: Inputs, backend: Backend
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite is the embedded single-worker store; instances scan at once on PostgreSQL")
    clock = FakeClock()
    instances = _two_instances(make_service, small_inputs, clock)
    scans = [instance.request_scan(ScanKind.FULL, ScanTrigger.API) for instance in instances]
    with instances[0].engine.connect() as locker:
        # Hold both scans at their first catalog write, so they really overlap, then let them go.
        locker.execute(text("LOCK TABLE plugins IN EXCLUSIVE MODE"))
        workers = [threading.Thread(target=instance.run_pending) for instance in instances]
        for worker in workers:
            worker.start()
        with contextlib.suppress(AssertionError):  # a store that serialises scans never has two waiting
            wait_until(lambda: _lock_waiters(instances[0], "plugins") == 2, timeout=5)
        locker.commit()
    for worker in workers:
        worker.join(timeout=60)
    clock.advance(3)  # scans are serialised by a database lock: the one that found it taken runs now
    for instance in instances:
        instance.run_pending()
    finished = {s.scan_id: s.status for s in _scans(instances[0])}
    assert [finished[s] for s in scans] == ["succeeded", "succeeded"]
    assert [(_job(instances[0], s).status, _job(instances[0], s).attempts) for s in scans] == [
        ("done", 1)
    ] * 2


def test_a_retry_delay_over_two_minutes_is_refused() -> None:
    assert load_settings({"POWERX_SCAN_RETRY_DELAY": "2m"}).retry_delay_seconds == 120
    with pytest.raises(ValueError, match="at most 120s"):
        load_settings({"POWERX_SCAN_RETRY_DELAY": "121s"})


# -- a catalog service that is down ----------------------------------------------------------------


@pytest.fixture
def operator_of(make_service: ServiceFactory) -> Iterator[Callable[[GovernanceService], httpx.Client]]:
    """`operator_of(service)`: an operator's client of `service` served over HTTP (no worker thread)."""
    stack: list[tuple[LiveServer, httpx.Client]] = []

    def serve(service: GovernanceService) -> httpx.Client:
        live = LiveServer(service, background=False).__enter__()
        client = live.client(issue_token(service, Role.OPERATOR))
        stack.append((live, client))
        return client

    yield serve
    for live, client in stack:
        client.close()
        live.__exit__()


def _retry_of(client: httpx.Client, scan_id: str) -> dict[str, Any]:
    retries = [s for s in client.get(f"{API}/scans").json()["items"] if s["retry_of"] == scan_id]
    assert len(retries) == 1, retries
    retry: dict[str, Any] = retries[0]
    return retry


def test_an_unreachable_catalog_fails_the_scan_which_is_retried_then_alerted(
    make_service: ServiceFactory,
    small_inputs: Inputs,
    operator_of: Callable[[GovernanceService], httpx.Client],
) -> None:
    clock = FakeClock()
    service = make_service(
        clock=clock,
        POWERX_WORKER="0",
        POWERX_TENANT_SOURCE=str(small_inputs.manifests),
        POWERX_CATALOG_SOURCE=closed_port_url(),
        POWERX_SCAN_RETRY_DELAY=f"{RETRY_DELAY:.0f}s",
    )
    client = operator_of(service)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    rules = load_rules(RULES).defaults
    failed = []
    for attempt in range(1, rules.escalation_after + 1):
        service.run_pending()
        scan = client.get(f"{API}/scans/{scan_id}").json()
        assert (scan["status"], scan["attempt"], scan["coverage"]["rate"]) == ("failed", attempt, 0.0)
        assert "catalog-service" in scan["failure"]
        assert "cannot connect" in scan["failure"]
        retry = _retry_of(client, scan_id)
        assert (retry["kind"], retry["trigger"], retry["status"], retry["attempt"]) == (
            "full",
            "retry",
            "queued",
            attempt + 1,
        )
        due = _job(service, retry["scan_id"]).run_after - clock()
        assert due == timedelta(seconds=RETRY_DELAY) <= timedelta(minutes=2)
        assert service.run_pending() == 0  # not due yet
        metrics = client.get("/metrics").text
        assert metric(metrics, "version_scan_failure_total", kind="full") == attempt
        assert metric(metrics, "version_scan_consecutive_failures") == attempt
        assert metric(metrics, "version_scan_coverage_ratio") == 0.0
        assert metric(metrics, "version_source_errors_total", source="catalog-service", kind="connect") == (
            attempt * HTTP_ATTEMPTS
        )
        # what the Prometheus alert carries: the failing source and how its last attempt failed
        cause = {"source": "catalog-service", "reason": "connect"}
        assert metric(metrics, "version_scan_last_failure_info", **cause) == 1
        assert len(_alerts(service)) == (1 if attempt == rules.escalation_after else 0)
        clock.advance(RETRY_DELAY)
        failed.append(scan_id)
        scan_id = retry["scan_id"]
    [alert] = _alerts(service)
    assert (alert.kind, alert.channel) == ("scan_failures", rules.alert_channel)
    assert alert.message.startswith(f"{rules.escalation_after} consecutive full scans failed")
    assert (alert.state, alert.resolved_at) == ("firing", None)
    assert alert.cause is not None
    assert alert.cause.startswith("catalog-service: cannot connect")
    assert "Connection refused" in alert.cause
    assert f"after {HTTP_ATTEMPTS} attempts" in alert.cause
    assert alert.cause in alert.message
    assert alert.data["last_scan"] == failed[-1]
    assert metric(client.get("/metrics").text, "version_alerts_total", kind="scan_failures") == 1


def test_a_scan_that_crashes_is_marked_failed(make_service: ServiceFactory, small_inputs: Inputs) -> None:
    clock = FakeClock()
    service = make_service(
        clock=clock,
        POWERX_WORKER="0",
        **small_inputs.sources,
    )

    def crash(*_: object) -> None:
        raise RuntimeError("the follow-up store is gone")

    service.runtime = replace(service.runtime, change_hooks=(*service.runtime.change_hooks, crash))
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending()
    assert _job(service, scan_id).status == "done"  # the job handled the failure: nothing left to retry
    [scan] = [s for s in _scans(service) if s.scan_id == scan_id]
    assert scan.status == "failed"
    assert "RuntimeError: the follow-up store is gone" in (scan.failure or "")
    [retry] = [s for s in _scans(service) if s.retry_of == scan_id]
    assert retry.trigger == ScanTrigger.RETRY.value
    assert metric(service.metrics.render().decode(), "version_scan_failure_total", kind="full") == 1


# -- a flaky tenant directory ----------------------------------------------------------------------


def _directory_service(make_service: ServiceFactory, fake: FakePowerX) -> GovernanceService:
    return make_service(POWERX_TENANT_SOURCE=fake.base_url, POWERX_CATALOG_SOURCE=fake.base_url)


def test_retries_reach_full_coverage_through_a_directory_failing_a_fifth_of_requests(
    make_service: ServiceFactory,
) -> None:
    with FakePowerX(TENANTS, faults=Faults(fail_rate=0.2, seed=20261130)) as fake:
        service = _directory_service(make_service, fake)
        with LiveServer(service) as live, live.client(issue_token(service, Role.OPERATOR)) as client:
            started = client.post(f"{API}/scan", json={})
            scan = wait_for_scan(client, started.json()["scan_id"])
            metrics = client.get("/metrics").text
    coverage = scan["coverage"]
    assert coverage["tenants_total"] == TENANTS
    assert coverage["rate"] == coverage["tenants_scanned"] / TENANTS >= 0.99
    assert scan["status"] == "succeeded"
    assert scan["findings"] == coverage["tenants_scanned"]  # crm 2.3.0 with a critical advisory, each
    assert fake.failures_served >= 0.1 * fake.requests  # the faults really happened …
    assert metric_sum(metrics, "version_source_errors_total") == fake.failures_served  # … each one retried
    assert metric(metrics, "version_scan_coverage_ratio") == coverage["rate"]


def test_tenants_the_directory_never_serves_count_against_coverage(make_service: ServiceFactory) -> None:
    down = {tenant_uuid(i): 503 for i in (7, 42, 77)}
    with FakePowerX(TENANTS, faults=Faults(always_fail=down)) as fake:
        service = _directory_service(make_service, fake)
        with LiveServer(service) as live, live.client(issue_token(service, Role.OPERATOR)) as client:
            started = client.post(f"{API}/scan", json={})
            scan = wait_for_scan(client, started.json()["scan_id"])
            report = client.get(started.json()["report_url"]).json()
            retry = _retry_of(client, scan["scan_id"])
            metrics = client.get("/metrics").text
        assert all(fake.hits[tenant] == HTTP_ATTEMPTS for tenant in down)
    assert scan["status"] == "incomplete"  # 97 % is below min_coverage
    assert scan["coverage"] == {
        "tenants_total": TENANTS,
        "tenants_scanned": 97,
        "tenants_stale": 0,
        "tenants_failed": 3,
        "installations": 97,
        "rate": 0.97,
    }
    assert report["coverage"] == {
        "tenants_total": TENANTS,
        "tenants_scanned": 97,
        "tenants_stale": 0,
        "tenants_failed": 3,
        "installations": 97,
        "rate": 0.97,
    }
    assert len(report["findings"]) == 97
    assert {e["tenant_uuid"] for e in report["errors"]} == set(down)
    assert all(
        "HTTP 503" in e["error"] and f"after {HTTP_ATTEMPTS} attempts" in e["error"] for e in report["errors"]
    )
    assert (retry["trigger"], retry["status"]) == ("retry", "queued")
    assert metric(metrics, "version_scan_coverage_ratio") == 0.97
    assert metric(metrics, "version_scan_failure_total", kind="full") == 1

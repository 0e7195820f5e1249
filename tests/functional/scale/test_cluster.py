"""Issue 13's functional test: 2 API processes and 3 worker processes on the real PostgreSQL.

A few thousand synthetic tenants; the scheduled full scan (requested by the procrastinate periodic
tick, once per slot whatever the number of workers) is cut into shards; one worker is SIGKILLed
while it holds a shard (the trigger: the shard row says it is running on that worker's pid, and
still says so after the kill). The scan finishes with exact coverage, and the store holds exactly
what a single-process, unsharded scan of the same fleet writes: the same recommendations, the
same number of revisions, notification events, entries and cards, CloudEvents and audit records.
A job that always fails lands in the dead letters with its error.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from bench.synthetic import generate
from sqlalchemy import Engine, text

from powerx_governance.db.migrate import upgrade
from powerx_governance.db.session import make_engine, sqlite_url, transaction
from powerx_governance.jobs import queue
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings
from tests.conftest import (
    COMPAT,
    RULES,
    FakeClock,
    built_services,
    postgres_getter,
    provisioned_database,
    wait_until,
)
from tests.functional.cli import POWERX, REPO
from tests.functional.scale.cluster import Process, cluster

TENANTS: Final = 2_000
INSTALLATIONS: Final = 10
SHARD_SIZE: Final = 100  # 20 shards over 3 workers
API: Final = "/internal/version/governance"
# console cards at once for critical findings, the rest in the daily digest: fewer delivery jobs
ROUTES: Final = """schema: powerx.notification-routes/v1
recipients:
  console:
    channel: console
    immediate: [critical]
    digest: daily
routes:
  default: [console]
"""
COUNTED: Final = (
    "SELECT count(*) FROM recommendations",
    "SELECT count(*) FROM recommendation_revisions",
    "SELECT count(*) FROM notification_events",
    "SELECT count(*) FROM notification_entries",
    "SELECT count(*) FROM notification_console_cards",
    "SELECT count(*) FROM notification_deliveries",
    "SELECT count(*) FROM events",
    "SELECT count(DISTINCT id) FROM events",
    "SELECT count(*) FROM audit_events",
    "SELECT count(DISTINCT event_id) FROM audit_events",
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    generate(out, tenants=TENANTS, installations_per_tenant=INSTALLATIONS, plugins=120, advisories=200)
    rules = out / "governance_rules.yaml"
    # one scheduled slot a day: the test sees the first slot's scan and no other
    rules.write_text(re.sub(r"scan_interval: \S+", "scan_interval: 24h", RULES.read_text()))
    (out / "notification_routes.yaml").write_text(ROUTES)
    return out


def _environ(url: str, fleet: Path, var: Path) -> dict[str, str]:
    return {
        **os.environ,
        "POWERX_DATABASE_URL": url,
        "POWERX_VAR_DIR": str(var),
        "POWERX_TENANT_SOURCE": str(fleet / "manifests.jsonl"),
        "POWERX_CATALOG_SOURCE": str(fleet / "catalog.json"),
        "POWERX_RULES": str(fleet / "governance_rules.yaml"),
        "POWERX_COMPAT": str(COMPAT),
        "POWERX_NOTIFICATION_ROUTES": str(fleet / "notification_routes.yaml"),
        "POWERX_QUEUE_BACKEND": "procrastinate",
        "POWERX_SCAN_SHARD_SIZE": str(SHARD_SIZE),
        "POWERX_WORKER_TICK": "1s",
        "POWERX_WORKER_HEARTBEAT": "1s",
        "POWERX_WORKER_STALLED_AFTER": "3s",
        "POWERX_WORKER_POLL": "0.5s",
    }


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {query: int(connection.execute(text(query)).scalar_one()) for query in COUNTED}


def _recommendations(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT tenant_uuid, plugin_id, action, target_version, risk_level FROM recommendations")
        )
        return {tuple(r) for r in rows}


@pytest.fixture(scope="module")
def reference(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """What one process, one unsharded scan job, writes for the same fleet (the embedded default)."""
    var = tmp_path_factory.mktemp("reference")
    url = sqlite_url(var / "reference.db")
    env = _environ(url, fleet, var)
    env = {k: v for k, v in env.items() if k.startswith("POWERX_") and k != "POWERX_QUEUE_BACKEND"}
    env["POWERX_SCAN_SHARD_SIZE"] = "0"
    with built_services(url, var) as build:
        service = build(clock=FakeClock(datetime.now(UTC)), **env)
        service.request_scan(ScanKind.FULL, ScanTrigger.SCHEDULE)
        service.run_pending(limit=10_000)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _token(env: dict[str, str]) -> str:
    import subprocess  # noqa: PLC0415 - only this helper runs the CLI

    made = subprocess.run(
        [str(POWERX), "version", "token", "create", "--name", "scale-operator", "--role", "operator"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def _scheduled_scan(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.execute(text("SELECT scan_id FROM scans WHERE trigger = 'schedule'")).scalar()


def _kill_mid_shard(engine: Engine, workers: list[Process], scan_id: str) -> tuple[int, list[Process]]:
    """SIGKILL a worker while a shard row says it runs there, and still says so after: (shard, the
    workers left running; one killed after its shard finished is not among them)."""
    by_pid = {str(w.popen.pid): w for w in workers}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            running = connection.execute(
                text("SELECT shard, worker FROM scan_shards WHERE scan_id = :s AND status = 'running'"),
                {"s": scan_id},
            ).all()
        for shard, worker in running:
            victim = by_pid.get(str(worker).rsplit(":", 1)[-1])
            if victim is None:
                continue
            victim.kill()
            with engine.connect() as connection:
                status, attempts = connection.execute(
                    text("SELECT status, attempts FROM scan_shards WHERE scan_id = :s AND shard = :n"),
                    {"s": scan_id, "n": shard},
                ).one()
            if status == "running" and attempts == 1:
                return int(shard), [w for w in workers if w is not victim]
            workers = [w for w in workers if w is not victim]  # it finished first: kill another
            by_pid.pop(str(victim.popen.pid))
            if len(workers) < 2:
                pytest.fail("no worker was caught mid-shard")
        time.sleep(0.01)
    pytest.fail("no shard ran within 60 s")


def test_a_killed_worker_loses_and_doubles_nothing(
    fleet: Path, reference: Engine, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with provisioned_database("postgresql", tmp_path, postgres_getter(request)) as url:
        engine = make_engine(url)
        upgrade(engine)  # once, before the processes start
        env = _environ(url, fleet, tmp_path)
        token = _token(env)
        try:
            _run_cluster(env, engine, reference, tmp_path, token)
        finally:
            engine.dispose()


def _run_cluster(env: dict[str, str], engine: Engine, reference: Engine, tmp_path: Path, token: str) -> None:
    with cluster(env, tmp_path) as running:
        apis = [running.api("api-1"), running.api("api-2")]
        workers = [running.worker(f"worker-{n}", concurrency=2) for n in (1, 2, 3)]
        running.wait_ready()
        wait_until(lambda: _scheduled_scan(engine) is not None, timeout=60, interval=0.1)
        scan_id = _scheduled_scan(engine)
        assert scan_id is not None
        shard, survivors = _kill_mid_shard(engine, workers, scan_id)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=apis[0].base, headers=headers, timeout=10) as client:
            wait_until(
                lambda: client.get(f"{API}/scans/{scan_id}").json()["status"] != "running",
                timeout=90,
                interval=0.5,
            )
            scan = client.get(f"{API}/scans/{scan_id}").json()
            progress = client.get(f"{API}/scans/{scan_id}/shards").json()
        _check_scan(scan, progress, shard)
        wait_until(lambda: _pending(engine) == 0, timeout=180, interval=0.5)  # the deliveries it caused
        _check_store(engine, reference, scan_id)
        _check_dead_letter(env, apis[1], headers)
        _check_worker_probes(survivors)
        _check_periodic(engine, survivors)


def _pending(engine: Engine) -> int:
    """Jobs waiting or running, the periodic tick aside."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs"
                    " WHERE status IN ('todo', 'doing') AND task_name <> 'powerx.tick'"
                )
            ).scalar_one()
        )


def _check_scan(scan: dict[str, Any], progress: dict[str, Any], shard: int) -> None:
    assert scan["status"] == "succeeded", scan
    coverage = scan["coverage"]
    assert coverage["tenants_total"] == coverage["tenants_scanned"] == TENANTS
    assert coverage["installations"] == TENANTS * INSTALLATIONS
    assert progress["shards"] == progress["finished"] == TENANTS // SHARD_SIZE
    assert progress["by_status"] == {"done": TENANTS // SHARD_SIZE}
    killed = next(s for s in progress["items"] if s["shard"] == shard)
    assert killed["attempts"] == 2  # run again, elsewhere, after its worker died


def _check_store(engine: Engine, reference: Engine, scan_id: str) -> None:
    assert _recommendations(engine) == _recommendations(reference)
    assert _counts(engine) == _counts(reference)
    with engine.connect() as connection:
        audited = connection.execute(
            text("SELECT count(*) FROM audit_events WHERE resource_id = :s"), {"s": scan_id}
        ).scalar_one()
    assert audited == 1  # the scan's audit record, written once by the finish job


def _check_dead_letter(env: dict[str, str], api: Process, headers: dict[str, str]) -> None:
    """A job that always fails (a scan that does not exist) is a dead letter, with its error."""
    settings = load_settings({**env, "POWERX_WORKER": "0"})
    service = GovernanceService.create(settings, migrate=False)  # jobs it enqueues go to procrastinate
    try:
        with transaction(service.factory) as session:
            queue.enqueue(
                session, "scan", {"scan_id": "no-such-scan"}, key="always-fails", now=service.clock()
            )
    finally:
        service.stop()
    with httpx.Client(base_url=api.base, headers=headers, timeout=10) as client:

        def dead() -> bool:
            items = client.get(f"{API}/jobs/dead").json()["items"]
            return any(item["key"] == "always-fails" for item in items)

        wait_until(dead, timeout=30, interval=0.2)
        letter = next(i for i in client.get(f"{API}/jobs/dead").json()["items"] if i["key"] == "always-fails")
        # The ledger records the failure, then the task raises and procrastinate marks its job failed
        # in a transaction of its own: the stats can say "doing" for the moment in between.
        wait_until(
            lambda: client.get(f"{API}/jobs/stats").json()["by_state"].get("failed") == 1,
            timeout=30,
            interval=0.2,
        )
        stats = client.get(f"{API}/jobs/stats").json()
    assert letter["task"] == "scan"
    assert letter["attempts"] == 1  # not transient: no retry
    assert "NoResultFound" in letter["error"]
    assert stats["backend"] == "procrastinate"
    assert stats["by_state"].get("failed") == 1


def _check_worker_probes(workers: list[Process]) -> None:
    for worker in workers:
        assert httpx.get(f"{worker.base}/readyz", timeout=5).json()["status"] == "ready"
        metrics = httpx.get(f"{worker.base}/metrics", timeout=5).text
        for name in ("version_queue_depth", "version_queue_jobs", "version_queue_oldest_waiting_seconds"):
            assert f"\n{name}" in metrics


def _ticks(workers: list[Process]) -> int:
    total = 0
    for worker in workers:
        metrics = httpx.get(f"{worker.base}/metrics", timeout=5).text
        found = re.search(r"^version_queue_ticks_total (\S+)$", metrics, re.MULTILINE)
        assert found is not None
        total += int(float(found.group(1)))
    return total


def _check_periodic(engine: Engine, workers: list[Process]) -> None:
    """Every worker defers the 1 s tick, yet it runs at most once per period across them all; the
    day's slot has one scheduled scan."""
    before, started = _ticks(workers), time.monotonic()
    # the first tick is waited for (a loaded machine may be slow to run it), then 4 s at least are counted
    wait_until(lambda: _ticks(workers) > before, timeout=60, interval=0.2)
    time.sleep(max(0.0, started + 4 - time.monotonic()))
    ran, seconds = _ticks(workers) - before, time.monotonic() - started
    assert 1 <= ran <= seconds + 1.5, (ran, seconds)
    with engine.connect() as connection:
        scheduled = connection.execute(
            text(
                "SELECT schedule_slot, count(*) FROM scans WHERE trigger = 'schedule' GROUP BY schedule_slot"
            )
        ).all()
    assert [count for _, count in scheduled] == [1]

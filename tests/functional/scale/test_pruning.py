"""Finished jobs are pruned from the ledger after their retention, dead letters after theirs, in
bounded batches, by the periodic tick; old scans' shard rows go too. What a pruned key protected
stays protected: a job queued again under it finds its effect recorded and does nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import func, select, text

from powerx_governance.auth.model import Role
from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.prune import prune_finished
from powerx_governance.jobs.tables import JobRow
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.shard_tables import ScanPlanRow, ScanShardRow
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token, service_env
from tests.functional.cli import powerx_with

DAY: Final = timedelta(days=1).total_seconds()


def _ledger(service: GovernanceService) -> dict[str, int]:
    with service.factory() as session:
        return dict(session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())


def _keys(service: GovernanceService) -> set[str]:
    with service.factory() as session:
        return set(session.execute(select(JobRow.idempotency_key)).scalars())


def _enqueue(service: GovernanceService, key: str, task: str = "scan", scan_id: str = "gone") -> None:
    with transaction(service.factory) as session:
        assert queue.enqueue(
            session, task, {"scan_id": scan_id}, key=key, now=service.clock(), max_attempts=1
        )


def _counts(service: GovernanceService) -> tuple[int, ...]:
    with service.factory() as session:
        return tuple(
            session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608 - names below
            for table in (
                "recommendations",
                "recommendation_revisions",
                "notification_events",
                "audit_events",
            )
        )


def test_the_tick_prunes_finished_jobs_after_their_retention_and_dead_letters_after_theirs(
    make_service: ServiceFactory,
) -> None:
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_JOBS_RETENTION="2d", POWERX_JOBS_DEAD_RETENTION="10d")
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending(limit=10_000)
    _enqueue(service, "always-fails")  # its scan does not exist: a dead letter at once
    service.run_pending(limit=10_000)
    clock.advance(DAY)
    _enqueue(service, "queued-long-ago", scan_id=scan_id)  # due only later: never pruned while waiting
    with transaction(service.factory) as session:
        session.execute(
            text("UPDATE jobs SET run_after = :later WHERE idempotency_key = 'queued-long-ago'"),
            {"later": clock() + timedelta(days=60)},
        )
    done = _ledger(service)[JobStatus.DONE.value]
    assert done > 1
    assert _ledger(service)[JobStatus.DEAD.value] == 1

    clock.advance(DAY)  # 2 days after the first jobs finished: not yet
    service.schedule_tick()
    assert f"scan:{scan_id}" in _keys(service)
    clock.advance(DAY + 1)
    service.schedule_tick()  # the tick's own scheduled scan queues a job now: it is not finished
    ledger = _ledger(service)
    assert JobStatus.DONE.value not in ledger
    assert ledger[JobStatus.DEAD.value] == 1  # the dead letter stays for operators
    assert "queued-long-ago" in _keys(service)
    clock.advance(8 * DAY)
    service.schedule_tick()
    assert "always-fails" not in _keys(service)
    assert "queued-long-ago" in _keys(service)


def test_pruning_goes_in_bounded_batches_oldest_first(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = make_service(clock=clock)
    for n in range(7):
        _enqueue(service, f"noop:{n}", task="no-such-task")
        with transaction(service.factory) as session:
            session.execute(
                text("UPDATE jobs SET status = 'done', finished_at = :at WHERE idempotency_key = :key"),
                {"at": clock(), "key": f"noop:{n}"},
            )
        clock.advance(60)
    cut = clock()
    assert prune_finished(service.factory, done_before=cut, dead_before=cut, batch=2, batches=2) == 4
    assert _keys(service) == {"noop:4", "noop:5", "noop:6"}
    assert prune_finished(service.factory, done_before=cut, dead_before=cut, batch=2, batches=5) == 3
    assert not _keys(service)


def test_a_job_queued_again_after_its_key_was_pruned_doubles_nothing(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = make_service(clock=clock)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending(limit=10_000)
    before = _counts(service)
    clock.advance(8 * DAY)
    assert prune_finished(service.factory, done_before=clock(), dead_before=clock()) > 0
    assert f"scan:{scan_id}" not in _keys(service)
    _enqueue(service, f"scan:{scan_id}", scan_id=scan_id)  # at-least-once: the same job again
    assert service.run_pending(limit=10_000) >= 1
    with service.factory() as session:
        assert session.get_one(ScanRow, scan_id).status == ScanStatus.SUCCEEDED.value
    assert _counts(service) == before


def test_old_scans_shard_rows_are_pruned(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_SCAN_SHARD_SIZE="30", POWERX_JOBS_RETENTION="2d")
    old = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending(limit=10_000)
    clock.advance(3 * DAY)
    recent = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending(limit=10_000)
    service.schedule_tick()
    with service.factory() as session:
        plans = set(session.execute(select(ScanPlanRow.scan_id)).scalars())
        shards = set(session.execute(select(ScanShardRow.scan_id)).scalars())
        assert session.get_one(ScanRow, old).status == ScanStatus.SUCCEEDED.value  # the outcome stays
    assert old not in plans | shards
    assert recent in plans & shards


def test_a_dead_procrastinate_job_goes_with_its_ledger_row(
    make_service: ServiceFactory, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("procrastinate runs on PostgreSQL")
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_QUEUE_BACKEND="procrastinate", POWERX_WORKER="0")
    _enqueue(service, "always-fails")
    service.run_pending()
    assert [d.key for d in service.queue.dead_letters()] == ["always-fails"]

    def failed() -> int:
        with service.factory() as session:
            found = session.execute(text("SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'"))
            return int(found.scalar_one())

    assert failed() == 1
    clock.advance(31 * DAY)
    service.schedule_tick()
    assert service.queue.dead_letters() == []
    assert failed() == 0


def _dead_letter(service: GovernanceService, key: str) -> int:
    _enqueue(service, key)
    service.run_pending()
    (letter,) = [d for d in service.queue.dead_letters() if d.key == key]
    return letter.id


def test_an_operator_clears_a_dead_letter_over_http_and_the_cli(
    make_service: ServiceFactory, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service()
    first, second = _dead_letter(service, "fails-1"), _dead_letter(service, "fails-2")
    token = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(token) as client:
        assert client.delete(f"/internal/version/governance/jobs/dead/{first}").json() == {"cleared": [first]}
        assert client.delete(f"/internal/version/governance/jobs/dead/{first}").status_code == 404
    env = service_env(database_url, tmp_path)
    cleared = powerx_with(env, "version", "jobs", "clear", str(second), "--actor", "ops:alice")
    assert cleared.returncode == 0, cleared.stderr
    again = powerx_with(env, "version", "jobs", "clear", str(second))
    assert again.returncode == 2
    assert "not dead letters: " in again.stderr
    assert service.queue.dead_letters() == []
    cleared_here = [r for r in caplog.records if r.getMessage() == "dead letter cleared"]
    logged = [(getattr(r, "job_id", None), getattr(r, "key", None)) for r in cleared_here]
    assert logged == [(first, "fails-1")]  # (the CLI logs in its own process)
    assert all(getattr(r, "actor", None) for r in cleared_here)

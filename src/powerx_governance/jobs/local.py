"""The local backend: jobs claimed from the jobs table by this process (the embedded default).

The service's worker thread calls `run_pending` in a loop; several instances may share one
PostgreSQL database (claims are conditional updates).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.jobs.interface import DeadLetter, Handlers, QueueBackend, QueueStats
from powerx_governance.jobs.tables import JobRow

log = logging.getLogger("powerx.jobs")
POSTPONE = timedelta(seconds=2)
Outcome = Callable[[Session], None]
"""What to record of a job that ran, written in the next transaction."""


def _fail(session: Session, job: queue.ClaimedJob, error: str, now: datetime) -> None:
    queue.fail(session, job, error, now)


def _for_each(jobs: list[queue.ClaimedJob], record: Callable[[Session, queue.ClaimedJob], None]) -> Outcome:
    """The outcome that records `record` of each of the jobs that ran together."""

    def outcome(session: Session) -> None:
        for job in jobs:
            record(session, job)

    return outcome


def dead_letter(row: JobRow) -> DeadLetter:
    return DeadLetter(
        row.id, row.task, row.idempotency_key, row.payload, row.attempts, row.last_error, row.finished_at
    )


@dataclass
class LocalQueue:
    factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    worker_name: str
    handlers: Handlers
    backend: QueueBackend = QueueBackend.LOCAL

    def run_pending(self, limit: int = 100, *, tasks: frozenset[str] | None = None) -> int:
        runnable = self.handlers.runnable()
        if runnable is not None:
            tasks = runnable & (tasks if tasks is not None else frozenset(self.handlers.tasks))
        ran = 0
        outcome: Outcome | None = None
        while True:
            # a job's outcome is written in the transaction that claims the next one: one commit
            # fewer per job (a burst of decisions leaves about a delivery job each)
            with transaction(self.factory) as session:
                if outcome is not None:
                    outcome(session)
                jobs = self._claim(session, tasks) if ran < limit else []
            if not jobs:
                return ran
            outcome = self._run(jobs)
            ran += len(jobs)

    def _claim(self, session: Session, tasks: frozenset[str] | None) -> list[queue.ClaimedJob]:
        """The oldest due job, and the waiting jobs of its task that run as one with it (`Mergeable`)."""
        now = self.clock()
        job = queue.claim(session, self.worker_name, now, tasks)
        if job is None:
            return []
        merge = self.handlers.mergeable.get(job.task)
        if merge is None:
            return [job]
        return [job, *queue.claim_alike(session, self.worker_name, now, job, merge)]

    def _run(self, jobs: list[queue.ClaimedJob]) -> Outcome:
        """Run the jobs, one task run for them all; what to record of each (done, failed or
        postponed: together, as they ran), in the caller's transaction."""
        first = jobs[0]
        merge = self.handlers.mergeable.get(first.task)
        payload = merge.merge([job.payload for job in jobs]) if merge and len(jobs) > 1 else first.payload
        try:
            self.handlers.tasks[first.task](payload)
        except self.handlers.postponed:
            until = self.clock() + POSTPONE  # e.g. another scan runs: try again in a moment
            return _for_each(jobs, lambda session, job: queue.postpone(session, job, until))
        except Exception as exc:  # a failing job must not kill the worker; it is retried
            log.exception("job failed", extra={"job_id": first.id, "task": first.task, "jobs": len(jobs)})
            error, failed_at = f"{type(exc).__name__}: {exc}", self.clock()
            return _for_each(jobs, lambda session, job: _fail(session, job, error, failed_at))
        done_at = self.clock()
        return lambda session: queue.complete_all(session, jobs, done_at)

    def stats(self) -> QueueStats:
        now = self.clock()
        with self.factory() as session:
            by_state = queue.counts(session)
            oldest = queue.oldest_waiting(session, now)
            depth = queue.due_count(session, now)
        waited = (now - oldest).total_seconds() if oldest is not None else 0.0
        return QueueStats(self.backend, depth, by_state, max(0.0, waited))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.factory() as session:
            return [dead_letter(row) for row in queue.dead_letters(session, limit)]

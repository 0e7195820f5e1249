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
        while ran < limit:
            with transaction(self.factory) as session:
                job = queue.claim(session, self.worker_name, self.clock(), tasks)
            if job is None:
                return ran
            self._run(job)
            ran += 1
        return ran

    def _run(self, job: queue.ClaimedJob) -> None:
        try:
            self.handlers.tasks[job.task](job.payload)
        except self.handlers.postponed:
            with transaction(self.factory) as session:  # e.g. another scan runs: try again in a moment
                queue.postpone(session, job, self.clock() + POSTPONE)
            return
        except Exception as exc:  # a failing job must not kill the worker; it is retried
            log.exception("job failed", extra={"job_id": job.id, "task": job.task})
            with transaction(self.factory) as session:
                queue.fail(session, job, f"{type(exc).__name__}: {exc}", self.clock())
            return
        with transaction(self.factory) as session:
            queue.complete(session, job, self.clock())

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

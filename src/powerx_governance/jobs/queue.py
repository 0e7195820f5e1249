"""The job queue of the embedded default: a jobs table written in the caller's transaction.

At-least-once: a job is claimed with a conditional update (one worker wins on SQLite and on
PostgreSQL), retried with capped exponential backoff and jitter, and after `max_attempts`
it stays `dead`, visible to operators. The idempotency key is unique, so enqueuing the same
effect twice is a no-op.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import FEW, bulk_insert, insert_new, integrity_errors
from powerx_governance.db.chunks import chunks
from powerx_governance.db.rows import rowcount
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.tables import JobRow

STALE_AFTER = timedelta(minutes=10)  # a running job whose worker died is picked up again


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    task: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def enqueue(
    session: Session,
    task: str,
    payload: dict[str, Any],
    *,
    key: str,
    now: datetime,
    run_after: datetime | None = None,
    max_attempts: int = 5,
) -> bool:
    """Add a job in the caller's transaction; False when a job with this key already exists."""
    if session.execute(select(JobRow.id).where(JobRow.idempotency_key == key)).first() is not None:
        return False
    try:
        with session.begin_nested():
            session.add(
                JobRow(
                    task=task,
                    payload=payload,
                    idempotency_key=key,
                    status=JobStatus.QUEUED.value,
                    attempts=0,
                    max_attempts=max_attempts,
                    run_after=run_after or now,
                    created_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to add with `enqueue_many`."""

    task: str
    payload: dict[str, Any]
    key: str
    run_after: datetime | None = None
    max_attempts: int = 5


def enqueue_many(session: Session, jobs: Sequence[NewJob], *, now: datetime) -> int:
    """Add jobs in the caller's transaction with a few statements, not a few per job (a fleet scan
    queues one delivery per tenant); a job whose key exists is skipped, as `enqueue` does. How many
    were added."""
    wanted: dict[str, NewJob] = {}
    for job in jobs:
        wanted.setdefault(job.key, job)  # the first of a repeated key wins, as one by one
    if len(wanted) <= FEW:
        rows = [_job_row(job, now) for job in wanted.values()]
        return len(insert_new(session, JobRow, rows, unique="idempotency_key", key="id"))
    for part in chunks(list(wanted)):
        for key in session.execute(
            select(JobRow.idempotency_key).where(JobRow.idempotency_key.in_(part))
        ).scalars():
            del wanted[key]
    rows = [_job_row(job, now) for job in wanted.values()]
    try:
        with session.begin_nested():
            bulk_insert(session, JobRow, rows)
    except integrity_errors(session):  # a concurrent transaction queued one of them first: one by one
        return sum(
            enqueue(
                session,
                j.task,
                j.payload,
                key=j.key,
                now=now,
                run_after=j.run_after,
                max_attempts=j.max_attempts,
            )
            for j in wanted.values()
        )
    return len(rows)


def _job_row(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "task": job.task,
        "payload": job.payload,
        "idempotency_key": job.key,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_after": job.run_after or now,
        "created_at": now,
    }


def claim(
    session: Session, worker: str, now: datetime, tasks: frozenset[str] | None = None
) -> ClaimedJob | None:
    """Take the oldest due job (or a stale running one); None when there is nothing to do."""
    due = (JobRow.status == JobStatus.QUEUED.value) & (JobRow.run_after <= now)
    stale = (JobRow.status == JobStatus.RUNNING.value) & (JobRow.locked_at < now - STALE_AFTER)
    stmt = select(JobRow.id).where(due | stale).order_by(JobRow.run_after, JobRow.id).limit(5)
    if tasks is not None:
        stmt = stmt.where(JobRow.task.in_(tasks))
    for job_id in session.execute(stmt).scalars().all():
        taken = session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, due | stale)
            .values(
                status=JobStatus.RUNNING.value, locked_by=worker, locked_at=now, attempts=JobRow.attempts + 1
            )
        )
        if rowcount(taken) == 1:
            row = session.get_one(JobRow, job_id)
            return ClaimedJob(row.id, row.task, row.payload, row.attempts, row.max_attempts)
    return None


def complete(session: Session, job: ClaimedJob, now: datetime) -> None:
    session.execute(
        update(JobRow)
        .where(JobRow.id == job.id)
        .values(status=JobStatus.DONE.value, finished_at=now, locked_by=None, last_error=None)
    )


def postpone(session: Session, job: ClaimedJob, until: datetime) -> None:
    """Put a claimed job back for later without counting the attempt (e.g. a scan already running)."""
    session.execute(
        update(JobRow)
        .where(JobRow.id == job.id)
        .values(status=JobStatus.QUEUED.value, run_after=until, locked_by=None, attempts=JobRow.attempts - 1)
    )


def backoff(attempt: int, base: float = 2.0, cap: float = 300.0) -> timedelta:
    """Capped exponential backoff with full jitter."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2 ** (attempt - 1))))  # noqa: S311 - jitter


def fail(session: Session, job: ClaimedJob, error: str, now: datetime, *, transient: bool = True) -> bool:
    """Record a failure; the job is retried later or becomes dead. Returns True when it is dead."""
    dead = not transient or job.attempts >= job.max_attempts
    values: dict[str, Any] = {"last_error": error[:2000], "locked_by": None}
    if dead:
        values |= {"status": JobStatus.DEAD.value, "finished_at": now}
    else:
        values |= {"status": JobStatus.QUEUED.value, "run_after": now + backoff(job.attempts)}
    session.execute(update(JobRow).where(JobRow.id == job.id).values(**values))
    return dead


def counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all())


Task = Callable[[dict[str, Any]], None]

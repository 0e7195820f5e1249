"""The job queue of the embedded default: a jobs table written in the caller's transaction.

At-least-once: a job is claimed with a conditional update (one worker wins on SQLite and on
PostgreSQL), retried with capped exponential backoff and jitter, and after `max_attempts`
it stays `dead`, visible to operators. The idempotency key is unique, so enqueuing the same
effect twice is a no-op.

The row is written on every backend: it is the idempotency ledger and the dead letter. When the
service runs its jobs on procrastinate (`jobs/procrastinate_queue.py`), the engine's `Deferrer`
also defers the procrastinate job in the same transaction, and the local worker leaves the row
alone (`runner`).
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import Connection, Engine, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from powerx_governance.db.bulk import FEW, bulk_insert, insert_new, integrity_errors
from powerx_governance.db.chunks import chunks
from powerx_governance.db.rows import rowcount
from powerx_governance.jobs.model import JobRunner, JobStatus
from powerx_governance.jobs.tables import JobRow
from powerx_governance.kernel import Mergeable

STALE_AFTER = timedelta(minutes=10)  # a running job whose worker died is picked up again


@dataclass(frozen=True, slots=True)
class Deferral:
    """A job handed to another engine, in the transaction that wrote its ledger row."""

    job_id: int
    task: str
    payload: dict[str, Any]
    run_after: datetime | None  # None: now
    now: datetime  # the service clock's "now" (run_after is relative to it)
    lock: str | None = None  # jobs with the same lock never run at the same time
    queueing_lock: str | None = None  # at most one waiting job with this lock
    priority: int = 0  # higher first


class Deferrer(Protocol):
    runner: JobRunner

    def defer(self, session: Session, deferral: Deferral) -> None: ...

    def defer_many(self, session: Session, deferrals: Sequence[Deferral]) -> None: ...


_DEFERRERS: weakref.WeakKeyDictionary[Engine, Deferrer] = weakref.WeakKeyDictionary()


def route_jobs(engine: Engine, deferrer: Deferrer | None) -> None:
    """Jobs enqueued on `engine` are deferred through `deferrer` too (None: the local table only)."""
    if deferrer is None:
        _DEFERRERS.pop(engine, None)
    else:
        _DEFERRERS[engine] = deferrer


def _deferrer(session: Session) -> Deferrer | None:
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    return _DEFERRERS.get(engine)


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
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int = 0,
) -> bool:
    """Add a job in the caller's transaction; False when a job with this key already exists.

    `lock`, `queueing_lock` and `priority` are honoured by the procrastinate backend (the local
    worker runs due jobs oldest first, one at a time per thread, and scans hold their own lock)."""
    if session.execute(select(JobRow.id).where(JobRow.idempotency_key == key)).first() is not None:
        return False
    deferrer = _deferrer(session)
    row = JobRow(
        task=task,
        payload=payload,
        idempotency_key=key,
        status=JobStatus.QUEUED.value,
        attempts=0,
        max_attempts=max_attempts,
        run_after=run_after or now,
        created_at=now,
        runner=(deferrer.runner if deferrer is not None else JobRunner.LOCAL).value,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return False
    if deferrer is not None:
        deferral = Deferral(row.id, task, payload, run_after, now, lock, queueing_lock, priority)
        deferrer.defer(session, deferral)
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
    were added. Routed like `enqueue`: on procrastinate the added jobs are deferred in the same
    transaction too."""
    deferrer = _deferrer(session)
    runner = (deferrer.runner if deferrer is not None else JobRunner.LOCAL).value
    wanted: dict[str, NewJob] = {}
    for job in jobs:
        wanted.setdefault(job.key, job)  # the first of a repeated key wins, as one by one
    if len(wanted) <= FEW:
        rows = [_job_row(job, now, runner) for job in wanted.values()]
        added = insert_new(session, JobRow, rows, unique="idempotency_key", key="id")
        _defer_added(session, deferrer, sorted(added), now)
        return len(added)
    for part in chunks(list(wanted)):
        for key in session.execute(
            select(JobRow.idempotency_key).where(JobRow.idempotency_key.in_(part))
        ).scalars():
            del wanted[key]
    rows = [_job_row(job, now, runner) for job in wanted.values()]
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
    if deferrer is not None:
        added_ids: list[int] = []
        for part in chunks(list(wanted)):
            added_ids += session.execute(select(JobRow.id).where(JobRow.idempotency_key.in_(part))).scalars()
        _defer_added(session, deferrer, added_ids, now)
    return len(rows)


def _defer_added(session: Session, deferrer: Deferrer | None, ids: Sequence[int], now: datetime) -> None:
    """The procrastinate jobs of ledger rows just added by `enqueue_many`."""
    if deferrer is None or not ids:
        return
    for part in chunks(list(ids)):
        added = session.execute(
            select(JobRow.id, JobRow.task, JobRow.payload, JobRow.run_after).where(JobRow.id.in_(part))
        ).all()
        deferrer.defer_many(
            session, [Deferral(i, task, payload, run_after, now) for i, task, payload, run_after in added]
        )


def _job_row(job: NewJob, now: datetime, runner: str) -> dict[str, Any]:
    return {
        "task": job.task,
        "payload": job.payload,
        "idempotency_key": job.key,
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_after": job.run_after or now,
        "created_at": now,
        "runner": runner,
    }


_DUE_NOW = (
    (JobRow.status == JobStatus.QUEUED.value)
    & (JobRow.run_after <= bindparam("now"))
    & (JobRow.runner == JobRunner.LOCAL.value)
)
_STALE = (
    (JobRow.status == JobStatus.RUNNING.value)
    & (JobRow.locked_at < bindparam("stale_before"))
    & (JobRow.runner == JobRunner.LOCAL.value)
)
# Built once: a worker claims a job per statement pair, and building these took more of its CPU
# than running them (a delivery job is a few milliseconds in all).
_CANDIDATES: Final = select(JobRow.id).where(_DUE_NOW | _STALE).order_by(JobRow.run_after, JobRow.id).limit(5)
_CANDIDATES_OF: Final = _CANDIDATES.where(JobRow.task.in_(bindparam("tasks", expanding=True)))
# a job taken by a worker (`claim`, `claim_alike`), an attempt counted: what `ClaimedJob` holds
_TAKEN: Final = (
    update(JobRow)
    .values(
        status=JobStatus.RUNNING.value,
        locked_by=bindparam("worker"),
        locked_at=bindparam("now"),
        attempts=JobRow.attempts + 1,
    )
    .returning(JobRow.id, JobRow.task, JobRow.payload, JobRow.attempts, JobRow.max_attempts)
)
_TAKE: Final = _TAKEN.where(JobRow.id == bindparam("job_id"), _DUE_NOW | _STALE)
_COMPLETE: Final = (
    update(JobRow)
    .where(JobRow.id == bindparam("job_id"))
    .values(status=JobStatus.DONE.value, finished_at=bindparam("now"), locked_by=None, last_error=None)
)


def claim(
    session: Session, worker: str, now: datetime, tasks: frozenset[str] | None = None
) -> ClaimedJob | None:
    """Take the oldest due job (or a stale running one); None when there is nothing to do."""
    connection = session.connection()  # plain statements: no ORM object is read or changed
    times = {"now": now, "stale_before": now - STALE_AFTER}
    candidates = (
        connection.execute(_CANDIDATES, times)
        if tasks is None
        else connection.execute(_CANDIDATES_OF, {**times, "tasks": sorted(tasks)})
    )
    for job_id in candidates.scalars().all():
        taken = connection.execute(_TAKE, {**times, "job_id": job_id, "worker": worker}).first()
        if taken is not None:
            return ClaimedJob(*taken)
    return None


_ALIKE_LOOK: Final = 64  # waiting jobs looked at for one merged run
_ALIKE: Final = (
    select(JobRow.id, JobRow.payload)
    .where(_DUE_NOW, JobRow.task == bindparam("task"), JobRow.id != bindparam("job_id"))
    .order_by(JobRow.run_after, JobRow.id)
    .limit(_ALIKE_LOOK)
)
_TAKE_ALIKE: Final = _TAKEN.where(JobRow.id.in_(bindparam("job_ids", expanding=True)), _DUE_NOW)


def claim_alike(
    session: Session, worker: str, now: datetime, job: ClaimedJob, merge: Mergeable
) -> list[ClaimedJob]:
    """More due jobs of `job`'s task to run as one with it, oldest first, while their payloads and
    its own weigh at most `merge.most` (`Mergeable`); taken as `claim` takes one (a conditional
    update: a job another worker took meanwhile is left out). Empty when none fits."""
    room = merge.most - merge.size(job.payload)
    if room <= 0:
        return []
    connection = session.connection()
    wanted: list[int] = []
    for job_id, payload in connection.execute(_ALIKE, {"now": now, "task": job.task, "job_id": job.id}):
        weight = merge.size(payload)
        if weight > room:
            break  # oldest first: a job that does not fit waits for the next run, the ones after it too
        wanted.append(job_id)
        room -= weight
    if not wanted:
        return []
    order = {job_id: position for position, job_id in enumerate(wanted)}
    taken = connection.execute(_TAKE_ALIKE, {"job_ids": wanted, "worker": worker, "now": now})
    return sorted((ClaimedJob(*row) for row in taken), key=lambda claimed: order[claimed.id])


def start_deferred(session: Session, job_id: int, worker: str, now: datetime) -> ClaimedJob | None:
    """A procrastinate job starts: its ledger row counts the attempt; None when the ledger says it
    already finished (at-least-once delivery: a job completed before its worker died runs no twice)."""
    taken = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))
        .values(status=JobStatus.RUNNING.value, locked_by=worker, locked_at=now, attempts=JobRow.attempts + 1)
    )
    if rowcount(taken) != 1:
        return None
    row = session.get_one(JobRow, job_id)
    return ClaimedJob(row.id, row.task, row.payload, row.attempts, row.max_attempts)


def complete(session: Session, job: ClaimedJob, now: datetime) -> None:
    complete_all(session, [job], now)


def complete_all(session: Session, jobs: Sequence[ClaimedJob], now: datetime) -> None:
    """Mark jobs that ran (together) done, with one statement sent once."""
    session.connection().execute(_COMPLETE, [{"job_id": job.id, "now": now} for job in jobs])


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


def _due_local(now: datetime) -> Any:
    return (
        (JobRow.status == JobStatus.QUEUED.value)
        & (JobRow.run_after <= now)
        & (JobRow.runner == JobRunner.LOCAL.value)
    )


def due_count(session: Session, now: datetime) -> int:
    """Jobs of the local table due now and waiting for a worker."""
    return session.execute(select(func.count()).where(_due_local(now))).scalar_one()


def oldest_waiting(session: Session, now: datetime) -> datetime | None:
    """When the longest-waiting due job of the local table became due (None: nothing waits)."""
    return session.execute(select(func.min(JobRow.run_after)).where(_due_local(now))).scalar_one_or_none()


def dead_letters(session: Session, limit: int) -> list[JobRow]:
    """Jobs that failed for good, newest first: what an operator looks at."""
    stmt = (
        select(JobRow)
        .where(JobRow.status == JobStatus.DEAD.value)
        .order_by(JobRow.finished_at.desc(), JobRow.id.desc())
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


Task = Callable[[dict[str, Any]], None]

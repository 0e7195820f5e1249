"""Pruning the jobs ledger: finished rows older than the retention go, in bounded batches.

What a ledger row's idempotency key protects is a job queued twice while the row is kept: once it
is pruned, the same key can be queued again and its task runs again. That is safe because every
effect carries its own idempotency key, checked by the task itself (a scan's status, a shard's
status, a notification's dedupe key and delivery row, a breach already in the audit trail, an
event's cursor), so the ledger only saves the repeated work. The window is the retention
(`POWERX_JOBS_RETENTION`, 7 days by default): a job re-queued later runs, finds its effect
recorded, and does nothing. A procrastinate job delivered again after its ledger row was pruned
finds no row to start and does nothing either. Dead letters stay for `POWERX_JOBS_DEAD_RETENTION`
(30 days) so operators see them; procrastinate's own failed job goes with its ledger row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from sqlalchemy import and_, delete, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.db.rows import rowcount
from powerx_governance.db.session import transaction
from powerx_governance.jobs.model import JobRunner, JobStatus
from powerx_governance.jobs.settings import JobsSettings
from powerx_governance.jobs.tables import JobRow
from powerx_governance.kernel import Contribution, InstallContext, Throttled

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

BATCH: Final = 5000  # rows per statement and transaction
BATCHES: Final = 20  # per run (100,000 rows at most): the rest waits for the next run
PRUNE_EVERY: Final = timedelta(minutes=1)
log = logging.getLogger("powerx.jobs")


def prune_finished(
    factory: sessionmaker[Session],
    *,
    done_before: datetime,
    dead_before: datetime,
    batch: int = BATCH,
    batches: int = BATCHES,
) -> int:
    """Delete finished ledger rows (done before `done_before`, dead before `dead_before`), oldest
    first, `batch` rows per transaction and at most `batches` transactions; how many went."""
    pruned = 0
    for _ in range(batches):
        with transaction(factory) as session:
            gone = _prune_batch(session, done_before, dead_before, batch)
        pruned += gone
        if gone < batch:
            break
    return pruned


def _prune_batch(session: Session, done_before: datetime, dead_before: datetime, limit: int) -> int:
    old = or_(
        and_(JobRow.status == JobStatus.DONE.value, JobRow.finished_at < done_before),
        and_(JobRow.status == JobStatus.DEAD.value, JobRow.finished_at < dead_before),
    )
    rows = session.execute(
        select(JobRow.id, JobRow.status, JobRow.runner).where(old).order_by(JobRow.id).limit(limit)
    ).all()
    if not rows:
        return 0
    procrastinate = JobRunner.PROCRASTINATE.value
    dead = [i for i, status, runner in rows if status == JobStatus.DEAD.value and runner == procrastinate]
    _forget_failed_procrastinate_jobs(session, dead)
    return rowcount(session.execute(delete(JobRow).where(JobRow.id.in_([r[0] for r in rows]))))


def _forget_failed_procrastinate_jobs(session: Session, ledger_ids: Sequence[int]) -> None:
    """procrastinate keeps a job that failed for good (status `failed`, with its events): it goes
    with its ledger row. Successful ones were deleted as they finished."""
    if not ledger_ids:
        return
    session.execute(
        text(
            "DELETE FROM procrastinate_jobs WHERE status = 'failed' AND (args ->> 'job')::bigint = ANY(:ids)"
        ),
        {"ids": list(ledger_ids)},
    )


def clear_dead(session: Session, job_ids: Sequence[int], *, actor: str) -> list[int]:
    """An operator clears dead letters; the ids that were dead letters and are gone. Each is logged
    with its task, key, error and who cleared it (the jobs package sits below the audit trail, which
    queues its shipping through it)."""
    dead = list(
        session.execute(
            select(JobRow).where(JobRow.id.in_(list(job_ids)), JobRow.status == JobStatus.DEAD.value)
        ).scalars()
    )
    procrastinate = JobRunner.PROCRASTINATE.value
    _forget_failed_procrastinate_jobs(session, [row.id for row in dead if row.runner == procrastinate])
    for row in dead:
        log.warning(
            "dead letter cleared",
            extra={
                "job_id": row.id,
                "task": row.task,
                "key": row.idempotency_key,
                "error": row.last_error,
                "actor": actor,
            },
        )
        session.delete(row)
    return [row.id for row in dead]


def _pruning(
    retention: timedelta, dead_retention: timedelta
) -> Callable[[GovernanceService, datetime], None]:
    """The periodic follow-up's work: prune the ledger's finished rows and old dead letters."""

    def run(service: GovernanceService, now: datetime) -> None:
        pruned = prune_finished(
            service.factory, done_before=now - retention, dead_before=now - dead_retention
        )
        if pruned:
            log.info("jobs ledger pruned", extra={"jobs": pruned, "retention": str(retention)})

    return run


def install(ctx: InstallContext) -> Contribution:
    """The ledger pruning, run while governance is off too (the queue keeps running then)."""
    settings: JobsSettings = ctx.settings
    return Contribution(
        always_on_periodic=(Throttled(PRUNE_EVERY, _pruning(settings.retention, settings.dead_retention)),)
    )

"""The procrastinate backend: every job kind runs as a procrastinate task on PostgreSQL.

`queue.enqueue` writes the ledger row (idempotency key, attempts, last error: the dead letter)
and, through this module's `defer`, the procrastinate job, both in the caller's transaction:
procrastinate's insert trigger NOTIFYs the workers on commit. One procrastinate queue per task
name, so a worker can be given only some kinds of job. The periodic tick (scheduled scans,
digests, SLA checks, expiries, retention) is a procrastinate periodic task: deferred once per
period across the cluster (procrastinate's periodic defers are unique per task and timestamp),
under a queueing lock so ticks never pile up, and a lock so two never overlap.

Transient errors (database connection, network, a source down) are retried with capped
exponential backoff and full jitter up to the job's `max_attempts`; any other error fails the
job at once. A job that fails for good is `dead` in the ledger, with its error. Jobs of workers
whose heartbeat stopped (SIGKILL, a lost machine) are put back by the tick; finished jobs are
deleted as they succeed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import procrastinate
from procrastinate import JobContext, RetryDecision
from procrastinate.retry import BaseRetryStrategy
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.jobs.interface import DeadLetter, Handlers, QueueBackend, QueueStats
from powerx_governance.jobs.local import dead_letter
from powerx_governance.jobs.model import JobRunner
from powerx_governance.jobs.retry import is_transient
from powerx_governance.jobs.settings import ProcrastinateOptions

log = logging.getLogger("powerx.jobs")
TICK_TASK = "powerx.tick"
POSTPONE_SECONDS = 2  # a scan already running, or governance switched off: not a failed attempt
FLAG_OFF_SECONDS = 30
RUNNABLE_TTL_SECONDS = 1.0


class RetryLaterError(Exception):
    """Raised by the task wrapper: procrastinate retries the job after `seconds`."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class _Decide(BaseRetryStrategy):
    """The wrapper decides (it knows the ledger's attempts and the error's kind); this only obeys."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, RetryLaterError):
            return RetryDecision(retry_in={"seconds": max(0, round(exception.seconds))})
        return None


def conninfo(engine: Engine) -> str:
    """The libpq URI of the service's database (its `options`, e.g. a search_path, included)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@dataclass
class ProcrastinateQueue:
    factory: sessionmaker[Session]
    engine: Engine
    clock: Callable[[], datetime]
    worker_name: str
    handlers: Handlers
    options: ProcrastinateOptions = field(default_factory=ProcrastinateOptions)
    backend: QueueBackend = QueueBackend.PROCRASTINATE
    runner: JobRunner = JobRunner.PROCRASTINATE
    _ran: int = 0
    ticks: int = 0  # periodic ticks this process ran (once per period across the cluster)
    _ran_lock: threading.Lock = field(default_factory=threading.Lock)
    _app: procrastinate.App | None = None
    _runnable: tuple[float, frozenset[str] | None] = (float("-inf"), None)  # (read at, tasks)
    _burst_app: procrastinate.App | None = None

    # -- deferring (in the caller's transaction) ---------------------------------------------

    def defer(self, session: Session, deferral: queue.Deferral) -> None:
        """The procrastinate job of a ledger row, inserted by procrastinate's own SQL function."""
        self.defer_many(session, [deferral])

    def defer_many(self, session: Session, deferrals: Sequence[queue.Deferral]) -> None:
        """Procrastinate jobs of ledger rows, one statement (procrastinate's batch defer function)."""
        if not deferrals:
            return
        jobs = [
            {
                "queue": d.task,
                "task": d.task,
                "priority": d.priority,
                "lock": d.lock,
                "qlock": d.queueing_lock,
                "args": {"job": d.job_id, "payload": d.payload},
                # run_after is the service clock's; procrastinate schedules by the database's
                "delay": max(0.0, (d.run_after - d.now).total_seconds()) if d.run_after else 0.0,
            }
            for d in deferrals
        ]
        session.execute(
            text(
                "SELECT procrastinate_defer_jobs_v1(ARRAY("
                "SELECT ROW(x.queue, x.task, x.priority, x.lock, x.qlock, x.args,"
                " CASE WHEN x.delay > 0 THEN now() + make_interval(secs => x.delay) END"
                ")::procrastinate_job_to_defer_v1"
                " FROM jsonb_to_recordset(CAST(:jobs AS jsonb)) AS x(queue varchar, task varchar,"
                " priority integer, lock text, qlock text, args jsonb, delay float)))"
            ),
            {"jobs": json.dumps(jobs)},
        )

    # -- the procrastinate app ---------------------------------------------------------------

    @property
    def app(self) -> procrastinate.App:
        """The workers' app: every task, and the periodic tick."""
        if self._app is None:
            self._app = self._build_app(periodic=True)
        return self._app

    @property
    def burst_app(self) -> procrastinate.App:
        """`run_pending`'s app: the same tasks, no periodic deferrer (it runs what is due, then returns)."""
        if self._burst_app is None:
            self._burst_app = self._build_app(periodic=False)
        return self._burst_app

    def _build_app(self, *, periodic: bool) -> procrastinate.App:
        connector = procrastinate.PsycopgConnector(conninfo=conninfo(self.engine), min_size=1, max_size=8)
        app = procrastinate.App(connector=connector)
        for name in self.handlers.tasks:
            app.task(name=name, queue=name, pass_context=True, retry=_Decide())(self._job_function(name))
        tick = app.task(name=TICK_TASK, queue=TICK_TASK, lock=TICK_TASK, queueing_lock=TICK_TASK)(self._tick)
        if periodic:
            app.periodic(cron=f"* * * * * */{self.options.tick_seconds}", periodic_id="tick")(tick)
        return app

    def _job_function(self, name: str) -> Callable[..., None]:
        def run(context: JobContext, job: int, payload: dict[str, Any]) -> None:
            self._run(context, name, job, payload)

        run.__name__ = f"run_{name.replace('.', '_').replace(':', '_')}"
        return run

    def _allowed(self) -> frozenset[str] | None:
        """The tasks the governance flag lets run, read at most once a second (not once per job)."""
        read_at, runnable = self._runnable
        if time.monotonic() - read_at > RUNNABLE_TTL_SECONDS:
            runnable = self.handlers.runnable()
            self._runnable = (time.monotonic(), runnable)
        return runnable

    def _run(self, context: JobContext, name: str, job_id: int, payload: dict[str, Any]) -> None:
        runnable = self._allowed()
        with transaction(self.factory) as session:
            job = queue.start_deferred(session, job_id, context.worker_name or self.worker_name, self.clock())
            held = job is not None and runnable is not None and name not in runnable
            if job is not None and held:
                queue.postpone(session, job, self.clock())
        if job is None:
            return  # the ledger says it finished already (its worker died before procrastinate knew)
        if held:
            raise RetryLaterError(FLAG_OFF_SECONDS, "governance is switched off")
        try:
            self.handlers.tasks[name](payload)
        except self.handlers.postponed as exc:
            with transaction(self.factory) as session:
                queue.postpone(session, job, self.clock())
            raise RetryLaterError(POSTPONE_SECONDS, type(exc).__name__) from exc
        except Exception as exc:  # noqa: BLE001 - every failure is recorded; _failed re-raises it
            self._failed(job, exc)
        with transaction(self.factory) as session:
            queue.complete(session, job, self.clock())
        with self._ran_lock:
            self._ran += 1

    def _failed(self, job: queue.ClaimedJob, exc: Exception) -> NoReturn:
        """Record the failure in the ledger; retry a transient one (backoff), else it is a dead letter."""
        log.exception("job failed", extra={"job_id": job.id, "task": job.task})
        transient = is_transient(exc)
        with transaction(self.factory) as session:
            dead = queue.fail(session, job, f"{type(exc).__name__}: {exc}", self.clock(), transient=transient)
        if dead:
            raise exc
        raise RetryLaterError(queue.backoff(job.attempts).total_seconds(), type(exc).__name__) from exc

    def _tick(self, timestamp: int) -> None:
        """The periodic tick: scheduled scans and follow-ups, stalled jobs back, nothing else."""
        del timestamp  # the slot is the service clock's, as on the local backend
        self.ticks += 1
        retried = self.recover_stalled()
        if retried:
            log.warning("retried %d jobs of stalled workers", retried)
        self.handlers.tick()

    # -- operating ---------------------------------------------------------------------------

    def recover_stalled(self) -> int:
        """Put back the running jobs of workers whose heartbeat stopped; how many."""
        with transaction(self.factory) as session:
            stalled = session.execute(
                text(
                    "SELECT job.id FROM procrastinate_jobs job"
                    " LEFT JOIN procrastinate_workers w ON w.id = job.worker_id"
                    " WHERE job.status = 'doing' AND (job.worker_id IS NULL"
                    " OR w.last_heartbeat < now() - make_interval(secs => :after))"
                ),
                {"after": self.options.stalled_after_seconds},
            ).scalars()
            ids = list(stalled)
            for job_id in ids:
                session.execute(
                    text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)"), {"id": job_id}
                )
        return len(ids)

    def worker_options(self, concurrency: int, name: str, *, wait: bool, signals: bool) -> dict[str, Any]:
        return {
            "concurrency": concurrency,
            "name": name,
            "wait": wait,
            "delete_jobs": "successful",  # finished jobs are pruned as they succeed
            "update_heartbeat_interval": self.options.heartbeat_seconds,
            "stalled_worker_timeout": self.options.stalled_after_seconds,
            "fetch_job_polling_interval": self.options.poll_seconds,
            "abort_job_polling_interval": max(self.options.poll_seconds, 5.0),
            "install_signal_handlers": signals,
            "listen_notify": wait,
        }

    async def work(
        self,
        concurrency: int,
        name: str,
        *,
        wait: bool = True,
        signals: bool = True,
        queues: list[str] | None = None,
        app: procrastinate.App | None = None,
    ) -> None:
        """Run a procrastinate worker until stopped (SIGTERM/SIGINT, or cancelled), or until caught up
        (`wait=False`)."""
        options = self.worker_options(concurrency, name, wait=wait, signals=signals)
        if queues is not None:
            options["queues"] = queues
        app = app or self.app
        async with app.open_async():
            await app.run_worker_async(**options)

    def run_pending(self, limit: int = 100, *, tasks: frozenset[str] | None = None) -> int:
        """Run what is due in this process, then return (tests, `powerx version jobs run`)."""
        del limit  # a burst worker stops when it has caught up
        with self._ran_lock:
            before = self._ran
        queues = sorted(tasks) if tasks is not None else None
        name = f"{self.worker_name}:burst"
        asyncio.run(self.work(1, name, wait=False, signals=False, queues=queues, app=self.burst_app))
        with self._ran_lock:
            return self._ran - before

    def stats(self) -> QueueStats:
        with self.factory() as session:
            by_state: dict[str, int] = dict(
                session.execute(
                    text("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status")
                ).all()
            )
            depth, waited = session.execute(
                text(
                    "SELECT count(*), coalesce(extract(epoch FROM now() - min(greatest(e.at,"
                    " coalesce(j.scheduled_at, e.at)))), 0) FROM procrastinate_jobs j"
                    " JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'"
                    " WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())"
                )
            ).one()
        return QueueStats(self.backend, int(depth), by_state, max(0.0, float(waited)))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.factory() as session:
            return [dead_letter(row) for row in queue.dead_letters(session, limit)]


class BackgroundWorker:
    """A procrastinate worker on its own event loop in a thread of the serving process
    (`powerx version serve` without `--no-worker`)."""

    def __init__(self, jobs: ProcrastinateQueue, name: str, concurrency: int = 2) -> None:
        self._jobs, self._name, self._concurrency = jobs, name, concurrency
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._main, name="powerx-procrastinate", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._jobs.work(self._concurrency, self._name, signals=False))
        self._started.set()
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception:  # the serving process stays up; /readyz of the workers tells
            log.exception("in-process procrastinate worker stopped")
        finally:
            self._loop.close()

    def stop(self, timeout: float = 30) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)

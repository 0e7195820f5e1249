"""The jobs component's settings section: which queue backend, and the worker's knobs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from powerx_governance.durations import parse_duration
from powerx_governance.jobs.interface import QueueBackend
from powerx_governance.settings import Settings

BACKEND_ENV = "POWERX_QUEUE_BACKEND"
RETENTION_ENV = "POWERX_JOBS_RETENTION"
DEAD_RETENTION_ENV = "POWERX_JOBS_DEAD_RETENTION"


@dataclass(frozen=True, slots=True)
class ProcrastinateOptions:
    """The procrastinate worker's knobs (`POWERX_WORKER_*`)."""

    tick_seconds: int = 5  # how often the periodic tick is deferred (once per period in the cluster)
    heartbeat_seconds: float = 5.0  # a worker's heartbeat
    stalled_after_seconds: float = 30.0  # a worker silent this long is dead: its jobs are retried
    poll_seconds: float = 2.0  # fallback poll besides LISTEN/NOTIFY


@dataclass(frozen=True, slots=True)
class JobsSettings:
    backend: QueueBackend  # POWERX_QUEUE_BACKEND: local (default) | procrastinate (PostgreSQL only)
    worker_host: str  # POWERX_WORKER_HOST: where `powerx version worker` serves /readyz and /metrics
    worker_port: int  # POWERX_WORKER_PORT (0: any free port, printed at start)
    procrastinate: ProcrastinateOptions = field(default_factory=ProcrastinateOptions)
    # POWERX_JOBS_RETENTION: finished jobs' ledger rows (keys, attempts) are kept this long, then pruned
    retention: timedelta = timedelta(days=7)
    # POWERX_JOBS_DEAD_RETENTION: dead letters are kept this long (or until an operator clears them)
    dead_retention: timedelta = timedelta(days=30)


def _seconds(env: Mapping[str, str], name: str, default: str) -> float:
    try:
        seconds = parse_duration(env.get(name, default)).total_seconds()
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc
    if seconds <= 0:
        raise ValueError(f"{name} must be positive, not {env.get(name)!r}")
    return seconds


def _retentions(env: Mapping[str, str]) -> tuple[timedelta, timedelta]:
    """`POWERX_JOBS_RETENTION` (at least 1h) and `POWERX_JOBS_DEAD_RETENTION` (at least as long)."""
    retention = timedelta(seconds=_seconds(env, RETENTION_ENV, "7d"))
    dead = timedelta(seconds=_seconds(env, DEAD_RETENTION_ENV, "30d"))
    if retention < timedelta(hours=1):
        raise ValueError(f"{RETENTION_ENV} must be at least 1h (a finished job's key outlives its retries)")
    if dead < retention:
        raise ValueError(f"{DEAD_RETENTION_ENV} must be at least {RETENTION_ENV}")
    return retention, dead


def load_jobs_settings(env: Mapping[str, str], database_url: str) -> JobsSettings:
    try:
        backend = QueueBackend(env.get(BACKEND_ENV, QueueBackend.LOCAL.value).strip().lower())
    except ValueError as exc:
        choices = " | ".join(b.value for b in QueueBackend)
        raise ValueError(f"{BACKEND_ENV} must be one of {choices}, not {env.get(BACKEND_ENV)!r}") from exc
    if backend is QueueBackend.PROCRASTINATE and not database_url.startswith("postgres"):
        raise ValueError(f"{BACKEND_ENV}=procrastinate needs a PostgreSQL POWERX_DATABASE_URL")
    tick = _seconds(env, "POWERX_WORKER_TICK", "5s")
    if tick != int(tick) or not 1 <= tick <= 59:
        raise ValueError("POWERX_WORKER_TICK must be a whole number of seconds from 1s to 59s")
    options = ProcrastinateOptions(
        tick_seconds=int(tick),
        heartbeat_seconds=_seconds(env, "POWERX_WORKER_HEARTBEAT", "5s"),
        stalled_after_seconds=_seconds(env, "POWERX_WORKER_STALLED_AFTER", "30s"),
        poll_seconds=_seconds(env, "POWERX_WORKER_POLL", "2s"),
    )
    if options.stalled_after_seconds < 2 * options.heartbeat_seconds:
        raise ValueError("POWERX_WORKER_STALLED_AFTER must be at least twice POWERX_WORKER_HEARTBEAT")
    retention, dead_retention = _retentions(env)
    return JobsSettings(
        backend=backend,
        worker_host=env.get("POWERX_WORKER_HOST", "127.0.0.1"),
        worker_port=int(env.get("POWERX_WORKER_PORT", "8718")),
        procrastinate=options,
        retention=retention,
        dead_retention=dead_retention,
    )


def read_settings(settings: Settings) -> JobsSettings:
    return load_jobs_settings(settings.environ, settings.database_url)

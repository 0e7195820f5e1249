"""Scans through the store: request, run (full or delta), record coverage, retry, alert.

The runner is the job function behind the `scan` task; the HTTP service, the scheduler and
push webhooks only request scans. Each step owns its transaction, so a crash mid-scan leaves
the scan `running` until its job is picked up again, never half-written recommendations.

The steps live by role: `request`, `full`, `delta`, `finish` (coverage, streak, retries, the
alert hand-off), with `runtime` holding what a scan needs. This module is the job entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from powerx_governance.db.session import transaction
from powerx_governance.scans import shards
from powerx_governance.scans.delta import run_delta
from powerx_governance.scans.finish import (
    consecutive_failures,
    exception_cause,
    failure_text,
    finish,
    finish_failed,
)
from powerx_governance.scans.full import run_full
from powerx_governance.scans.model import ScanKind, ScanStatus
from powerx_governance.scans.queries import scan_summary
from powerx_governance.scans.request import SCAN_TASK, request_scan
from powerx_governance.scans.runtime import ChangeHook, Clock, ScanRuntime
from powerx_governance.scans.tables import ScanRow

_SCAN_LOCK_CLASS = 0x5343414E  # "SCAN": the advisory lock class of scans (the schema is the object id)
_LOCAL_LOCKS: dict[str, threading.Lock] = {}
log = logging.getLogger("powerx.scans")


class ScanBusyError(Exception):
    """Another scan holds the scan lock; the job should run again shortly."""


@contextmanager
def scan_lock(runtime: ScanRuntime) -> Iterator[None]:
    """One scan at a time per store: a PostgreSQL advisory lock held on its own connection (released
    by the server if this process dies), or a process-wide lock for the embedded SQLite store."""
    engine = runtime.factory.kw["bind"]
    if engine.dialect.name != "postgresql":
        local = _LOCAL_LOCKS.setdefault(str(engine.url), threading.Lock())
        if not local.acquire(blocking=False):
            raise ScanBusyError
        try:
            yield
        finally:
            local.release()
        return
    with engine.connect() as connection:
        # keyed by schema too: stores sharing one database in different schemas do not block each other
        key = (_SCAN_LOCK_CLASS, func.hashtext(func.current_schema()))
        if not connection.execute(select(func.pg_try_advisory_lock(*key))).scalar():
            raise ScanBusyError
        try:
            yield
        finally:
            connection.execute(select(func.pg_advisory_unlock(*key)))
            connection.commit()


def run_scan(runtime: ScanRuntime, scan_id: str) -> None:
    """The `scan` job: run the scan, then record its outcome (and retry/alert when unsuccessful).

    Whatever goes wrong (a source down, a broken rules file, a crash in a hook), the scan ends
    `failed`, is counted, retried and alerted on; it never stays `running`.
    """
    with scan_lock(runtime):
        with transaction(runtime.factory) as session:
            row = session.get_one(ScanRow, scan_id)
            if row.status not in (ScanStatus.QUEUED.value, ScanStatus.RUNNING.value):
                return  # already finished: at-least-once delivery must not run it twice
            if shards.in_flight(session, scan_id):
                raise ScanBusyError  # a sharded scan's shards are still running
            if shards.planned(session, scan_id):
                return  # the coordinator ran to its commit already: the shards and finish carry on
            row.status, row.started_at = ScanStatus.RUNNING.value, runtime.clock()
            kind, tenants = ScanKind(row.kind), list(row.tenant_filter)
        started = time.perf_counter()
        try:
            if kind is ScanKind.FULL and runtime.shard_size > 0:
                shards.plan_full(runtime, scan_id, tenants)
                return
            if kind is ScanKind.DELTA and runtime.shard_size > 0 and shards.plan_delta(runtime, scan_id):
                return  # a large delta: its shards and finish carry on
            outcome = (
                run_full(runtime, scan_id, tenants) if kind is ScanKind.FULL else run_delta(runtime, scan_id)
            )
            finish(runtime, scan_id, kind, outcome, time.perf_counter() - started)
        except Exception as exc:  # every failure must end the scan as failed
            log.exception("scan failed", extra={"scan_id": scan_id, "kind": kind.value})
            failure, cause = failure_text(exc), exception_cause(exc)
            finish_failed(runtime, scan_id, kind, failure, cause, time.perf_counter() - started)


__all__ = [
    "SCAN_TASK",
    "ChangeHook",
    "Clock",
    "ScanBusyError",
    "ScanRuntime",
    "consecutive_failures",
    "request_scan",
    "run_scan",
    "scan_lock",
    "scan_summary",
]

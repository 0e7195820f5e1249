"""Sharded scans: a coordinator, one job per tenant shard, and a finish job.

The coordinator of a full scan (its `scan` job when `POWERX_SCAN_SHARD_SIZE` > 0) refreshes the
catalog, reads the tenant source once into the inventory store (the intake), cuts the tenants
into shards, and in one transaction writes the plan, the shard rows and one `scan_shard` job per
shard. The coordinator of a large delta scan (at least `POWERX_SCAN_DELTA_SHARD_FROM`
installations to evaluate) cuts the tenants it touches the same way: a shard evaluates its
changed tenants whole and, of its other tenants, the installations of the changed plugins.

A shard job loads its tenants from the store, evaluates them, and in one transaction persists their
findings, runs the change hooks (notifications, events, decision follow-ups), marks the shard done
and counts it; a job run again after that commit finds its shard done and does nothing, so a worker
killed mid-shard loses nothing and doubles nothing. The shard that makes the count reach the plan's
total queues the `scan_finish` job (its key is unique), which records coverage, the failure streak,
alerts and the scan's audit record once.

A shard whose failure is not transient, or that failed `SHARD_ATTEMPTS` times, is given up:
its tenants count as not scanned, the scan ends `incomplete` and is retried like any other.

Dirty marks: a tenant's is cleared by the shard that evaluated it, only while its stored manifest is
still the one evaluated (`scans.dirty`). The changed plugins' installations spread over every shard,
and a plugin's mark has no version to compare, so the plan takes their marks over in the transaction
that queues the shards (a push from then on marks the plugin again, for the next delta scan), and a
shard that gives up hands them back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final

import psycopg
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.chunks import chunks
from powerx_governance.db.session import transaction
from powerx_governance.errors import InputProblem
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.jobs import queue
from powerx_governance.jobs.retry import is_transient
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import ChangeSet, persist_findings
from powerx_governance.scans.delta import DeltaWork, evaluate_delta
from powerx_governance.scans.dirty import dirty_manifests, mark_evaluated
from powerx_governance.scans.finish import conclude, exception_cause, failure_text, finish_failed
from powerx_governance.scans.full import _fall_back_to_last_good, _refresh_catalog, _unscanned
from powerx_governance.scans.model import ScanKind, ScanStatus, ShardStatus
from powerx_governance.scans.request import SCAN_PRIORITY
from powerx_governance.scans.runtime import ScanRuntime, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import ScanResult, scan
from powerx_governance.scans.shard_tables import ScanPlanRow, ScanShardRow
from powerx_governance.scans.tables import ScanRow
from powerx_governance.sources.interface import TenantSource

SHARD_TASK: Final = "scan_shard"
FINISH_TASK: Final = "scan_finish"
SHARD_ATTEMPTS: Final = 3  # runs of one shard (a killed worker's run counts) before it is given up
CONFLICT_RETRIES: Final = 3  # a shard's transaction run again after a concurrent shard's insert won
INTAKE_BATCH: Final = 1000  # manifests stored per transaction by the coordinator
_WRITERS_LOCK_CLASS: Final = 0x53484152  # "SHAR": the advisory lock class of shard writers
MAX_ERRORS: Final = 1000  # errors and warnings kept on the scan, as on an unsharded scan
log = logging.getLogger("powerx.scans")
_WORKER: Final = f"{socket.gethostname()}:{os.getpid()}"


# -- the coordinator --------------------------------------------------------------------------


@dataclasses.dataclass
class _Intake:
    tenants: set[str] = dataclasses.field(default_factory=set)
    problems: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per tenant
    loose: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # problems naming no tenant


def _problem(problem: InputProblem) -> dict[str, Any]:
    return dataclasses.asdict(problem)


def _read_source(
    runtime: ScanRuntime, source: TenantSource, tenants: Sequence[str], now: datetime
) -> _Intake:
    """Read the tenant source once, storing the good manifests in batches; the problems are kept."""
    intake = _Intake()
    for batch in _batches(source.manifests(tenants or None), INTAKE_BATCH):
        good = [r.manifest for r in batch if r.manifest is not None]
        with transaction(runtime.factory) as session:
            inventory_store.upsert_manifests(session, good, now)
        for r in batch:
            _note(intake, r)
    return intake


def _note(intake: _Intake, result: ManifestResult) -> None:
    tenant = result.manifest.tenant_uuid if result.manifest is not None else None
    tenant = tenant or (result.problem.tenant_uuid if result.problem is not None else None)
    if tenant is None:
        if result.problem is not None:
            intake.loose.append(_problem(result.problem))
        return
    intake.tenants.add(tenant)
    if result.problem is not None or result.entry_problems:
        intake.problems[tenant] = {
            "problem": _problem(result.problem)
            if result.problem is not None and not result.manifest
            else None,
            "entries": [_problem(p) for p in result.entry_problems],
        }


def _batches(results: Iterable[ManifestResult], size: int) -> Iterator[list[ManifestResult]]:
    batch: list[ManifestResult] = []
    for result in results:
        batch.append(result)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_store(runtime: ScanRuntime, tenants: Sequence[str]) -> _Intake:
    with runtime.factory() as session:
        stmt = select(TenantRow.tenant_uuid)
        if tenants:
            stmt = stmt.where(TenantRow.tenant_uuid.in_(tenants))
        return _Intake(tenants=set(session.execute(stmt).scalars()))


def _not_found(intake: _Intake, tenants: Sequence[str], source: str) -> None:
    """Tenants asked for by name that nobody knows: each is a failed tenant, named."""
    for name in dict.fromkeys(tenants):
        if name not in intake.tenants:
            intake.tenants.add(name)
            problem = InputProblem(source, f"tenant {name}", None, "no such tenant", name)
            intake.problems[name] = {"problem": _problem(problem), "entries": []}


def plan_full(runtime: ScanRuntime, scan_id: str, tenants: Sequence[str]) -> int:
    """The coordinator: catalog, intake, plan and shard jobs; returns how many shards it queued."""
    started, now = time.perf_counter(), runtime.clock()
    catalog = _refresh_catalog(runtime, now)
    with runtime.factory() as session:
        dirty = [] if tenants else catalog_store.dirty_plugins(session)
    tenant_source = runtime.tenant_source
    if tenant_source is not None:
        intake = _read_source(runtime, tenant_source, tenants, now)
    else:
        intake = _read_store(runtime, tenants)
    _not_found(intake, tenants, tenant_source.name if tenant_source is not None else "store")
    cut = [list(c) for c in chunks(sorted(intake.tenants), runtime.shard_size)] or [[]]
    with transaction(runtime.factory) as session:
        session.add(
            ScanPlanRow(
                scan_id=scan_id,
                shards=len(cut),
                evaluated_at=now,
                dirty_plugins=list(dirty),
                errors=[p.as_report_error() for p in catalog.problems[:MAX_ERRORS]],
                warnings=[p.as_report_error() for p in catalog.warnings[:MAX_ERRORS]],
                security_data_problems=len(catalog.problems),
                timings={"plan": round(time.perf_counter() - started, 4)},
            )
        )
        for n, members in enumerate(cut):
            session.add(_shard_row(scan_id, n, members, intake, loose=intake.loose if n == 0 else []))
        session.flush()
        catalog_store.mark_plugins_clean(session, dirty)  # taken over by the plan (module docstring)
        for n in range(len(cut)):
            _queue_shard(session, scan_id, n, now)
    return len(cut)


def plan_delta(runtime: ScanRuntime, scan_id: str) -> bool:
    """The coordinator of a large delta scan: the plan and its shard jobs, in one transaction.

    False when the delta evaluates fewer than `delta_shard_from` installations: it runs as one job."""
    started, now = time.perf_counter(), runtime.clock()
    with transaction(runtime.factory) as session:
        tenants = sorted(inventory_store.dirty_tenants(session))
        plugins = sorted(catalog_store.dirty_plugins(session))
        whole = set(tenants)
        partial = {t: n for t, n in _running(session, plugins).items() if t not in whole}
        size = _installations(session, tenants) + sum(partial.values())
        if size < runtime.delta_shard_from:
            return False
        cut = list(chunks(sorted(whole | set(partial)), runtime.shard_size))
        session.add(
            ScanPlanRow(
                scan_id=scan_id,
                shards=len(cut),
                evaluated_at=now,
                dirty_plugins=plugins,
                errors=[],
                warnings=[],
                timings={"plan": round(time.perf_counter() - started, 4), "installations": size},
            )
        )
        for n, members in enumerate(cut):
            row = _shard_row(scan_id, n, [t for t in members if t in whole], _Intake(), loose=[])
            row.partial = [t for t in members if t not in whole]
            session.add(row)
        session.flush()
        catalog_store.mark_plugins_clean(session, plugins)  # taken over by the plan (module docstring)
        for n in range(len(cut)):
            _queue_shard(session, scan_id, n, now)
    return True


def _installations(session: Session, tenants: Sequence[str]) -> int:
    stmt = select(func.count()).select_from(InstallationRow)
    return sum(
        session.execute(stmt.where(InstallationRow.tenant_uuid.in_(part))).scalar_one()
        for part in chunks(list(tenants))
    )


def _running(session: Session, plugins: Sequence[str]) -> dict[str, int]:
    """tenant → how many installations of `plugins` it has."""
    found: dict[str, int] = {}
    stmt = select(InstallationRow.tenant_uuid, func.count()).group_by(InstallationRow.tenant_uuid)
    for part in chunks(list(plugins)):
        for tenant, count in session.execute(stmt.where(InstallationRow.plugin_id.in_(part))):
            found[tenant] = found.get(tenant, 0) + count
    return found


def _shard_row(scan_id: str, n: int, members: list[str], intake: _Intake, loose: list[Any]) -> ScanShardRow:
    return ScanShardRow(
        scan_id=scan_id,
        shard=n,
        tenants=members,
        problems={t: intake.problems[t] for t in members if t in intake.problems},
        loose=loose,
        status=ShardStatus.QUEUED.value,
        changes={},
        errors=[],
        warnings=[],
        unscanned={},
    )


def _queue_shard(session: Session, scan_id: str, n: int, now: datetime) -> None:
    queue.enqueue(
        session,
        SHARD_TASK,
        {"scan_id": scan_id, "shard": n},
        key=f"scan:{scan_id}:shard:{n}",
        now=now,
        max_attempts=SHARD_ATTEMPTS + 2,  # the shard gives itself up first, with its error
        lock=f"scan:{scan_id}:shard:{n}",
        priority=SCAN_PRIORITY,
    )


def in_flight(session: Session, scan_id: str) -> bool:
    """Another sharded scan is running (its shards or finish still to come): scans wait for it."""
    stmt = (
        select(ScanPlanRow.scan_id)
        .join(ScanRow, ScanRow.scan_id == ScanPlanRow.scan_id)
        .where(ScanRow.status == ScanStatus.RUNNING.value, ScanPlanRow.scan_id != scan_id)
        .limit(1)
    )
    return session.execute(stmt).first() is not None


def planned(session: Session, scan_id: str) -> bool:
    return session.get(ScanPlanRow, scan_id) is not None


# -- a shard ----------------------------------------------------------------------------------


def run_shard(runtime: ScanRuntime, scan_id: str, shard: int) -> None:
    """The `scan_shard` job: evaluate and persist one shard, once."""
    with transaction(runtime.factory) as session:
        row = session.get(ScanShardRow, (scan_id, shard))
        if row is None or ShardStatus(row.status).final:
            return  # done already (at-least-once delivery), or the plan is gone
        row.attempts += 1
        row.status, row.worker, row.started_at = ShardStatus.RUNNING.value, _WORKER, runtime.clock()
        attempts = row.attempts
    if attempts > SHARD_ATTEMPTS:
        _give_up(runtime, scan_id, shard, f"gave up after {SHARD_ATTEMPTS} attempts (its worker stopped)")
        return
    started = time.perf_counter()
    try:
        _evaluate_racing(runtime, scan_id, shard, started)
    except Exception as exc:
        if is_transient(exc) and attempts < SHARD_ATTEMPTS:
            raise  # the queue retries it with backoff
        log.exception("scan shard given up", extra={"scan_id": scan_id, "shard": shard})
        _give_up(runtime, scan_id, shard, failure_text(exc))


def _evaluate_racing(runtime: ScanRuntime, scan_id: str, shard: int, started: float) -> None:
    """Shards running at once write the shared, content-addressed verdicts: when another shard
    committed the same new verdict first, this shard's transaction is run again, alone (it then
    finds the verdict stored, and nobody else can insert one under it)."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            _evaluate(runtime, scan_id, shard, started, alone=attempt > 1)
        except (IntegrityError, psycopg.IntegrityError):  # COPY raises the driver's own error
            if attempt == CONFLICT_RETRIES:
                raise
            log.warning("scan shard met a concurrent insert; running it again", extra={"shard": shard})
        else:
            return


def _writers_lock(session: Session, *, alone: bool) -> None:
    """Shard writers share a lock; a shard run again after a conflict takes it exclusively (it waits
    for the writers in flight, and holds new ones back until it commits). SQLite has one writer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    lock = func.pg_advisory_xact_lock if alone else func.pg_advisory_xact_lock_shared
    session.execute(select(lock(_WRITERS_LOCK_CLASS, func.hashtext(func.current_schema()))))


def _results(session: Session, runtime: ScanRuntime, row: ScanShardRow) -> list[ManifestResult]:
    """The shard's tenants: stored manifests of those read well, the problems of the others."""
    source = runtime.tenant_source.name if runtime.tenant_source is not None else "store"
    failed = {t for t, p in row.problems.items() if p.get("problem")}
    good = [t for t in row.tenants if t not in failed]
    loaded = {m.tenant_uuid: m for m in inventory_store.load_manifests(session, good)} if good else {}
    results = []
    for tenant in row.tenants:
        noted = row.problems.get(tenant, {})
        entries = tuple(InputProblem(**p) for p in noted.get("entries", []))
        if tenant in loaded:
            results.append(ManifestResult(source, loaded[tenant], None, entries))
            continue
        problem = noted.get("problem") or _problem(
            InputProblem(source, f"tenant {tenant}", None, "no such tenant", tenant)
        )
        results.append(ManifestResult(source, None, InputProblem(**problem), entries))
    results += [ManifestResult(source, None, InputProblem(**p)) for p in row.loose]
    return results


def _evaluate(runtime: ScanRuntime, scan_id: str, shard: int, started: float, *, alone: bool) -> None:
    policy = runtime.policy()
    with transaction(runtime.factory) as session:
        _writers_lock(session, alone=alone)
        row = session.get_one(ScanShardRow, (scan_id, shard))
        plan = session.get_one(ScanPlanRow, scan_id)
        now = plan.evaluated_at
        if session.get_one(ScanRow, scan_id).kind == ScanKind.DELTA.value:
            work = DeltaWork(row.tenants, plan.dirty_plugins, row.partial)
            result, changes = evaluate_delta(session, runtime, policy, scan_id, work, now)
            unscanned: dict[str, str] = {}
        else:
            result, changes, unscanned = _evaluate_tenants(session, runtime, policy, scan_id, row, now)
        _record(row, result, changes, unscanned, time.perf_counter() - started, runtime.clock())
        _count_finished(session, scan_id, now)
    for change in changes.changes:
        runtime.metrics.recommendation_changes_total.labels(change=change.change.value).inc()


def _evaluate_tenants(
    session: Session,
    runtime: ScanRuntime,
    policy: CurrentPolicy,
    scan_id: str,
    row: ScanShardRow,
    now: datetime,
) -> tuple[ScanResult, ChangeSet, dict[str, str]]:
    """A full scan's shard: its tenants, each from its stored manifest (or its last good one)."""
    evaluated = dirty_manifests(session, row.tenants)  # before the manifests: see `scans.dirty`
    results = _fall_back_to_last_good(session, runtime, _results(session, runtime, row), policy, now)
    result = scan(evaluation_engine(session, runtime, policy, now), results)
    scope = [r.manifest.tenant_uuid for r in results if r.manifest is not None]
    changes = persist_findings(
        session, result.findings, scope=scope, scan_id=scan_id, now=now, policy_version=policy.version
    )
    fresh = {r.manifest.tenant_uuid for r in results if r.manifest is not None and r.stale_since is None}
    mark_evaluated(session, {t: digest for t, digest in evaluated.items() if t in fresh})
    run_hooks(runtime, session, scan_id, changes, now)
    return result, changes, _unscanned(results)


def _record(
    row: ScanShardRow,
    result: ScanResult,
    changes: ChangeSet,
    unscanned: dict[str, str],
    seconds: float,
    now: datetime,
) -> None:
    row.status, row.finished_at, row.seconds = ShardStatus.DONE.value, now, round(seconds, 4)
    row.tenants_total, row.tenants_scanned = result.tenants_total, result.tenants_scanned
    row.tenants_stale, row.installations = result.tenants_stale, result.installations
    row.findings = len(result.findings)
    counted: dict[str, int] = {}
    for change in changes.changes:
        counted[change.change.value] = counted.get(change.change.value, 0) + 1
    row.changes = counted
    row.errors = [p.as_report_error() for p in result.errors[:MAX_ERRORS]]
    row.warnings = [p.as_report_error() for p in result.warnings[:MAX_ERRORS]]
    row.unscanned = unscanned


def _give_up(runtime: ScanRuntime, scan_id: str, shard: int, failure: str) -> None:
    """The shard failed for good: its tenants are not scanned; the scan still finishes."""
    with transaction(runtime.factory) as session:
        row = session.get_one(ScanShardRow, (scan_id, shard))
        if ShardStatus(row.status).final:
            return
        plan = session.get_one(ScanPlanRow, scan_id)
        now = plan.evaluated_at
        row.status, row.finished_at, row.failure = ShardStatus.GIVEN_UP.value, runtime.clock(), failure[:2000]
        row.tenants_total = len(row.tenants) + len(row.partial) + len(row.loose)
        row.errors = [{"source": "scan", "tenant_uuid": None, "error": f"shard {shard}: {failure}"[:2000]}]
        row.unscanned = dict.fromkeys([*row.tenants, *row.partial], "failed")
        catalog_store.mark_dirty(session, plan.dirty_plugins)  # the plan's marks, handed back
        _count_finished(session, scan_id, now)


def _count_finished(session: Session, scan_id: str, now: datetime) -> None:
    """Count this shard as finished; the last one queues the finish job (one key: queued once)."""
    finished, total = session.execute(
        update(ScanPlanRow)
        .where(ScanPlanRow.scan_id == scan_id)
        .values(shards_finished=ScanPlanRow.shards_finished + 1)
        .returning(ScanPlanRow.shards_finished, ScanPlanRow.shards)
    ).one()
    if finished >= total:
        queue.enqueue(
            session,
            FINISH_TASK,
            {"scan_id": scan_id},
            key=f"scan:{scan_id}:finish",
            now=now,
            lock=f"scan:{scan_id}:finish",
            priority=SCAN_PRIORITY,
        )


# -- the finish job ---------------------------------------------------------------------------


def run_finish(runtime: ScanRuntime, scan_id: str) -> None:
    """The `scan_finish` job: coverage, the failure streak, alerts and the audit record, once.

    A scan must never stay `running` (it would hold back every later scan): a failure that is not
    transient ends it `failed`, counted, retried and alerted on like any failed scan."""
    try:
        _finish(runtime, scan_id)
    except Exception as exc:
        if is_transient(exc):
            raise  # the queue runs the finish again; it finds the scan running still
        log.exception("scan finish failed", extra={"scan_id": scan_id})
        with runtime.factory() as session:
            row = session.get_one(ScanRow, scan_id)
            if row.status != ScanStatus.RUNNING.value:
                return  # it finished before the failure (e.g. in the metrics): the outcome stands
            started, kind = row.started_at or runtime.clock(), ScanKind(row.kind)
        seconds = (runtime.clock() - started).total_seconds()
        finish_failed(runtime, scan_id, kind, failure_text(exc), exception_cause(exc), seconds)


def _finish(runtime: ScanRuntime, scan_id: str) -> None:
    policy = runtime.policy()
    now = runtime.clock()
    with transaction(runtime.factory) as session:
        row = session.get_one(ScanRow, scan_id)
        if row.status != ScanStatus.RUNNING.value:
            return  # finished already
        plan = session.get_one(ScanPlanRow, scan_id)
        shards = list(session.execute(select(ScanShardRow).where(ScanShardRow.scan_id == scan_id)).scalars())
        result = _totals(plan, shards, now)
        complete = result.complete(policy.rules.defaults.min_coverage)
        _record_scan(row, plan, shards, result, policy, complete, now)
        conclude(session, runtime, row, result, policy.rules, now)
        fleet, kind, seconds = row.fleet, row.kind, (now - (row.started_at or now)).total_seconds()
    _observe(runtime, result, policy, fleet, kind, seconds)


def _totals(plan: ScanPlanRow, shards: list[ScanShardRow], now: datetime) -> ScanResult:
    result = ScanResult(generated_at=now, security_data_problems=plan.security_data_problems)
    for s in shards:
        result.tenants_total += s.tenants_total
        result.tenants_scanned += s.tenants_scanned
        result.tenants_stale += s.tenants_stale
        result.installations += s.installations
    return result


def _record_scan(
    row: ScanRow,
    plan: ScanPlanRow,
    shards: list[ScanShardRow],
    result: ScanResult,
    policy: CurrentPolicy,
    complete: bool,
    now: datetime,
) -> None:
    row.status = (ScanStatus.SUCCEEDED if complete else ScanStatus.INCOMPLETE).value
    row.finished_at = now
    row.tenants_total, row.tenants_scanned = result.tenants_total, result.tenants_scanned
    row.tenants_stale = result.tenants_stale
    row.tenants_failed = result.tenants_total - result.tenants_scanned - result.tenants_stale
    row.unscanned = {t: why for s in shards for t, why in s.unscanned.items()}
    row.policy_version = policy.version
    row.installations, row.findings = result.installations, sum(s.findings for s in shards)
    row.changes = sum(sum(s.changes.values()) for s in shards)
    row.coverage_rate = result.coverage_rate
    row.errors = [*plan.errors, *(e for s in shards for e in s.errors)][:MAX_ERRORS]
    row.warnings = [*plan.warnings, *(w for s in shards for w in s.warnings)][:MAX_ERRORS]
    seconds = [s.seconds for s in shards if s.seconds is not None]
    row.timings = {
        **plan.timings,
        "shards": len(shards),
        "shard_seconds_total": round(sum(seconds), 4),
        "shard_seconds_max": round(max(seconds, default=0.0), 4),
        "total": round((now - (row.started_at or now)).total_seconds(), 4),
    }


def _observe(
    runtime: ScanRuntime, result: ScanResult, policy: CurrentPolicy, fleet: bool, kind: str, seconds: float
) -> None:
    """The finished scan's metrics (recommendation changes were counted by each shard as it committed)."""
    if fleet:
        runtime.metrics.scan_coverage_ratio.set(result.coverage_rate)
        runtime.metrics.scan_tenants_stale.set(result.tenants_stale)
    if policy.version is not None:
        runtime.metrics.policy_version.set(policy.version)
    runtime.metrics.scan_duration_seconds.labels(kind=kind).observe(seconds)


def shard_progress(session: Session, scan_id: str) -> dict[str, Any] | None:
    """Per-shard progress of a sharded scan (None: the scan was not sharded, or not planned yet)."""
    plan = session.get(ScanPlanRow, scan_id)
    if plan is None:
        return None
    rows = session.execute(
        select(ScanShardRow).where(ScanShardRow.scan_id == scan_id).order_by(ScanShardRow.shard)
    ).scalars()
    shards = [r.progress() for r in rows]
    by_status: dict[str, int] = {}
    for s in shards:
        by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    return {
        "scan_id": scan_id,
        "shards": plan.shards,
        "finished": plan.shards_finished,
        "by_status": by_status,
        "items": shards,
    }


def prune_plans(session: Session, finished_before: datetime, limit: int = 1000) -> int:
    """Drop the plans and shard rows of sharded scans finished before `finished_before` (the jobs
    ledger's retention: progress per shard is job bookkeeping; the scan row keeps the outcome), at
    most `limit` scans at a time; how many scans."""
    stmt = (
        select(ScanPlanRow.scan_id)
        .join(ScanRow, ScanRow.scan_id == ScanPlanRow.scan_id)
        .where(ScanRow.finished_at < finished_before)
        .limit(limit)
    )
    done = list(session.execute(stmt).scalars())
    if done:
        session.execute(delete(ScanShardRow).where(ScanShardRow.scan_id.in_(done)))
        session.execute(delete(ScanPlanRow).where(ScanPlanRow.scan_id.in_(done)))
    return len(done)

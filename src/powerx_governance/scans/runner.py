"""Scans through the store: request, run (full or delta), record coverage, retry, alert.

The runner is the job function behind the `scan` task; the HTTP service, the scheduler and
push webhooks only request scans. Each step owns its transaction, so a crash mid-scan leaves
the scan `running` until its job is picked up again, never half-written recommendations.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.catalog import pushes
from powerx_governance.catalog import store as catalog_store
from powerx_governance.catalog.cache import CatalogCache
from powerx_governance.catalog.loader import Loaded
from powerx_governance.db.session import transaction
from powerx_governance.durations import parse_duration
from powerx_governance.errors import InputError, InputProblem, SourceError
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.jobs import queue
from powerx_governance.observability.metrics import Metrics
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.policy_versions.models import CurrentPolicy
from powerx_governance.recommendations.store import ChangeSet, persist_findings
from powerx_governance.scans.alerts import SCAN_FAILURES, raise_scan_alert, resolve_scan_alerts
from powerx_governance.scans.audit import record_scan
from powerx_governance.scans.scanner import ScanResult, scan
from powerx_governance.scans.tables import ScanKind, ScanRow, ScanStatus, ScanTrigger
from powerx_governance.sources.interface import CatalogSource, TenantSource

SCAN_TASK = "scan"
_SCAN_LOCK_CLASS = 0x5343414E  # "SCAN": the advisory lock class of scans (the schema is the object id)
_LOCAL_LOCKS: dict[str, threading.Lock] = {}
log = logging.getLogger("powerx.scans")
# Called inside the transaction that persists recommendation changes (the outbox pattern):
# (session, changes, now, triggered_at) where triggered_at is when the triggering data arrived.
ChangeHook = Callable[[Session, ChangeSet, datetime, datetime], None]
MAX_RETRY_ATTEMPTS = 5
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ScanRuntime:
    """What a scan needs from its surroundings."""

    factory: sessionmaker[Session]
    policy: Callable[[], CurrentPolicy]
    clock: Clock
    metrics: Metrics
    tenant_source: TenantSource | None = None
    catalog_source: CatalogSource | None = None
    retry_delay_seconds: float = 60.0
    change_hooks: list[ChangeHook] = field(default_factory=list)
    catalog_cache: CatalogCache = field(default_factory=CatalogCache)

    def rules(self) -> GovernanceRules:
        return self.policy().rules


def request_scan(
    session: Session,
    *,
    kind: ScanKind,
    trigger: ScanTrigger,
    now: datetime,
    tenants: Sequence[str] = (),
    requested_by: str | None = None,
    schedule_slot: str | None = None,
    retry_of: str | None = None,
    attempt: int = 1,
    run_after: datetime | None = None,
) -> str:
    """Record a queued scan and its job in the caller's transaction; returns the scan id."""
    scan_id = str(uuid.uuid4())
    session.add(
        ScanRow(
            scan_id=scan_id,
            kind=kind.value,
            fleet=kind is ScanKind.FULL and not tenants,
            trigger=trigger.value,
            status=ScanStatus.QUEUED.value,
            requested_by=requested_by,
            tenant_filter=list(tenants),
            schedule_slot=schedule_slot,
            retry_of=retry_of,
            attempt=attempt,
            requested_at=now,
            errors=[],
            timings={},
        )
    )
    session.flush()
    queue.enqueue(
        session,
        SCAN_TASK,
        {"scan_id": scan_id},
        key=f"scan:{scan_id}",
        now=now,
        run_after=run_after,
        max_attempts=2,
    )
    return scan_id


@dataclass
class _Outcome:
    result: ScanResult
    policy_version: int | None
    changes: ChangeSet = field(default_factory=ChangeSet)
    timings: dict[str, float] = field(default_factory=dict)
    unscanned: dict[str, str] = field(default_factory=dict)  # tenant -> "stale" | "failed"


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._start, 4)
        self._start = now


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
            row.status, row.started_at = ScanStatus.RUNNING.value, runtime.clock()
            kind, tenants = ScanKind(row.kind), list(row.tenant_filter)
        started = time.perf_counter()
        try:
            outcome = _full(runtime, scan_id, tenants) if kind is ScanKind.FULL else _delta(runtime, scan_id)
            _finish(runtime, scan_id, kind, outcome, time.perf_counter() - started)
        except Exception as exc:  # every failure must end the scan as failed
            log.exception("scan failed", extra={"scan_id": scan_id, "kind": kind.value})
            failure, cause = _failure_text(exc), _exception_cause(exc)
            _finish_failed(runtime, scan_id, kind, failure, cause, time.perf_counter() - started)


def _failure_text(exc: Exception) -> str:
    """A source failure already names its source and what happened; anything else names its type."""
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Cause:
    """Why a scan was unsuccessful, in the bounded terms the `version_scan_last_failure_info`
    metric and the Prometheus alert carry (the full text is on the scan and the A-2 alert)."""

    source: str
    reason: str


def _exception_cause(exc: Exception) -> _Cause:
    """The failing source and its failure kind (`connect`, `http_5xx`, …), or the error's type."""
    if isinstance(exc, SourceError):
        return _Cause(exc.source, _source_failure_kind(exc) or "unavailable")
    return _Cause("governance", type(exc).__name__)


def _source_failure_kind(exc: BaseException | None) -> str | None:
    """How the last attempt failed, when an HTTP source error says so (possibly as the cause)."""
    while isinstance(exc, SourceError):
        kind = getattr(exc, "kind", None)
        if kind:
            return str(kind)
        exc = exc.__cause__
    return None


def _incomplete_cause(runtime: ScanRuntime, result: ScanResult) -> _Cause:
    """An incomplete scan: unreadable security data comes first (it fails closed), then coverage."""
    if result.security_data_problems:
        return _Cause(
            runtime.catalog_source.name if runtime.catalog_source else "catalog", "security_data_unreadable"
        )
    return _Cause(
        runtime.tenant_source.name if runtime.tenant_source else "inventory", "coverage_below_minimum"
    )


def _engine(session: Session, runtime: ScanRuntime, policy: CurrentPolicy, now: datetime) -> PolicyEngine:
    return PolicyEngine(runtime.catalog_cache.index(session), policy.rules, now, plain=policy.plain)


def _refresh_catalog(runtime: ScanRuntime, now: datetime) -> Loaded:
    """Fetch the catalog and store it merged with the push source (pushed records stay; the ones the
    catalog source withdrew are retired); advisories stay as stored when the source's could not be read."""
    if runtime.catalog_source is None:
        return Loaded()
    loaded = runtime.catalog_source.catalog()
    catalog = loaded.catalog()
    keep = bool(catalog.advisory_source_problems)
    with transaction(runtime.factory) as session:
        pushed = None if keep else pushes.retire_withdrawn(session, catalog.advisories, now)
        catalog_store.replace_catalog(session, catalog, now, keep_advisories=keep, pushed=pushed)
    return loaded


def _fetch(runtime: ScanRuntime, tenants: Sequence[str]) -> list[ManifestResult]:
    if runtime.tenant_source is not None:
        return list(runtime.tenant_source.manifests(tenants or None))
    with runtime.factory() as session:
        stored = inventory_store.load_manifests(session, tenants or None)
    return [ManifestResult("store", m, None) for m in stored]


def _full(runtime: ScanRuntime, scan_id: str, tenants: Sequence[str]) -> _Outcome:
    now, timer, policy = runtime.clock(), _Timer(), runtime.policy()
    intake = _refresh_catalog(runtime, now)
    timer.lap("catalog")
    results = _fetch(runtime, tenants)
    results += _not_found(runtime, tenants, results)
    timer.lap("fetch")
    with transaction(runtime.factory) as session:
        results = _fall_back_to_last_good(session, runtime, results, policy, now)
        good = [r.manifest for r in results if r.manifest is not None and r.stale_since is None]
        if runtime.tenant_source is not None:
            inventory_store.upsert_manifests(session, good, now)
        timer.lap("store_inventory")
        engine = _engine(session, runtime, policy, now)
        result = scan(engine, results)
        timer.lap("evaluate")
        scope = [r.manifest.tenant_uuid for r in results if r.manifest is not None]
        changes = persist_findings(
            session, result.findings, scope=scope, scan_id=scan_id, now=now, policy_version=policy.version
        )
        inventory_store.mark_clean(session, [m.tenant_uuid for m in good])
        if not tenants:
            catalog_store.mark_plugins_clean(session, catalog_store.dirty_plugins(session))
        _run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("persist")
    result.add_catalog_problems(intake.problems, intake.warnings)
    return _Outcome(result, policy.version, changes, timer.timings, _unscanned(results))


def _not_found(
    runtime: ScanRuntime, tenants: Sequence[str], results: list[ManifestResult]
) -> list[ManifestResult]:
    """Tenants asked for by name that the source did not return: each is a failed tenant, named."""
    seen = {r.manifest.tenant_uuid for r in results if r.manifest is not None}
    seen |= {r.problem.tenant_uuid for r in results if r.problem is not None and r.problem.tenant_uuid}
    source = runtime.tenant_source.name if runtime.tenant_source is not None else "store"
    return [
        ManifestResult(source, None, InputProblem(source, f"tenant {name}", None, "no such tenant", name))
        for name in dict.fromkeys(tenants)
        if name not in seen
    ]


def _unscanned(results: list[ManifestResult]) -> dict[str, str]:
    """The tenants not read afresh: evaluated from their last good manifest, or not at all."""
    unscanned: dict[str, str] = {}
    for r in results:
        if r.manifest is not None and r.stale_since is not None:
            unscanned[r.manifest.tenant_uuid] = "stale"
        elif r.manifest is None and r.problem is not None and r.problem.tenant_uuid:
            unscanned[r.problem.tenant_uuid] = "failed"
    return unscanned


def _fall_back_to_last_good(
    session: Session,
    runtime: ScanRuntime,
    results: list[ManifestResult],
    policy: CurrentPolicy,
    now: datetime,
) -> list[ManifestResult]:
    """A tenant whose manifest could not be fetched or validated is evaluated from its last good
    manifest when that is younger than `defaults.max_report_age` (its findings are marked stale)."""
    failed = {
        r.problem.tenant_uuid: i
        for i, r in enumerate(results)
        if r.manifest is None and r.problem is not None and r.problem.tenant_uuid
    }
    if runtime.tenant_source is None or not failed:
        return results
    oldest = now - parse_duration(policy.rules.defaults.max_report_age)
    fetched = inventory_store.fetched_since(session, sorted(failed), oldest)
    if not fetched:
        return results
    patched = list(results)
    for manifest in inventory_store.load_manifests(session, sorted(fetched)):
        i = failed[manifest.tenant_uuid]
        patched[i] = replace(results[i], manifest=manifest, stale_since=fetched[manifest.tenant_uuid])
    return patched


def _delta(runtime: ScanRuntime, scan_id: str) -> _Outcome:
    """Only tenants whose manifest changed, and only installations of plugins whose data changed."""
    now, timer, policy = runtime.clock(), _Timer(), runtime.policy()
    with transaction(runtime.factory) as session:
        dirty_tenants = set(inventory_store.dirty_tenants(session))
        dirty_plugins = set(catalog_store.dirty_plugins(session))
        whole = inventory_store.load_manifests(session, sorted(dirty_tenants)) if dirty_tenants else []
        partial = [
            m
            for m in inventory_store.load_installations_of(session, sorted(dirty_plugins))
            if m.tenant_uuid not in dirty_tenants
        ]
        timer.lap("load")
        engine = _engine(session, runtime, policy, now)
        installed = _installed_for_dependencies(session, engine, partial, dirty_plugins)
        result = scan(
            engine, [ManifestResult("store", m, None) for m in (*whole, *partial)], installed=installed
        )
        timer.lap("evaluate")
        findings_whole = [f for f in result.findings if f.tenant.tenant_uuid in dirty_tenants]
        findings_partial = [f for f in result.findings if f.tenant.tenant_uuid not in dirty_tenants]
        version = policy.version
        changes = persist_findings(
            session,
            findings_whole,
            scope=sorted(dirty_tenants),
            scan_id=scan_id,
            now=now,
            policy_version=version,
        )
        pairs = [(m.tenant_uuid, p.plugin_id) for m in partial for p in m.plugins]
        more = persist_findings(
            session, findings_partial, scope=pairs, scan_id=scan_id, now=now, policy_version=version
        )
        changes.changes += more.changes
        changes.unchanged += more.unchanged
        inventory_store.mark_clean(session, sorted(dirty_tenants))
        catalog_store.mark_plugins_clean(session, sorted(dirty_plugins))
        _run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("persist")
    return _Outcome(result, policy.version, changes, timer.timings)


def _installed_for_dependencies(
    session: Session, engine: PolicyEngine, partial: list[TenantManifest], plugin_ids: set[str]
) -> dict[str, dict[str, str]]:
    """What partially loaded tenants run of the plugins the changed plugins' releases depend on."""
    needed = {
        dep.id
        for pid in plugin_ids
        if (plugin := engine.index.plugins.get(pid)) is not None
        for release in plugin.releases
        for dep in release.release.dependencies
    }
    if not needed or not partial:
        return {}
    known = inventory_store.installed_versions(session, [m.tenant_uuid for m in partial], sorted(needed))
    for manifest in partial:
        known.setdefault(manifest.tenant_uuid, {}).update({p.plugin_id: p.version for p in manifest.plugins})
    return known


def _run_hooks(
    runtime: ScanRuntime, session: Session, scan_id: str, changes: ChangeSet, now: datetime
) -> None:
    """Follow-ups (notifications, decision bookkeeping) in the same transaction as the changes."""
    if not changes.changes:
        return
    triggered_at = session.get_one(ScanRow, scan_id).requested_at  # when the triggering data arrived
    for hook in runtime.change_hooks:
        hook(session, changes, now, triggered_at)


def _finish(runtime: ScanRuntime, scan_id: str, kind: ScanKind, outcome: _Outcome, seconds: float) -> None:
    now, result = runtime.clock(), outcome.result
    complete = result.complete(runtime.rules().defaults.min_coverage)
    with transaction(runtime.factory) as session:
        row = session.get_one(ScanRow, scan_id)
        _record_outcome(row, outcome, complete, now, seconds)
        record_scan(session, row, now)
        if not complete:
            _after_failure(session, runtime, row, _incomplete_cause(runtime, result), now)
        elif row.fleet:
            _after_fleet_success(session, runtime, row, now)
        fleet = row.fleet
    if fleet:  # deltas and tenant-filtered scans never stand for the fleet's coverage
        runtime.metrics.scan_coverage_ratio.set(result.coverage_rate)
        runtime.metrics.scan_tenants_stale.set(result.tenants_stale)
    if outcome.policy_version is not None:
        runtime.metrics.policy_version.set(outcome.policy_version)
    runtime.metrics.scan_duration_seconds.labels(kind=kind.value).observe(seconds)
    for change in outcome.changes.changes:
        runtime.metrics.recommendation_changes_total.labels(change=change.change.value).inc()


def _record_outcome(row: ScanRow, outcome: _Outcome, complete: bool, now: datetime, seconds: float) -> None:
    result = outcome.result
    row.status = (ScanStatus.SUCCEEDED if complete else ScanStatus.INCOMPLETE).value
    row.finished_at = now
    row.tenants_total, row.tenants_scanned = result.tenants_total, result.tenants_scanned
    row.tenants_stale = result.tenants_stale
    row.tenants_failed = result.tenants_total - result.tenants_scanned - result.tenants_stale
    row.unscanned = outcome.unscanned
    row.policy_version = outcome.policy_version
    row.installations, row.findings = result.installations, len(result.findings)
    row.changes, row.coverage_rate = len(outcome.changes.changes), result.coverage_rate
    row.errors = [p.as_report_error() for p in result.errors[:1000]]
    row.warnings = [p.as_report_error() for p in result.warnings[:1000]]
    row.timings = {**outcome.timings, "total": round(seconds, 4)}


def _finish_failed(
    runtime: ScanRuntime, scan_id: str, kind: ScanKind, failure: str, cause: _Cause, seconds: float
) -> None:
    now = runtime.clock()
    with transaction(runtime.factory) as session:
        row = session.get_one(ScanRow, scan_id)
        row.status, row.finished_at, row.failure = ScanStatus.FAILED.value, now, failure[:2000]
        row.coverage_rate = 0.0
        row.timings = {"total": round(seconds, 4)}
        record_scan(session, row, now)
        _after_failure(session, runtime, row, cause, now)
        fleet = row.fleet
    if fleet:
        runtime.metrics.scan_coverage_ratio.set(0.0)
    runtime.metrics.scan_duration_seconds.labels(kind=kind.value).observe(seconds)


def _after_failure(
    session: Session, runtime: ScanRuntime, row: ScanRow, cause: _Cause, now: datetime
) -> None:
    """Count it, retry it within the configured delay (≤ 2 minutes); a fleet full scan also extends
    the failure streak, which raises the alert (with its cause) at escalation_after in a row."""
    runtime.metrics.scan_failure_total.labels(kind=row.kind).inc()
    if row.attempt < MAX_RETRY_ATTEMPTS:
        request_scan(
            session,
            kind=ScanKind(row.kind),
            trigger=ScanTrigger.RETRY,
            now=now,
            tenants=row.tenant_filter,
            requested_by=row.requested_by,
            retry_of=row.scan_id,
            attempt=row.attempt + 1,
            run_after=now + timedelta(seconds=runtime.retry_delay_seconds),
        )
    if not row.fleet:
        return
    streak = consecutive_failures(session)
    runtime.metrics.scan_consecutive_failures.set(streak)
    runtime.metrics.scan_failed(cause.source, cause.reason)
    rules = _rules_or_defaults(runtime)  # the failure may be the rules file itself
    if streak >= rules.defaults.escalation_after and raise_scan_alert(session, row, streak, rules, now):
        runtime.metrics.alerts_total.labels(kind=SCAN_FAILURES).inc()


def _after_fleet_success(session: Session, runtime: ScanRuntime, row: ScanRow, now: datetime) -> None:
    """The streak ends: the gauge drops to 0 and a firing scan-failure alert is resolved, with a message."""
    runtime.metrics.scan_consecutive_failures.set(0)
    runtime.metrics.scan_recovered()
    resolve_scan_alerts(session, row, _rules_or_defaults(runtime), now)


def _rules_or_defaults(runtime: ScanRuntime) -> GovernanceRules:
    try:
        return runtime.rules()
    except InputError:
        log.warning("rules file unusable while recording a failed scan; using the built-in defaults")
        return DEFAULT_RULES


def consecutive_failures(session: Session) -> int:
    """Finished fleet full scans in a row, newest first, that were not successful.

    Delta scans (pushes) and tenant-filtered scans neither extend nor end the streak: a push
    that succeeds says nothing about whether the fleet can be scanned.
    """
    finished = (ScanStatus.SUCCEEDED.value, ScanStatus.INCOMPLETE.value, ScanStatus.FAILED.value)
    stmt = (
        select(ScanRow.status)
        .where(ScanRow.fleet.is_(True), ScanRow.status.in_(finished))
        .order_by(ScanRow.finished_at.desc(), ScanRow.requested_at.desc())
        .limit(100)
    )
    streak = 0
    for status in session.execute(stmt).scalars():
        if status == ScanStatus.SUCCEEDED.value:
            break
        streak += 1
    return streak


def scan_summary(row: ScanRow) -> dict[str, Any]:
    """A scan as the API shows it."""
    return {
        "scan_id": row.scan_id,
        "kind": row.kind,
        "fleet": row.fleet,
        "trigger": row.trigger,
        "status": row.status,
        "requested_by": row.requested_by,
        "tenants": row.tenant_filter,
        "retry_of": row.retry_of,
        "attempt": row.attempt,
        "requested_at": row.requested_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "coverage": {
            "tenants_total": row.tenants_total,
            "tenants_scanned": row.tenants_scanned,
            "tenants_stale": row.tenants_stale,
            "tenants_failed": row.tenants_failed,
            "installations": row.installations,
            "rate": row.coverage_rate,
        },
        "findings": row.findings,
        "changes": row.changes,
        "errors": row.errors,
        "warnings": row.warnings,
        "timings": row.timings,
        "failure": row.failure,
        "policy_version": row.policy_version,
    }

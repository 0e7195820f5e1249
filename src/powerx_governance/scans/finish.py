"""Finishing a scan: its outcome and coverage, metrics, the failure streak, retries, and the
alert hand-off.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.db.session import transaction
from powerx_governance.errors import InputError, SourceError
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.scans.alerts import SCAN_FAILURES, raise_scan_alert, resolve_scan_alerts
from powerx_governance.scans.audit import record_scan
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.request import request_scan
from powerx_governance.scans.runtime import Outcome, ScanRuntime
from powerx_governance.scans.scanner import ScanResult
from powerx_governance.scans.tables import ScanRow

log = logging.getLogger("powerx.scans")
MAX_RETRY_ATTEMPTS = 5


def failure_text(exc: Exception) -> str:
    """A source failure already names its source and what happened; anything else names its type."""
    return str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _Cause:
    """Why a scan was unsuccessful, in the bounded terms the `version_scan_last_failure_info`
    metric and the Prometheus alert carry (the full text is on the scan and the A-2 alert)."""

    source: str
    reason: str


def exception_cause(exc: Exception) -> _Cause:
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


def finish(runtime: ScanRuntime, scan_id: str, kind: ScanKind, outcome: Outcome, seconds: float) -> None:
    now, result, rules = runtime.clock(), outcome.result, outcome.policy.rules  # the rules it evaluated with
    complete = result.complete(rules.defaults.min_coverage)
    with transaction(runtime.factory) as session:
        row = session.get_one(ScanRow, scan_id)
        _record_outcome(row, outcome, complete, now, seconds)
        conclude(session, runtime, row, result, rules, now)
        fleet = row.fleet
    if fleet:  # deltas and tenant-filtered scans never stand for the fleet's coverage
        runtime.metrics.scan_coverage_ratio.set(result.coverage_rate)
        runtime.metrics.scan_tenants_stale.set(result.tenants_stale)
    if outcome.policy.version is not None:
        runtime.metrics.policy_version.set(outcome.policy.version)
    runtime.metrics.scan_duration_seconds.labels(kind=kind.value).observe(seconds)
    counted = Counter(change.change for change in outcome.changes.changes)  # a first ingest: 740,000
    for change, count in counted.items():
        runtime.metrics.recommendation_changes_total.labels(change=change.value).inc(count)


def conclude(
    session: Session,
    runtime: ScanRuntime,
    row: ScanRow,
    result: ScanResult,
    rules: GovernanceRules,
    now: datetime,
) -> None:
    """After the outcome is on `row`: the scan's audit record, then the retry and the failure streak
    (unsuccessful) or the streak's end (a successful fleet scan), in the caller's transaction."""
    record_scan(session, row, now)
    if row.status != ScanStatus.SUCCEEDED.value:
        _after_failure(session, runtime, row, _incomplete_cause(runtime, result), now, rules)
    elif row.fleet:
        _after_fleet_success(session, runtime, row, rules, now)


def _record_outcome(row: ScanRow, outcome: Outcome, complete: bool, now: datetime, seconds: float) -> None:
    result = outcome.result
    row.status = (ScanStatus.SUCCEEDED if complete else ScanStatus.INCOMPLETE).value
    row.finished_at = now
    row.tenants_total, row.tenants_scanned = result.tenants_total, result.tenants_scanned
    row.tenants_stale = result.tenants_stale
    row.tenants_failed = result.tenants_total - result.tenants_scanned - result.tenants_stale
    row.unscanned = outcome.unscanned
    row.policy_version = outcome.policy.version
    row.installations, row.findings = result.installations, result.finding_count
    row.changes, row.coverage_rate = len(outcome.changes.changes), result.coverage_rate
    row.errors = [p.as_report_error() for p in result.errors[:1000]]
    row.warnings = [p.as_report_error() for p in result.warnings[:1000]]
    row.timings = {**outcome.timings, "total": round(seconds, 4)}


def finish_failed(
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
    session: Session,
    runtime: ScanRuntime,
    row: ScanRow,
    cause: _Cause,
    now: datetime,
    rules: GovernanceRules | None = None,
) -> None:
    """Count it, retry it within the configured delay (≤ 2 minutes); a fleet full scan also extends
    the failure streak, which raises the alert (with its cause) at escalation_after in a row.

    `rules`: those the scan evaluated with; None when it failed before (the rules are read again)."""
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
    if rules is None:
        rules = _rules_or_defaults(runtime)  # the failure may be the rules file itself
    if streak >= rules.defaults.escalation_after and raise_scan_alert(
        session, runtime.notifications, row, streak, rules, now
    ):
        runtime.metrics.alerts_total.labels(kind=SCAN_FAILURES).inc()


def _after_fleet_success(
    session: Session, runtime: ScanRuntime, row: ScanRow, rules: GovernanceRules, now: datetime
) -> None:
    """The streak ends: the gauge drops to 0 and a firing scan-failure alert is resolved, with a message."""
    runtime.metrics.scan_consecutive_failures.set(0)
    runtime.metrics.scan_recovered()
    resolve_scan_alerts(session, runtime.notifications, row, rules, now)


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

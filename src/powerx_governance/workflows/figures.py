"""`powerx version metrics`: the workflow figures, computed from the store (any process can run it)."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.queries import accept_rate
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.recommendations.queries import critical_patches_open
from powerx_governance.scans.model import ScanTrigger
from powerx_governance.scans.queries import last_fleet_scan
from powerx_governance.scans.runner import consecutive_failures
from powerx_governance.scans.tables import ScanRow


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
    }


def _coverage(session: Session) -> dict[str, Any]:
    """The last fleet full scan (deltas and tenant-filtered scans never stand for the fleet)."""
    last = last_fleet_scan(session)
    if last is None:
        return {"last_scan": None}
    return {
        "last_scan": last.scan_id,
        "status": last.status,
        "finished_at": last.finished_at.isoformat() if last.finished_at else None,
        "rate": last.coverage_rate,
        "tenants_total": last.tenants_total,
        "tenants_scanned": last.tenants_scanned,
        "tenants_stale": last.tenants_stale,
        "tenants_failed": last.tenants_failed,
        "consecutive_failures": consecutive_failures(session),
    }


def _push_latency_ms(session: Session, since: datetime) -> dict[str, float | None]:
    rows = session.execute(
        select(ScanRow.requested_at, ScanRow.finished_at).where(
            ScanRow.trigger == ScanTrigger.PUSH.value,
            ScanRow.finished_at.is_not(None),
            ScanRow.requested_at >= since,
        )
    )
    return _percentiles([(done - asked).total_seconds() * 1000 for asked, done in rows if done is not None])


def _ignores(session: Session, since: datetime) -> dict[str, int]:
    stmt = (
        select(DecisionRow.scope, func.count())
        .where(DecisionRow.kind == DecisionKind.IGNORE.value, DecisionRow.created_at >= since)
        .group_by(DecisionRow.scope)
    )
    return {scope or "target": n for scope, n in session.execute(stmt)}


def _sla_misses(session: Session, since: datetime) -> dict[str, int]:
    stmt = select(AuditEventRow.meta).where(
        AuditEventRow.operation == "sla.breach", AuditEventRow.occurred_at >= since
    )
    counts: dict[str, int] = {}
    for meta in session.execute(stmt).scalars():
        kind = str(meta.get("kind", "unknown"))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def workflow_figures(session: Session, now: datetime, *, days: int = 30) -> dict[str, Any]:
    """Coverage, push latency percentiles, accept rate, ignore totals, SLA misses, open criticals."""
    since = now - timedelta(days=days)
    return {
        "window_days": days,
        "coverage": _coverage(session),
        "push_latency_ms": _push_latency_ms(session, since),
        "accept_rate": accept_rate(session),
        "ignores": _ignores(session, since),
        "sla_misses": _sla_misses(session, since),
        "open_critical_patches": critical_patches_open(session, tenant_uuid=None),
    }

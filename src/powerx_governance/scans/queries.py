"""Scan reads shared by the API, the console and the CLI: the fleet's last scan, a tenant's part of
a scan, scan history and progress, and the operational alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from powerx_governance.errors import InvalidError
from powerx_governance.inventory.queries import installation_count
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.scans.model import FINISHED, ScanStatus, TenantOutcome
from powerx_governance.scans.tables import AlertRow, ScanRow
from powerx_governance.times import iso


class UnknownTenantsError(InvalidError, LookupError):
    """Tenants named in a scan request that the store does not know (by uuid or key)."""

    title = "Unknown tenants"

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(f"unknown tenants: {', '.join(names)}")
        self.names = list(names)

    def problem_extra(self) -> dict[str, Any]:
        errors = [{"field": "tenants", "error": f"unknown tenant {name!r}"} for name in self.names]
        return {"errors": errors, "tenants": self.names}


def last_fleet_scan(session: Session) -> ScanRow | None:
    """The newest finished full scan of the whole fleet: what coverage and the failure streak follow."""
    stmt = (
        select(ScanRow)
        .where(ScanRow.fleet.is_(True), ScanRow.status.in_(FINISHED))
        .order_by(ScanRow.finished_at.desc(), ScanRow.requested_at.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def resolve_tenants(session: Session, names: Sequence[str]) -> list[str]:
    """The tenant uuids of `names` (each a uuid or a tenant key), in order; UnknownTenantsError naming
    the ones the store does not know."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    stmt = select(TenantRow.tenant_uuid, TenantRow.tenant_key).where(
        or_(TenantRow.tenant_uuid.in_(wanted), TenantRow.tenant_key.in_(wanted))
    )
    uuid_of: dict[str, str] = {}
    for uuid, key in session.execute(stmt):
        uuid_of[uuid] = uuid
        if key is not None:
            uuid_of.setdefault(key, uuid)
    unknown = [name for name in wanted if name not in uuid_of]
    if unknown:
        raise UnknownTenantsError(unknown)
    return list(dict.fromkeys(uuid_of[name] for name in wanted))


def tenant_outcome(scan: ScanRow, tenant_uuid: str) -> TenantOutcome | None:
    """What `scan` did for one tenant; None when the tenant was not part of it (or it has not finished)."""
    if scan.status not in FINISHED or (scan.tenant_filter and tenant_uuid not in scan.tenant_filter):
        return None
    if scan.status == ScanStatus.FAILED.value:
        return TenantOutcome.FAILED
    return TenantOutcome(scan.unscanned.get(tenant_uuid, TenantOutcome.SCANNED.value))


def tenant_coverage(session: Session, scan: ScanRow, tenant_uuid: str) -> dict[str, Any]:
    """The report's `coverage` block for one tenant's view of `scan` (not the fleet's figures)."""
    outcome = tenant_outcome(scan, tenant_uuid)
    evaluated = outcome in (TenantOutcome.SCANNED, TenantOutcome.STALE)
    installations = installation_count(session, tenant_uuid=tenant_uuid) if evaluated else 0
    return {
        "tenants_total": int(outcome is not None),
        "tenants_scanned": int(outcome is TenantOutcome.SCANNED),
        "tenants_stale": int(outcome is TenantOutcome.STALE),
        "tenants_failed": int(outcome is TenantOutcome.FAILED),
        "installations": int(installations or 0),
        "rate": 1.0 if outcome is TenantOutcome.SCANNED else 0.0,
    }


def alert_dict(row: AlertRow) -> dict[str, Any]:
    """An alert as the API and the CLI show it."""
    return {
        "id": row.id,
        "kind": row.kind,
        "state": row.state,
        "message": row.message,
        "cause": row.cause,
        "channel": row.channel,
        "raised_at": iso(row.raised_at),
        "resolved_at": iso(row.resolved_at),
        "data": row.data,
    }


def list_alerts(session: Session, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts, newest first; only those in `state` (firing | resolved) when given."""
    stmt = select(AlertRow).order_by(AlertRow.raised_at.desc(), AlertRow.id.desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(AlertRow.state == state)
    return [alert_dict(row) for row in session.execute(stmt).scalars()]


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
        "coverage": row.coverage(),
        "findings": row.findings,
        "changes": row.changes,
        "errors": row.errors,
        "warnings": row.warnings,
        "timings": row.timings,
        "failure": row.failure,
        "policy_version": row.policy_version,
    }


# -- history and progress -------------------------------------------------------------------------


def get_scan(session: Session, scan_id: str) -> ScanRow | None:
    return session.get(ScanRow, scan_id)


def recent_scans(session: Session, *, limit: int, before: datetime | None = None) -> list[ScanRow]:
    """Scans, newest request first (those requested before `before` when given)."""
    stmt = select(ScanRow).order_by(ScanRow.requested_at.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(ScanRow.requested_at < before)
    return list(session.execute(stmt).scalars())


def active_scans(session: Session) -> int:
    """Scans queued or running."""
    unfinished = (ScanStatus.QUEUED.value, ScanStatus.RUNNING.value)
    stmt = select(func.count()).select_from(ScanRow).where(ScanRow.status.in_(unfinished))
    return int(session.scalar(stmt) or 0)


def newest_finished(session: Session) -> tuple[str, datetime | None] | None:
    """The id and finishing time of the scan that finished last (any kind, any scope)."""
    found = session.execute(
        select(ScanRow.scan_id, ScanRow.finished_at)
        .where(ScanRow.status.in_(FINISHED))
        .order_by(ScanRow.finished_at.desc())
        .limit(1)
    ).first()
    return (found[0], found[1]) if found else None


def scan_progress(row: ScanRow) -> dict[str, Any]:
    """A scan as the console's progress page and script read it: the API's summary (times as text),
    whether it finished, and the first errors, warnings and unreadable records."""
    summary = scan_summary(row)
    for name in ("requested_at", "started_at", "finished_at"):
        summary[name] = iso(summary[name])
    summary["finished"] = row.status in FINISHED
    summary["error_count"] = len(row.errors)
    summary["errors"] = row.errors[:20]
    summary["warning_count"] = len(row.warnings or [])
    summary["warnings"] = (row.warnings or [])[:20]
    summary["unreadable"] = [e for e in row.errors if "sent to review" in str(e.get("error"))][:20]
    return summary


# -- the last fleet scan as the overview shows it -------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastScan:
    scan_id: str
    status: str
    kind: str
    finished_at: datetime | None
    coverage_rate: float | None
    tenants_total: int
    tenants_scanned: int
    errors: int
    tenant_outcome: str | None = None  # a tenant's view: scanned | stale | failed in that scan


def last_scan(session: Session, *, tenant_uuid: str | None) -> LastScan | None:
    """The last fleet full scan: its figures for the fleet (None), or one tenant's part of it."""
    row = last_fleet_scan(session)
    if row is None:
        return None
    if tenant_uuid is None:
        return LastScan(
            row.scan_id,
            row.status,
            row.kind,
            row.finished_at,
            row.coverage_rate,
            row.tenants_total,
            row.tenants_scanned,
            len(row.errors),
        )
    coverage = tenant_coverage(session, row, tenant_uuid)
    outcome = tenant_outcome(row, tenant_uuid)
    return LastScan(
        row.scan_id,
        row.status,
        row.kind,
        row.finished_at,
        coverage["rate"],
        coverage["tenants_total"],
        coverage["tenants_scanned"],
        sum(1 for e in row.errors if e.get("tenant_uuid") == tenant_uuid),
        outcome.value if outcome is not None else None,
    )

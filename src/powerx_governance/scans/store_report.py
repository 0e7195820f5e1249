"""The scan report (DESIGN §4) rebuilt from the store for a scan the service ran."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.queries import recommendation_dict
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.queries import tenant_coverage
from powerx_governance.scans.report import REPORT_SCHEMA, manifest_age_seconds
from powerx_governance.scans.tables import ScanRow
from powerx_governance.times import iso

_DROP = ("id", "revision", "state", "updated_at", "resolved_at", "scan_id")  # first_seen_at stays: §5.8


def stored_report(session: Session, scan: ScanRow, *, tenant_uuid: str | None) -> dict[str, Any]:
    """Coverage of `scan` plus the open findings of the tenants it covered; scoped to one tenant,
    both are that tenant's (its part of the scan: scanned, stale or failed), never the fleet's."""
    stmt = (
        select(RecommendationRow, VerdictRow.document)
        .join(VerdictRow)
        .where(RecommendationRow.state != RecommendationState.RESOLVED.value)
        .order_by(RecommendationRow.priority.desc(), RecommendationRow.id)
    )
    if tenant_uuid is not None:
        stmt = stmt.where(RecommendationRow.tenant_uuid == tenant_uuid)
    if scan.tenant_filter:
        stmt = stmt.where(RecommendationRow.tenant_uuid.in_(scan.tenant_filter))
    findings = []
    generated_at = scan.finished_at or scan.requested_at
    for row, doc in session.execute(stmt):
        finding = recommendation_dict(row, doc)
        findings.append(
            {k: v for k, v in finding.items() if k not in _DROP}
            | {"recommendation_id": row.id, "state": row.state}
            | {"manifest_age_seconds": manifest_age_seconds(_as_of(finding), generated_at)}
        )
    errors = (
        scan.errors
        if tenant_uuid is None
        else [e for e in scan.errors if e.get("tenant_uuid") == tenant_uuid]
    )
    return {
        "schema": REPORT_SCHEMA,
        "scan_id": scan.scan_id,
        "generated_at": iso(generated_at),
        "policy_version": scan.policy_version,
        "status": scan.status,
        "coverage": _coverage(scan) if tenant_uuid is None else tenant_coverage(session, scan, tenant_uuid),
        "errors": errors,
        "findings": findings,
    }


def _coverage(scan: ScanRow) -> dict[str, Any]:
    return {**scan.coverage(), "rate": scan.coverage_rate if scan.coverage_rate is not None else 0.0}


def _as_of(finding: dict[str, Any]) -> datetime | None:
    as_of = finding.get("manifest_as_of")
    return datetime.fromisoformat(as_of) if finding.get("manifest_stale") and as_of else None

"""The scan's audit record: one `scan.completed` / `scan.failed` event per scan.

Written in the transaction that records the scan's outcome, under the event id `scan:<scan_id>`:
a job that runs again finds the scan finished and writes nothing, and the audit log itself
refuses a second event with that id.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.scans.model import ScanStatus
from powerx_governance.scans.store_report import stored_report
from powerx_governance.scans.tables import ScanRow

_OUTCOME: Final = {
    ScanStatus.SUCCEEDED.value: ("success", "info"),
    ScanStatus.INCOMPLETE.value: ("partial", "warning"),
    ScanStatus.FAILED.value: ("failure", "error"),
}
_TENANTS_LISTED: Final = 100


def report_sha256(report: dict[str, Any]) -> str:
    """sha256 of a report's canonical JSON: keys sorted, no spaces, UTF-8 (json.dumps with
    sort_keys=True, separators=(",", ":"), ensure_ascii=False), as GET …/scans/{id}/report serves it."""
    text = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def scan_event_id(scan_id: str) -> str:
    return f"scan:{scan_id}"


def record_scan(session: Session, row: ScanRow, now: datetime) -> None:
    """Audit the finished scan `row` (in the caller's transaction)."""
    report = stored_report(session, row, tenant_uuid=None) if row.status != ScanStatus.FAILED.value else None
    record(session, scan_event(row, report), now)


def scan_event(row: ScanRow, report: dict[str, Any] | None) -> AuditEvent:
    """The event for a finished scan; `report` is its stored report (None: it failed, evaluated nothing)."""
    outcome, severity = _OUTCOME[row.status]
    findings = report["findings"] if report is not None else []
    return AuditEvent(
        source="governance",
        operation="scan.failed" if row.status == ScanStatus.FAILED.value else "scan.completed",
        resource_type="scan",
        resource_id=row.scan_id,
        actor=row.requested_by or "system",
        outcome=outcome,
        severity=severity,
        correlation_id=row.retry_of,
        occurred_at=row.finished_at,
        event_id=scan_event_id(row.scan_id),
        meta={
            **_scan_facts(row),
            "by_risk": dict(Counter(str(f.get("risk_level")) for f in findings)),
            "by_action": dict(Counter(str(f.get("action")) for f in findings)),
            "report_sha256": report_sha256(report) if report is not None else None,
        },
    )


def _scan_facts(row: ScanRow) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "fleet": row.fleet,
        "trigger": row.trigger,
        "status": row.status,
        "attempt": row.attempt,
        "tenants": row.tenant_filter[:_TENANTS_LISTED],
        "policy_version": row.policy_version,
        "coverage": row.coverage(),
        "findings": row.findings,
        "changes": row.changes,
        "errors": len(row.errors),
        "warnings": len(row.warnings),
        "failure": row.failure,
    }

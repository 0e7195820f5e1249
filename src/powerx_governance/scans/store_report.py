"""The scan report (DESIGN §4) rebuilt from the store for a scan the service ran.

Findings are read as plain columns (no ORM objects), streamed in priority order, and each shared
verdict document is decoded once. The scan's audit record digests the report from the sums each
tenant keeps (recommendations/digests.py), so finishing a scan never re-reads the fleet's findings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import Select, String, Text, cast, select, type_coerce
from sqlalchemy.orm import Session

from powerx_governance.recommendations.digests import (
    FleetFindings,
    msgspec_exact,
    report_finding,
    report_sha256,
)
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.store import (
    IsoTimes,
    decode_facts,
    kept_fleet_findings,
    non_open_states,
    tenant_findings_from_rows,
)
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.queries import tenant_coverage
from powerx_governance.scans.report import REPORT_SCHEMA, manifest_age_seconds
from powerx_governance.scans.tables import ScanRow
from powerx_governance.times import iso

_READ_BATCH: Final = 5000
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def stored_report(session: Session, scan: ScanRow, *, tenant_uuid: str | None) -> dict[str, Any]:
    """Coverage of `scan` plus the open findings of the tenants it covered; scoped to one tenant,
    both are that tenant's (its part of the scan: scanned, stale or failed), never the fleet's."""
    report = _report_head(session, scan, tenant_uuid)
    report["findings"] = list(report_findings(session, scan, tenant_uuid=tenant_uuid))
    return report


@dataclass
class ReportDigest:
    """What the scan's audit record says about its stored report, computed in one streamed pass."""

    sha256: str
    by_risk: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)


def stored_report_digest(session: Session, scan: ScanRow, *, from_scratch: bool = False) -> ReportDigest:
    """`report_sha256` of the fleet report `stored_report(…, tenant_uuid=None)` (docs/formats.md),
    and its counts by risk and action, from the sums each tenant keeps (or, `from_scratch`, from
    the stored findings themselves: what a check of the kept sums compares them with)."""
    tenants = list(scan.tenant_filter) or None
    if from_scratch:
        fleet = FleetFindings()
        for tenant in tenant_findings_from_rows(session, tenants).values():
            fleet.add(tenant)
    else:
        fleet = kept_fleet_findings(session, tenants)
    head = _report_head(session, scan, None)
    return ReportDigest(
        report_sha256(head, fleet, non_open_states(session, tenants)),
        {risk: n for risk, n in fleet.by_risk.items() if n},
        {action: n for action, n in fleet.by_action.items() if n},
    )


def report_findings(session: Session, scan: ScanRow, *, tenant_uuid: str | None) -> Iterator[dict[str, Any]]:
    """The report's findings, highest priority first, streamed."""
    for finding, _ in _findings(session, scan, tenant_uuid):
        yield finding


def _report_head(session: Session, scan: ScanRow, tenant_uuid: str | None) -> dict[str, Any]:
    errors = (
        scan.errors
        if tenant_uuid is None
        else [e for e in scan.errors if e.get("tenant_uuid") == tenant_uuid]
    )
    return {
        "schema": REPORT_SCHEMA,
        "scan_id": scan.scan_id,
        "generated_at": iso(scan.finished_at or scan.requested_at),
        "policy_version": scan.policy_version,
        "status": scan.status,
        "coverage": _coverage(scan) if tenant_uuid is None else tenant_coverage(session, scan, tenant_uuid),
        "errors": errors,
    }


_COLUMNS: Final = (
    RecommendationRow.id,
    RecommendationRow.tenant_uuid,
    RecommendationRow.plugin_id,
    RecommendationRow.verdict,
    type_coerce(RecommendationRow.sla_deadline, String),  # as stored: see _IsoTimes
    cast(RecommendationRow.tenant_facts, Text),
    RecommendationRow.state,
    type_coerce(RecommendationRow.first_seen_at, String),
    RecommendationRow.policy_version,
)


def _open(stmt: _Query, scan: ScanRow, tenant_uuid: str | None) -> _Query:
    stmt = stmt.where(RecommendationRow.state != RecommendationState.RESOLVED.value)
    if tenant_uuid is not None:
        stmt = stmt.where(RecommendationRow.tenant_uuid == tenant_uuid)
    if scan.tenant_filter:
        stmt = stmt.where(RecommendationRow.tenant_uuid.in_(scan.tenant_filter))
    return stmt


def _verdicts(
    session: Session, scan: ScanRow, tenant_uuid: str | None
) -> dict[str, tuple[dict[str, Any], bool]]:
    """fingerprint → (document, whether msgspec writes it exactly as `json` does) for the open findings."""
    used = _open(select(RecommendationRow.verdict).distinct(), scan, tenant_uuid).scalar_subquery()
    stmt = select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(used))
    return {fp: (doc, msgspec_exact(doc)) for fp, doc in session.connection().execute(stmt)}


def _findings(
    session: Session, scan: ScanRow, tenant_uuid: str | None
) -> Iterator[tuple[dict[str, Any], bool]]:
    """(finding, whether msgspec encodes it exactly as `json`), in report order."""
    verdicts = _verdicts(session, scan, tenant_uuid)
    generated_at = scan.finished_at or scan.requested_at
    stmt = _open(select(*_COLUMNS), scan, tenant_uuid).order_by(
        RecommendationRow.priority.desc(), RecommendationRow.id
    )
    rows = session.connection().execute(stmt.execution_options(yield_per=_READ_BATCH))
    iso_time = IsoTimes(session)
    for rec_id, tenant, plugin, verdict, sla, facts_text, state, first_seen, policy_version in rows:
        doc, exact = verdicts[verdict]
        facts, facts_exact = decode_facts(facts_text)
        finding = report_finding(
            tenant,
            plugin,
            doc,
            facts,
            sla_deadline=iso_time(sla),
            first_seen_at=iso_time(first_seen),
            policy_version=policy_version,
            recommendation_id=rec_id,
        )
        finding["state"] = state
        finding["manifest_age_seconds"] = manifest_age_seconds(_as_of(finding), generated_at)
        yield finding, exact and facts_exact


def _coverage(scan: ScanRow) -> dict[str, Any]:
    return {**scan.coverage(), "rate": scan.coverage_rate if scan.coverage_rate is not None else 0.0}


def _as_of(finding: dict[str, Any]) -> datetime | None:
    as_of = finding.get("manifest_as_of")
    return datetime.fromisoformat(as_of) if finding.get("manifest_stale") and as_of else None

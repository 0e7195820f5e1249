"""The scan report, `powerx.scan-report/v1` (DESIGN §4), as plain data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from powerx_governance.errors import InputProblem
from powerx_governance.policy.verdict import AdvisoryFinding, Verdict
from powerx_governance.scans.scanner import Finding, ScanResult

REPORT_SCHEMA: Final = "powerx.scan-report/v1"


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, the form every PowerX service writes."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _advisory(a: AdvisoryFinding) -> dict[str, Any]:
    return {
        "id": a.id,
        "cvss": a.cvss,
        "severity": a.severity.value,
        "fixed_in": a.fixed_in,
        "aliases": list(a.aliases),
        "summary": a.summary,
        "vector": a.vector,
        "exploited": a.exploited,
        "unavoidable": a.unavoidable,
        "in_target": a.in_target,
    }


def verdict_document(v: Verdict) -> dict[str, Any]:
    """The tenant-independent part of a finding, built once per distinct verdict."""
    return {
        "current_version": v.current_version,
        "target_version": v.target_version,
        "latest_version": v.latest_version,
        "update_type": v.update_type.value,
        "risk_level": v.risk_level.value,
        "priority": v.priority,
        "action": v.action.value,
        "critical_patch": v.critical_patch,
        "partial": v.partial,
        "sla_deadline": iso(v.sla_deadline),
        "advisories": [_advisory(a) for a in v.advisories],
        "changelog": [f"{n.version}: {n.changelog.strip()}" for n in v.release_notes if n.changelog],
        "release_notes": [{"version": n.version, "url": n.url} for n in v.release_notes if n.url],
        "reasons": list(v.reasons),
        "rule_ids": list(v.rule_ids),
        "policy_mode": v.policy_mode.value,
        "enforcement": v.enforcement.value,
        "notification": v.notification,
        "lifecycle": v.lifecycle.value,
        "replacement": v.replacement,
        "exempted": None
        if v.exempted is None
        else {
            "id": v.exempted.id,
            "reason": v.exempted.reason,
            "approver": v.exempted.approver,
            "expires_at": iso(v.exempted.expires_at),
        },
    }


def manifest_age_seconds(as_of: datetime | None, at: datetime) -> int | None:
    """How old a stale finding's last good manifest was at `at` (None for a fresh manifest)."""
    return None if as_of is None else max(0, round((at - as_of).total_seconds()))


def finding_dict(f: Finding, part: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "tenant_uuid": f.tenant.tenant_uuid,
        "tenant_key": f.tenant.tenant_key,
        "plugin_id": f.verdict.plugin_id,
        **part,
        "core_version": f.tenant.core_version,
        "channel": f.installation.channel.value,
        "compatibility": list(f.verdict.compatibility),
        "co_upgrades": list(f.dependency_notes),
        "manifest_stale": f.stale_since is not None,
        "manifest_as_of": iso(f.stale_since),
        "manifest_age_seconds": manifest_age_seconds(f.stale_since, at),
    }


def error_dict(problem: InputProblem) -> dict[str, str | None]:
    return problem.as_report_error()


def build_report(result: ScanResult, *, scan_id: str | None = None) -> dict[str, Any]:
    parts: dict[int, dict[str, Any]] = {}
    findings = []
    for f in result.findings:
        part = parts.get(id(f.verdict))
        if part is None:
            part = parts[id(f.verdict)] = verdict_document(f.verdict)
        findings.append(finding_dict(f, part, result.generated_at))
    return {
        "schema": REPORT_SCHEMA,
        "scan_id": scan_id or str(uuid.uuid4()),
        "generated_at": iso(result.generated_at),
        "coverage": {
            "tenants_total": result.tenants_total,
            "tenants_scanned": result.tenants_scanned,
            "tenants_stale": result.tenants_stale,
            "tenants_failed": result.tenants_total - result.tenants_scanned - result.tenants_stale,
            "installations": result.installations,
            "rate": round(result.coverage_rate, 6),
        },
        "errors": [error_dict(p) for p in result.errors],
        "warnings": [error_dict(p) for p in result.warnings],
        "findings": findings,
    }

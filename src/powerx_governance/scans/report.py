"""The scan report, `powerx.scan-report/v1` (DESIGN §4), as plain data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from powerx_governance.errors import InputProblem
from powerx_governance.findings import Finding, SharedFinding, SharedVerdict
from powerx_governance.scans.scanner import ScanResult, TenantScan
from powerx_governance.times import iso

REPORT_SCHEMA: Final = "powerx.scan-report/v1"


def manifest_age_seconds(as_of: datetime | None, at: datetime) -> int | None:
    """How old a stale finding's last good manifest was at `at` (None for a fresh manifest)."""
    return None if as_of is None else max(0, round((at - as_of).total_seconds()))


def tenant_fields(f: Finding, at: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a finding adds to its verdict's document: (before it, after it), in report order."""
    head = {"tenant_uuid": f.tenant.tenant_uuid, "tenant_key": f.tenant.tenant_key}
    tail = {
        "core_version": f.tenant.core_version,
        "channel": f.installation.channel.value,
        "compatibility": list(f.verdict.compatibility),
        "co_upgrades": list(f.dependency_notes),
        "manifest_stale": f.stale_since is not None,
        "manifest_as_of": iso(f.stale_since),
        "manifest_age_seconds": manifest_age_seconds(f.stale_since, at),
    }
    return head, tail


def finding_dict(f: Finding, part: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The DESIGN §4 finding: tenant, then the verdict's document (`part`, plugin id first), then the rest."""
    head, tail = tenant_fields(f, at)
    return {**head, **part, **tail}


def error_dict(problem: InputProblem) -> dict[str, str | None]:
    return problem.as_report_error()


class TenantReport:
    """A scanned tenant as a report writer takes it (`TenantFindings`): its findings' shared parts,
    and the tenant's own members around them (small: a split scan keeps a part's tenants a while)."""

    __slots__ = ("_at", "_findings", "_stale_since", "tenant_key", "tenant_uuid")

    def __init__(self, scan: TenantScan, at: datetime) -> None:
        self.tenant_uuid: str = scan.tenant.tenant_uuid
        self.tenant_key: str | None = scan.tenant.tenant_key
        self._findings, self._stale_since, self._at = scan.findings, scan.stale_since, at

    @property
    def parts(self) -> list[SharedFinding]:
        return self._findings

    def head(self) -> dict[str, Any]:
        return {"tenant_uuid": self.tenant_uuid, "tenant_key": self.tenant_key}

    def tail(self) -> dict[str, Any]:
        stale_since = self._stale_since
        return {
            "manifest_stale": stale_since is not None,
            "manifest_as_of": iso(stale_since),
            "manifest_age_seconds": manifest_age_seconds(stale_since, self._at),
        }


def report_header(result: ScanResult, scan_id: str | None = None) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "scan_id": scan_id or str(uuid.uuid4()),
        "generated_at": iso(result.generated_at),
    }


def report_summary(result: ScanResult) -> dict[str, Any]:
    """Coverage, errors and warnings of a finished scan."""
    return {
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
    }


def build_report(result: ScanResult, *, scan_id: str | None = None) -> dict[str, Any]:
    """The whole report as one dict (for reports of a bounded size: the service's, tests')."""
    at = result.generated_at
    parts: dict[tuple[int, datetime], dict[str, Any]] = {}
    findings = []
    for f in result.findings:
        first_seen = f.first_seen or at
        part = parts.get((id(f.verdict), first_seen))
        if part is None:
            part = parts[(id(f.verdict), first_seen)] = SharedVerdict(f.verdict, first_seen).document()
        findings.append(finding_dict(f, part, at))
    return {**report_header(result, scan_id), **report_summary(result), "findings": findings}

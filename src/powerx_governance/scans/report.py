"""The scan report, `powerx.scan-report/v1` (DESIGN §4), as plain data."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from powerx_governance.domain import Channel
from powerx_governance.errors import InputProblem
from powerx_governance.findings import Finding, verdict_document
from powerx_governance.policy.verdict import Verdict
from powerx_governance.reports.stream import encode
from powerx_governance.scans.scanner import ScanResult
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


@dataclass(frozen=True, slots=True)
class VerdictPart:
    """A verdict's document (plugin id first) and its JSON members, built once per distinct verdict."""

    verdict: Verdict  # kept so that the id keying the cache is never reused
    document: dict[str, Any]
    members: bytes  # the document's JSON without its braces
    compatibility: bytes

    @classmethod
    def of(cls, verdict: Verdict, first_seen: datetime) -> VerdictPart:
        document = {
            "plugin_id": verdict.plugin_id,
            **verdict_document(verdict, first_seen),
            "first_seen_at": iso(first_seen),
        }
        return cls(verdict, document, encode(document)[1:-1], encode(verdict.compatibility))


@dataclass(frozen=True, slots=True)
class TenantBytes:
    """A tenant's JSON members around each of its findings, encoded once per tenant."""

    head: bytes  # "tenant_uuid":…,"tenant_key":…
    core: bytes  # "core_version":…
    manifest: bytes  # "manifest_stale":…,"manifest_as_of":…,"manifest_age_seconds":…

    @classmethod
    def of(cls, f: Finding, at: datetime) -> TenantBytes:
        head, tail = tenant_fields(f, at)
        manifest = {k: tail[k] for k in ("manifest_stale", "manifest_as_of", "manifest_age_seconds")}
        return cls(
            encode(head)[1:-1], encode({"core_version": tail["core_version"]})[1:-1], encode(manifest)[1:-1]
        )


_CHANNELS: Final = {channel: encode(channel.value) for channel in Channel}


class FindingItem:
    """A scan finding on its way into a report (`ReportItem`): tenant fields are added to the
    verdict's shared part only when a writer asks, and JSON is spliced from pre-encoded parts."""

    __slots__ = ("_at", "_finding", "_part", "_tenant")

    def __init__(self, finding: Finding, part: VerdictPart, tenant: TenantBytes, at: datetime) -> None:
        self._finding, self._part, self._tenant, self._at = finding, part, tenant, at

    @property
    def priority(self) -> int:
        return self._finding.verdict.priority

    @property
    def risk_level(self) -> str:
        return self._finding.verdict.risk_level.value

    @property
    def action(self) -> str:
        return self._finding.verdict.action.value

    @property
    def shared(self) -> dict[str, Any]:
        return self._part.document

    @property
    def tenant_uuid(self) -> str:
        return self._finding.tenant.tenant_uuid

    @property
    def tenant_key(self) -> str | None:
        return self._finding.tenant.tenant_key

    def document(self) -> dict[str, Any]:
        return finding_dict(self._finding, self._part.document, self._at)

    def json(self) -> bytes:
        """The document's JSON, member for member in its order, spliced from parts encoded once."""
        f, t = self._finding, self._tenant
        notes = encode(f.dependency_notes) if f.dependency_notes else b"[]"
        return b'{%s,%s,%s,"channel":%s,"compatibility":%s,"co_upgrades":%s,%s}' % (
            t.head,
            self._part.members,
            t.core,
            _CHANNELS[f.installation.channel],
            self._part.compatibility,
            notes,
            t.manifest,
        )


class FindingDocuments:
    """Scan findings as report items; each distinct verdict's part is built and encoded once,
    each tenant's fields once per batch."""

    def __init__(self, at: datetime) -> None:
        self._at = at
        self._parts: dict[tuple[int, datetime], VerdictPart] = {}

    def __call__(self, findings: Iterable[Finding]) -> list[FindingItem]:
        items: list[FindingItem] = []
        tenant: tuple[object, TenantBytes] | None = None
        for f in findings:
            first_seen = f.first_seen or self._at
            part = self._parts.get((id(f.verdict), first_seen))
            if part is None:
                part = self._parts[(id(f.verdict), first_seen)] = VerdictPart.of(f.verdict, first_seen)
            if tenant is None or tenant[0] is not f.tenant:
                tenant = (f.tenant, TenantBytes.of(f, self._at))
            items.append(FindingItem(f, part, tenant[1], self._at))
        return items


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
    findings = [item.document() for item in FindingDocuments(result.generated_at)(result.findings)]
    return {**report_header(result, scan_id), **report_summary(result), "findings": findings}

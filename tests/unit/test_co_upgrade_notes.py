"""Co-upgrade notes of a scan: a finding whose target release needs another plugin says what the
tenant must install or upgrade with it, from what that tenant runs; tenants in the same situation
share one finding."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from powerx_governance.inventory.loader import manifest_from_data
from powerx_governance.scans.scanner import ScanResult, scan_tenants
from powerx_governance.scans.service import FileScanRequest, prepare
from powerx_governance.versioning.ranges import parse_constraint
from powerx_governance.versioning.semver import parse_version

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 30, tzinfo=UTC)
REQUEST = FileScanRequest(
    catalog=ROOT / "examples" / "catalog.yaml",
    manifests=ROOT / "examples" / "manifests",
    now=NOW,
    rules=ROOT / "config" / "version" / "governance_rules.yaml",
    compat=ROOT / "config" / "version" / "compat_matrix.yaml",
)
CRM, BASE = "com.powerx.plugins.crm", "com.powerx.plugins.base"


def _tenant(n: int, base: str | None) -> Any:
    plugins = [{"plugin_id": CRM, "version": "2.0.0", "channel": "stable"}]
    plugins += [{"plugin_id": BASE, "version": base, "channel": "stable"}] if base else []
    return manifest_from_data(
        {
            "schema": "powerx.manifest/v1",
            "tenant_uuid": f"00000000-0000-4000-8000-{n:012d}",
            "core_version": "1.24.3",
            "plugins": plugins,
        },
        f"tenant-{n}",
    )


def _crm_findings(bases: list[str | None]) -> list[Any]:
    engine, _, _ = prepare(REQUEST)
    scanned = scan_tenants(engine, [_tenant(n, b) for n, b in enumerate(bases)], ScanResult(generated_at=NOW))
    found = []
    for tenant, base in zip(scanned, bases, strict=True):
        plugins = [f.outcome.verdict.plugin_id for f in tenant.findings]
        assert base != "1.0.0" or BASE in plugins  # the old base plugin keeps its own finding
        found.append(next(f for f in tenant.findings if f.outcome.verdict.plugin_id == CRM))
    return found


def test_notes_follow_what_each_tenant_runs() -> None:
    missing, too_old, fitting, missing_again, too_old_again = _crm_findings(
        [None, "1.0.0", "1.6.1", None, "1.0.0"]
    )
    deps = missing.outcome.verdict.target_dependencies
    assert deps  # the example CRM target needs the base plugin
    assert {dep for dep, _ in deps} == {BASE}
    (_, wanted) = deps[0]
    assert not parse_constraint(wanted).admits(parse_version("1.0.0"))
    assert parse_constraint(wanted).admits(parse_version("1.6.1"))
    assert missing.dependency_notes == (f"needs {BASE} {wanted} installed",)
    assert too_old.dependency_notes == (f"needs a co-upgrade of {BASE} from 1.0.0 to {wanted}",)
    assert fitting.dependency_notes == ()
    assert missing_again is missing  # one finding per distinct situation, however many tenants
    assert too_old_again is too_old
    assert fitting is not missing
    assert fitting.outcome is missing.outcome  # the same verdict under each

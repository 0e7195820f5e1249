"""The shipped example data: it loads cleanly, and the scan shows what a new user should see."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from powerx_governance.catalog.loader import Loaded, load_catalog, load_matrix
from powerx_governance.domain import Action, Severity
from powerx_governance.findings import Finding
from powerx_governance.inventory.loader import load_manifests
from powerx_governance.policy.loader import load_rules
from powerx_governance.scans.scanner import ScanResult
from powerx_governance.scans.service import FileScanRequest, run_file_scan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CATALOG = EXAMPLES / "catalog.yaml"
MANIFESTS = EXAMPLES / "manifests"
RULES = ROOT / "config" / "version" / "governance_rules.yaml"
MATRIX = ROOT / "config" / "version" / "compat_matrix.yaml"
NOW = datetime(2026, 11, 30, tzinfo=UTC)
BROKEN = "zz-broken-tenant.yaml"


@pytest.fixture(scope="module")
def scan() -> ScanResult:
    request = FileScanRequest(catalog=CATALOG, manifests=MANIFESTS, now=NOW, rules=RULES, compat=MATRIX)
    return run_file_scan(request).result


def _finding(scan: ScanResult, tenant: str, plugin_id: str) -> Finding:
    found = [
        f for f in scan.findings if f.tenant.tenant_uuid == tenant and f.installation.plugin_id == plugin_id
    ]
    assert len(found) == 1, f"expected one finding for {tenant}/{plugin_id}, got {len(found)}"
    return found[0]


def test_catalog_loads_without_problems() -> None:
    loaded = Loaded()
    load_catalog(CATALOG, loaded)
    assert loaded.problems == []
    assert len(loaded.plugins) >= 30
    assert 18 <= len(loaded.advisories) <= 30
    assert all(p.plugin_id.startswith("com.powerx.plugins.") for p in loaded.plugins)
    assert all(5 <= len(p.releases) <= 15 for p in loaded.plugins)


def test_rules_and_matrix_load() -> None:
    rules = load_rules(RULES)
    assert {"critical-security", "finance-lts", "high-risk", "pilot-fast-track"} <= {
        r.id for r in rules.rules
    }
    assert [e.expires_at > NOW for e in rules.exemptions].count(True) >= 1
    assert [e.expires_at > NOW for e in rules.exemptions].count(False) >= 1
    loaded = Loaded()
    load_matrix(MATRIX, loaded)
    assert loaded.problems == []
    assert len(loaded.matrix) >= 8


def test_about_a_hundred_tenants_with_exactly_one_broken_manifest() -> None:
    results = list(load_manifests(MANIFESTS))
    assert 90 <= len(results) <= 110
    problems = [r.problem for r in results if r.problem is not None]
    assert len(problems) == 1
    assert problems[0].source.endswith(BROKEN)
    assert problems[0].field == "core_version"
    assert "1.24.x" in problems[0].error


def test_the_sbom_tenant_is_read_like_any_other() -> None:
    (result,) = load_manifests(MANIFESTS / "tenant-sbom-example.json")
    assert result.problem is None
    assert result.manifest is not None
    assert result.manifest.core_version == "1.25.1"
    assert len(result.manifest.plugins) >= 5


def test_scan_reports_only_the_broken_manifest(scan: ScanResult) -> None:
    assert [e.source for e in scan.errors] == [str(MANIFESTS / BROKEN)]
    assert scan.tenants_total - scan.tenants_scanned == 1
    assert scan.coverage_rate >= 0.99


def test_sandbox_crm_upgrades_to_the_lowest_clean_release(scan: ScanResult) -> None:
    finding = _finding(scan, "sandbox-tenant-a", "com.powerx.plugins.crm")
    verdict = finding.verdict
    assert finding.installation.version == verdict.current_version == "2.3.0"
    assert verdict.target_version == "2.4.0"
    assert verdict.action is Action.UPGRADE_NOW
    assert verdict.priority > 0
    notes = {note.version: note for note in verdict.release_notes}
    assert notes["2.4.0"].changelog
    assert notes["2.4.0"].url == "https://docs.powerx.example/plugins/crm/releases/2.4.0"


def test_scan_shows_every_action_and_risk_level(scan: ScanResult) -> None:
    actions = Counter(f.verdict.action for f in scan.findings)
    risks = Counter(f.verdict.risk_level for f in scan.findings)
    assert {Action.UPGRADE_NOW, Action.SCHEDULE, Action.REVIEW, Action.BLOCKED} <= set(actions)
    assert set(Severity) <= set(risks)
    assert any(f.verdict.partial for f in scan.findings)
    assert any(f.verdict.critical_patch for f in scan.findings)

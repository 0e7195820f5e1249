"""File-based scans: what `powerx version scan` runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from powerx_governance.catalog.loader import Loaded, load_catalog, load_matrix
from powerx_governance.domain import Severity
from powerx_governance.inventory.loader import load_manifests
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.index import CatalogIndex
from powerx_governance.policy.loader import load_rules
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.scans.scanner import ProgressHook, ScanResult, scan


@dataclass(frozen=True, slots=True)
class FileScanRequest:
    catalog: Path
    manifests: Path
    now: datetime
    rules: Path | None = None
    compat: Path | None = None
    tenants: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class FileScan:
    result: ScanResult
    rules: GovernanceRules


def run_file_scan(request: FileScanRequest, on_tenant: ProgressHook | None = None) -> FileScan:
    """Load everything, scan, and return the result; InputError when an input is unusable as a whole."""
    rules = load_rules(request.rules) if request.rules else DEFAULT_RULES
    loaded = Loaded()
    load_catalog(request.catalog, loaded)
    if request.compat is not None:
        load_matrix(request.compat, loaded)
    engine = PolicyEngine(CatalogIndex.build(loaded.catalog()), rules, request.now)
    result = scan(engine, load_manifests(request.manifests), tenants=request.tenants, on_tenant=on_tenant)
    result.add_catalog_problems(loaded.problems, loaded.warnings)
    return FileScan(result, rules)


def worst_risk(result: ScanResult) -> Severity:
    return max((f.verdict.risk_level for f in result.findings), key=lambda s: s.rank, default=Severity.NONE)

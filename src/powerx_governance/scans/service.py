"""File-based scans: what `powerx version scan` runs."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from powerx_governance.catalog.loader import Loaded, load_catalog, load_matrix
from powerx_governance.domain import Severity
from powerx_governance.inventory.loader import load_manifests, split_manifests
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.index import CatalogIndex
from powerx_governance.policy.loader import load_rules
from powerx_governance.policy.rules import DEFAULT_RULES, GovernanceRules
from powerx_governance.reports.stream import PartWriter, ReportWriter
from powerx_governance.scans.baseline import load_baseline
from powerx_governance.scans.parallel import PartScan, scan_in_parts, write_tenants
from powerx_governance.scans.report import report_header, report_summary
from powerx_governance.scans.scanner import ProgressHook, ScanResult, bulk_allocation, scan


@dataclass(frozen=True, slots=True)
class FileScanRequest:
    catalog: Path
    manifests: Path
    now: datetime
    rules: Path | None = None
    compat: Path | None = None
    tenants: frozenset[str] = frozenset()
    baseline: Path | None = None  # the previous report: when findings were first seen (DESIGN §5.8)


@dataclass(frozen=True, slots=True)
class FileScan:
    result: ScanResult
    rules: GovernanceRules


def prepare(request: FileScanRequest) -> tuple[PolicyEngine, GovernanceRules, Loaded]:
    """Rules, catalog and engine; InputError when an input is unusable as a whole."""
    rules = load_rules(request.rules) if request.rules else DEFAULT_RULES
    loaded = Loaded()
    load_catalog(request.catalog, loaded)
    if request.compat is not None:
        load_matrix(request.compat, loaded)
    return PolicyEngine(CatalogIndex.build(loaded.catalog()), rules, request.now), rules, loaded


def run_file_scan(request: FileScanRequest, on_tenant: ProgressHook | None = None) -> FileScan:
    """Load everything, scan, and return the result with every finding (bounded fleets, tests)."""
    engine, rules, loaded = prepare(request)
    result = scan(engine, load_manifests(request.manifests), tenants=request.tenants, on_tenant=on_tenant)
    result.add_catalog_problems(loaded.problems, loaded.warnings)
    return FileScan(result, rules)


@dataclass(frozen=True, slots=True)
class StreamedScan:
    result: ScanResult  # counts, errors and warnings; the findings went to the writer
    rules: GovernanceRules
    worst_risk: Severity


def stream_file_scan(
    request: FileScanRequest, writer: ReportWriter, on_tenant: ProgressHook | None = None, *, workers: int = 1
) -> StreamedScan:
    """What `powerx version scan` runs: findings written tenant by tenant, never held whole; with
    `workers` > 1, split across that many processes (scans/parallel.py), for the same report.

    The collector's youngest generation runs rarely from the catalog's intake until the scan's
    objects are released (they are all freed on return): a collection run once the threshold is
    back at its default, with the caches of a whole fleet alive, would traverse them all."""
    with bulk_allocation():
        return _stream_file_scan(request, writer, on_tenant, workers)


def _stream_file_scan(
    request: FileScanRequest, writer: ReportWriter, on_tenant: ProgressHook | None, workers: int
) -> StreamedScan:
    engine, rules, loaded = prepare(request)
    baseline = load_baseline(request.baseline) if request.baseline else None
    job = PartScan(engine, request.now, request.tenants, baseline.seen if baseline else None)
    parts = split_manifests(request.manifests, workers) if workers > 1 else []
    result = ScanResult(generated_at=request.now)
    result.add_catalog_problems(loaded.problems, loaded.warnings)
    writer.start(report_header(result))
    with ExitStack() as stack:
        if len(parts) > 1 and isinstance(writer, PartWriter):
            worst = scan_in_parts(job, parts, writer, result, stack, on_tenant)
        else:
            worst = write_tenants(job, load_manifests(request.manifests), writer, result, on_tenant)
        writer.finish(report_summary(result))
    return StreamedScan(result, rules, worst)


def known_tenants(manifests: Path, selectors: frozenset[str]) -> set[str]:
    """Which of `selectors` (tenant uuids or keys) some manifest under `manifests` names."""
    return {
        selector
        for item in load_manifests(manifests)
        for selector in (
            {item.manifest.tenant_uuid, item.manifest.tenant_key or ""}
            if item.manifest is not None
            else {item.problem.tenant_uuid or "" if item.problem else ""}
        )
        if selector in selectors
    }


def worst_risk(result: ScanResult) -> Severity:
    return max((f.verdict.risk_level for f in result.findings), key=lambda s: s.rank, default=Severity.NONE)

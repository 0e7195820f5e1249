"""Run a scan over manifests: validate, evaluate once per distinct combination, fan out."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from powerx_governance.errors import InputProblem
from powerx_governance.findings import Finding
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.verdict import Verdict
from powerx_governance.versioning.ranges import parse_constraint
from powerx_governance.versioning.semver import parse_version


@dataclass
class ScanResult:
    generated_at: datetime
    tenants_total: int = 0
    tenants_scanned: int = 0
    tenants_stale: int = 0  # evaluated from their last good manifest (not counted as scanned)
    installations: int = 0
    findings: list[Finding] = field(default_factory=list)
    errors: list[InputProblem] = field(default_factory=list)
    warnings: list[InputProblem] = field(default_factory=list)  # input repaired (DESIGN §7)
    security_data_problems: int = 0  # catalog/advisory parts that could not be read
    selected: set[str] = field(default_factory=set)  # the `tenants` selectors that matched a manifest
    distinct_combinations: int = 0

    @property
    def coverage_rate(self) -> float:
        return 1.0 if self.tenants_total == 0 else self.tenants_scanned / self.tenants_total

    def complete(self, min_coverage: float) -> bool:
        """The scan saw everything it must: coverage at the minimum and all security data read."""
        return self.coverage_rate >= min_coverage and self.security_data_problems == 0

    def add_catalog_problems(self, problems: list[InputProblem], warnings: list[InputProblem]) -> None:
        """Errors and repairs of the catalog intake, listed before the tenants' own."""
        self.errors[:0] = problems
        self.warnings[:0] = warnings
        self.security_data_problems += len(problems)


class _DependencyCheck:
    """Co-upgrades a target release needs, given what else the tenant runs (cached per situation)."""

    def __init__(self, known: Mapping[str, dict[str, str]] | None = None) -> None:
        self._cache: dict[tuple[tuple[tuple[str, str], ...], tuple[str | None, ...]], tuple[str, ...]] = {}
        self.known = known or {}  # full installed maps of tenants given as partial manifests

    def notes(self, verdict: Verdict, installed: dict[str, str]) -> tuple[str, ...]:
        deps = verdict.target_dependencies
        if not deps:
            return ()
        situation = tuple(installed.get(dep_id) for dep_id, _ in deps)
        key = (deps, situation)
        found = self._cache.get(key)
        if found is None:
            found = tuple(
                _dependency_note(dep_id, rng, have)
                for (dep_id, rng), have in zip(deps, situation, strict=True)
            )
            found = tuple(note for note in found if note)
            self._cache[key] = found
        return found


def _dependency_note(dep_id: str, constraint: str, installed: str | None) -> str:
    if installed is None:
        return f"needs {dep_id} {constraint} installed"
    if parse_constraint(constraint).admits(parse_version(installed)):
        return ""
    return f"needs a co-upgrade of {dep_id} from {installed} to {constraint}"


ProgressHook = Callable[[int], None]


@contextmanager
def bulk_allocation(young: int = 200_000) -> Iterator[None]:
    """Collect the youngest GC generation less often while a fleet is loaded and evaluated.

    A scan allocates millions of short-lived containers and no cycles; the default threshold
    (700) runs thousands of collections for nothing. The previous thresholds are restored.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], young), previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def scan(
    engine: PolicyEngine,
    manifests: Iterable[ManifestResult],
    *,
    tenants: frozenset[str] = frozenset(),
    on_tenant: ProgressHook | None = None,
    installed: Mapping[str, dict[str, str]] | None = None,
) -> ScanResult:
    """Evaluate every installation of every usable manifest (only `tenants` when given).

    `installed` gives, per tenant, what it runs when its manifest here holds only some
    installations (delta scans), so co-upgrade notes still see the whole tenant.
    """
    result = ScanResult(generated_at=engine.now)
    for found in scan_tenants(
        engine, manifests, result, tenants=tenants, on_tenant=on_tenant, installed=installed
    ):
        result.findings += found
    result.findings.sort(key=_by_priority)  # stable: equal priorities keep input (tenant) order
    return result


def scan_tenants(
    engine: PolicyEngine,
    manifests: Iterable[ManifestResult],
    result: ScanResult,
    *,
    tenants: frozenset[str] = frozenset(),
    on_tenant: ProgressHook | None = None,
    installed: Mapping[str, dict[str, str]] | None = None,
) -> Iterator[list[Finding]]:
    """Scan tenant by tenant, yielding each tenant's findings (highest priority first) as soon as
    they are known; `result` keeps the counts and errors, never the findings (streamed reports)."""
    deps = _DependencyCheck(installed)
    with bulk_allocation():
        yield from _scan_all(engine, manifests, tenants, on_tenant, result, deps)
    result.distinct_combinations = engine.distinct_combinations


def _scan_all(
    engine: PolicyEngine,
    manifests: Iterable[ManifestResult],
    tenants: frozenset[str],
    on_tenant: ProgressHook | None,
    result: ScanResult,
    deps: _DependencyCheck,
) -> Iterator[list[Finding]]:
    for item in manifests:
        if tenants:
            matched = _matches(item, tenants)
            if not matched:
                continue
            result.selected |= matched
        result.tenants_total += 1
        if on_tenant is not None:
            on_tenant(result.tenants_total)
        if item.problem is not None:
            result.errors.append(item.problem)
        if item.manifest is None:
            continue
        result.errors.extend(item.entry_problems)
        if item.stale_since is None:
            result.tenants_scanned += 1
        else:
            result.tenants_stale += 1
        found = _scan_tenant(engine, item.manifest, item.source, result, deps, item.stale_since)
        found.sort(key=_by_priority)
        yield found


def _by_priority(finding: Finding) -> int:
    return -finding.verdict.priority


def _matches(item: ManifestResult, tenants: frozenset[str]) -> set[str]:
    """The selectors (uuid or key) that name this manifest's tenant."""
    if item.manifest is not None:
        return {item.manifest.tenant_uuid, item.manifest.tenant_key or ""} & tenants
    failed = item.problem.tenant_uuid if item.problem is not None else None
    return {failed} & tenants if failed is not None else set()


def _scan_tenant(
    engine: PolicyEngine,
    tenant: TenantManifest,
    source: str,
    result: ScanResult,
    deps: _DependencyCheck,
    stale_since: datetime | None,
) -> list[Finding]:
    result.installations += len(tenant.plugins)
    ctx = engine.context(tenant)
    installed: dict[str, str] | None = None
    findings: list[Finding] = []
    for i, installation in enumerate(tenant.plugins):
        verdict = engine.evaluate(ctx, installation)
        if verdict is None:
            result.errors.append(
                InputProblem(
                    source,
                    f"tenant {tenant.tenant_uuid}",
                    f"plugins[{i}].plugin_id",
                    f"{installation.plugin_id!r} is not in the catalog",
                    tenant.tenant_uuid,
                )
            )
        elif verdict.reportable:
            notes: tuple[str, ...] = ()
            if verdict.target_dependencies:
                installed = (
                    installed
                    or deps.known.get(tenant.tenant_uuid)
                    or {p.plugin_id: p.version for p in tenant.plugins}
                )
                notes = deps.notes(verdict, installed)
            findings.append(Finding(tenant, installation, verdict, notes, stale_since))
    return findings

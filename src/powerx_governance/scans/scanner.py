"""Run a scan over manifests: validate, evaluate once per distinct combination, fan out.

Per tenant context (core version, host, tenant-matched rules and exemptions), each distinct
installation record is evaluated once; every other installation equal to it costs one table
lookup. What an installation is told, but its tenant, is a `SharedFinding`, one object per
distinct set of facts, so reports render each of those once (DESIGN §8: the cost grows with
distinct combinations, not with tenants).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Final, Literal

from powerx_governance.domain import Channel
from powerx_governance.errors import InputProblem
from powerx_governance.findings import Finding, SharedFinding, SharedVerdict
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.engine import PolicyEngine, TenantContext
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
    findings_passed_on: int = 0  # findings persisted batch by batch (a first ingest), not kept here

    @property
    def finding_count(self) -> int:
        return len(self.findings) + self.findings_passed_on

    def add_batch(self, batch: ScanResult) -> None:
        """Count in a scan of the next batch of tenants (its findings are counted, not kept)."""
        self.tenants_total += batch.tenants_total
        self.tenants_scanned += batch.tenants_scanned
        self.tenants_stale += batch.tenants_stale
        self.installations += batch.installations
        self.findings_passed_on += batch.finding_count
        self.errors += batch.errors
        self.warnings += batch.warnings
        self.security_data_problems += batch.security_data_problems
        self.selected |= batch.selected
        self.distinct_combinations = batch.distinct_combinations

    @property
    def coverage_rate(self) -> float:
        return 1.0 if self.tenants_total == 0 else self.tenants_scanned / self.tenants_total

    def complete(self, min_coverage: float) -> bool:
        """The scan saw everything it must: coverage at the minimum and all security data read."""
        return self.coverage_rate >= min_coverage and self.security_data_problems == 0

    def absorb(self, part: ScanResult) -> None:
        """Add the counts, errors and warnings of a later part of the same scan (split scans)."""
        self.tenants_total += part.tenants_total
        self.tenants_scanned += part.tenants_scanned
        self.tenants_stale += part.tenants_stale
        self.installations += part.installations
        self.findings += part.findings
        self.errors += part.errors
        self.warnings += part.warnings
        self.security_data_problems += part.security_data_problems
        self.selected |= part.selected
        self.distinct_combinations += part.distinct_combinations  # evaluated in each process

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


@dataclass(frozen=True, slots=True)
class TenantScan:
    """One scanned tenant: its findings, highest priority first (equal priorities in manifest order)."""

    tenant: TenantManifest
    findings: list[SharedFinding]
    stale_since: datetime | None = None  # evaluated from the tenant's last good manifest, read then


class _Unknown:
    """What the table says of an installation whose plugin is not in the catalog (falsy, like no finding)."""

    def __bool__(self) -> Literal[False]:
        return False


_UNKNOWN: Final = _Unknown()
_PRIORITY: Final = attrgetter("priority")
Told = SharedFinding | _Unknown | None  # None: up to date and clean, no finding


Facts = tuple[str, str, Channel]  # (plugin id, installed version, channel): all evaluation reads


class _Table(dict[Facts, Told]):
    """What each installation of one tenant context is told, by its facts, evaluated on first sight.

    Records that differ only in what evaluation ignores (state, auto-update, pinned) share the
    answer for their (plugin, version, channel). Keyed by those facts as a tuple: a tuple of
    strings hashes and compares faster than the whole record, and a record differing only in what
    evaluation ignores is a hit, not a miss.
    """

    def __init__(self, evaluation: _Evaluation, ctx: TenantContext) -> None:
        super().__init__()
        self._evaluation, self._ctx = evaluation, ctx

    def __missing__(self, facts: Facts) -> Told:
        plugin_id, version, channel = facts
        installation = Installation(plugin_id=plugin_id, version=version, channel=channel)
        told = self[facts] = self._evaluation.told(self._ctx, installation)
        return told


class _Evaluation:
    """A scan's caches: a table per tenant context, and one shared finding per distinct set of facts."""

    def __init__(self, engine: PolicyEngine, installed: Mapping[str, dict[str, str]] | None) -> None:
        self.engine = engine
        self.deps = _DependencyCheck(installed)
        self._tables: dict[int, _Table] = {}
        self._outcomes: dict[tuple[int, datetime], SharedVerdict] = {}
        self._shared: dict[tuple[int, Channel, str, tuple[str, ...]], SharedFinding] = {}
        self._co_upgrading: set[SharedFinding] = set()  # those whose target release has dependencies

    def told(self, ctx: TenantContext, installation: Installation) -> Told:
        verdict = self.engine.evaluate(ctx, installation)
        if verdict is None:
            return _UNKNOWN
        if not verdict.reportable:
            return None
        return self.shared(
            self.outcome(verdict, self.engine.now), installation.channel, ctx.tenant.core_version, ()
        )

    def outcome(self, verdict: Verdict, first_seen: datetime) -> SharedVerdict:
        key = (id(verdict), first_seen)  # verdicts live in the engine's cache: ids are never reused
        found = self._outcomes.get(key)
        if found is None:
            found = self._outcomes[key] = SharedVerdict(verdict, first_seen)
        return found

    def shared(
        self, outcome: SharedVerdict, channel: Channel, core: str, notes: tuple[str, ...]
    ) -> SharedFinding:
        key = (id(outcome), channel, core, notes)
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = SharedFinding(outcome, channel, core, notes, outcome.verdict.priority)
            if outcome.verdict.target_dependencies and not notes:
                self._co_upgrading.add(found)
        return found

    def tenant(self, tenant: TenantManifest, source: str, result: ScanResult) -> list[Told]:
        """What each installation of the tenant is told, in manifest order, co-upgrade notes included."""
        result.installations += len(tenant.plugins)
        ctx = self.engine.context(tenant)
        table = self._tables.get(ctx.id)
        if table is None:
            table = self._tables[ctx.id] = _Table(self, ctx)
        told = [table[p.plugin_id, p.version, p.channel] for p in tenant.plugins]
        if _UNKNOWN in told:
            result.errors += _unknown_plugins(tenant, source, told)
        if not self._co_upgrading.isdisjoint(told):
            installed = self.deps.known.get(tenant.tenant_uuid) or {
                p.plugin_id: p.version for p in tenant.plugins
            }
            co_upgrading = self._co_upgrading
            told = [
                self._with_notes(t, installed) if t in co_upgrading and isinstance(t, SharedFinding) else t
                for t in told
            ]
        return told

    def _with_notes(self, shared: SharedFinding, installed: dict[str, str]) -> SharedFinding:
        notes = self.deps.notes(shared.outcome.verdict, installed)
        return self.shared(shared.outcome, shared.channel, shared.core_version, notes) if notes else shared

    def first_seen(self, shared: SharedFinding, first_seen: datetime | None) -> SharedFinding:
        """The same finding with the SLA clock of an installation first seen at `first_seen` (None: now)."""
        if first_seen is None:
            return shared
        outcome = self.outcome(shared.outcome.verdict, first_seen)
        return self.shared(outcome, shared.channel, shared.core_version, shared.dependency_notes)


def _unknown_plugins(tenant: TenantManifest, source: str, told: list[Told]) -> list[InputProblem]:
    return [
        InputProblem(
            source,
            f"tenant {tenant.tenant_uuid}",
            f"plugins[{i}].plugin_id",
            f"{installation.plugin_id!r} is not in the catalog",
            tenant.tenant_uuid,
        )
        for i, (installation, t) in enumerate(zip(tenant.plugins, told, strict=True))
        if t is _UNKNOWN
    ]


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
    return _scan(_Evaluation(engine, installed), manifests, tenants, on_tenant)


def batch_scanner(engine: PolicyEngine) -> Callable[[Iterable[ManifestResult]], ScanResult]:
    """`scan` for batch after batch of one scan (a first ingest evaluates 1,000 tenants at a time):
    each batch its own result, the tenant contexts' tables and the shared findings of the batches
    before kept for the next, not made again for each batch (~2 s of a reference first ingest)."""
    evaluation = _Evaluation(engine, None)
    return lambda manifests: _scan(evaluation, manifests, frozenset(), None)


def _scan(
    evaluation: _Evaluation,
    manifests: Iterable[ManifestResult],
    tenants: frozenset[str],
    on_tenant: ProgressHook | None,
) -> ScanResult:
    engine = evaluation.engine
    result = ScanResult(generated_at=engine.now)
    with bulk_allocation():
        for item, tenant in _usable(manifests, tenants, on_tenant, result):
            told = evaluation.tenant(tenant, item.source, result)
            found = [
                Finding(tenant, installation, t.outcome.verdict, t.dependency_notes, item.stale_since)
                for installation, t in zip(tenant.plugins, told, strict=True)
                if t
            ]
            found.sort(key=_by_priority)
            result.findings += found
    result.distinct_combinations = engine.distinct_combinations
    result.findings.sort(key=_by_priority)  # stable: equal priorities keep input (tenant) order
    return result


FirstSeen = Callable[[TenantManifest, Verdict], datetime | None]


def scan_tenants(
    engine: PolicyEngine,
    manifests: Iterable[ManifestResult],
    result: ScanResult,
    *,
    tenants: frozenset[str] = frozenset(),
    on_tenant: ProgressHook | None = None,
    first_seen: FirstSeen | None = None,
) -> Iterator[TenantScan]:
    """Scan tenant by tenant, yielding each tenant's findings as soon as they are known; `result`
    keeps the counts and errors, never the findings (streamed reports). `first_seen` says when an
    installation was first seen with its verdict (None: at this scan)."""
    evaluation = _Evaluation(engine, None)
    with bulk_allocation():
        for item, tenant in _usable(manifests, tenants, on_tenant, result):
            found = [t for t in evaluation.tenant(tenant, item.source, result) if t]
            if first_seen is not None:
                found = [evaluation.first_seen(f, first_seen(tenant, f.outcome.verdict)) for f in found]
            found.sort(key=_PRIORITY, reverse=True)  # stable, reverse included
            yield TenantScan(tenant, found, item.stale_since)
    result.distinct_combinations = engine.distinct_combinations


def _usable(
    manifests: Iterable[ManifestResult],
    tenants: frozenset[str],
    on_tenant: ProgressHook | None,
    result: ScanResult,
) -> Iterator[tuple[ManifestResult, TenantManifest]]:
    """The manifests to evaluate, counting every selected tenant and recording why others cannot be."""
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
        yield item, item.manifest


def _by_priority(finding: Finding) -> int:
    return -finding.verdict.priority


def _matches(item: ManifestResult, tenants: frozenset[str]) -> set[str]:
    """The selectors (uuid or key) that name this manifest's tenant."""
    if item.manifest is not None:
        return {item.manifest.tenant_uuid, item.manifest.tenant_key or ""} & tenants
    failed = item.problem.tenant_uuid if item.problem is not None else None
    return {failed} & tenants if failed is not None else set()

"""A full scan: refresh the catalog, fetch manifests (falling back to the last good one), evaluate,
persist the findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from powerx_governance.catalog import pushes
from powerx_governance.catalog import store as catalog_store
from powerx_governance.catalog.loader import Loaded
from powerx_governance.db.session import transaction
from powerx_governance.durations import parse_duration
from powerx_governance.errors import InputProblem
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import persist_findings
from powerx_governance.scans import first_ingest
from powerx_governance.scans.runtime import Outcome, ScanRuntime, Timer, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import scan


def _refresh_catalog(runtime: ScanRuntime, now: datetime) -> Loaded:
    """Fetch the catalog and store it merged with the push source (pushed records stay; the ones the
    catalog source withdrew are retired); advisories stay as stored when the source's could not be read."""
    if runtime.catalog_source is None:
        return Loaded()
    loaded = runtime.catalog_source.catalog()
    catalog = loaded.catalog()
    keep = bool(catalog.advisory_source_problems)
    with transaction(runtime.factory) as session:
        pushed = None if keep else pushes.retire_withdrawn(session, catalog.advisories, now)
        catalog_store.replace_catalog(session, catalog, now, keep_advisories=keep, pushed=pushed)
    return loaded


def _fetch(runtime: ScanRuntime, tenants: Sequence[str]) -> list[ManifestResult]:
    if runtime.tenant_source is not None:
        return list(runtime.tenant_source.manifests(tenants or None))
    with runtime.factory() as session:
        stored = inventory_store.load_manifests(session, tenants or None)
    return [ManifestResult("store", m, None) for m in stored]


def run_full(runtime: ScanRuntime, scan_id: str, tenants: Sequence[str]) -> Outcome:
    now, timer, policy = runtime.clock(), Timer(), runtime.policy()
    intake = _refresh_catalog(runtime, now)
    timer.lap("catalog")
    if first_ingest.is_first_ingest(runtime, tenants):  # the same rows, the fleet never held whole
        outcome = first_ingest.run_first_ingest(runtime, scan_id, now, policy, timer)
        outcome.result.add_catalog_problems(intake.problems, intake.warnings)
        return outcome
    results = _fetch(runtime, tenants)
    results += _not_found(runtime, tenants, results)
    timer.lap("fetch")
    with transaction(runtime.factory) as session:
        results = _fall_back_to_last_good(session, runtime, results, policy, now)
        good = [r.manifest for r in results if r.manifest is not None and r.stale_since is None]
        if runtime.tenant_source is not None:
            inventory_store.upsert_manifests(session, good, now)
        timer.lap("store_inventory")
        engine = evaluation_engine(session, runtime, policy, now)
        result = scan(engine, results)
        timer.lap("evaluate")
        scope = [r.manifest.tenant_uuid for r in results if r.manifest is not None]
        changes = persist_findings(
            session, result.findings, scope=scope, scan_id=scan_id, now=now, policy_version=policy.version
        )
        inventory_store.mark_clean(session, [m.tenant_uuid for m in good])
        if not tenants:
            catalog_store.mark_plugins_clean(session, catalog_store.dirty_plugins(session))
        run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("persist")
    result.add_catalog_problems(intake.problems, intake.warnings)
    return Outcome(result, policy, changes, timer.timings, _unscanned(results))


def _not_found(
    runtime: ScanRuntime, tenants: Sequence[str], results: list[ManifestResult]
) -> list[ManifestResult]:
    """Tenants asked for by name that the source did not return: each is a failed tenant, named."""
    seen = {r.manifest.tenant_uuid for r in results if r.manifest is not None}
    seen |= {r.problem.tenant_uuid for r in results if r.problem is not None and r.problem.tenant_uuid}
    source = runtime.tenant_source.name if runtime.tenant_source is not None else "store"
    return [
        ManifestResult(source, None, InputProblem(source, f"tenant {name}", None, "no such tenant", name))
        for name in dict.fromkeys(tenants)
        if name not in seen
    ]


def _unscanned(results: list[ManifestResult]) -> dict[str, str]:
    """The tenants not read afresh: evaluated from their last good manifest, or not at all."""
    unscanned: dict[str, str] = {}
    for r in results:
        if r.manifest is not None and r.stale_since is not None:
            unscanned[r.manifest.tenant_uuid] = "stale"
        elif r.manifest is None and r.problem is not None and r.problem.tenant_uuid:
            unscanned[r.problem.tenant_uuid] = "failed"
    return unscanned


def _fall_back_to_last_good(
    session: Session,
    runtime: ScanRuntime,
    results: list[ManifestResult],
    policy: CurrentPolicy,
    now: datetime,
) -> list[ManifestResult]:
    """A tenant whose manifest could not be fetched or validated is evaluated from its last good
    manifest when that is younger than `defaults.max_report_age` (its findings are marked stale)."""
    failed = {
        r.problem.tenant_uuid: i
        for i, r in enumerate(results)
        if r.manifest is None and r.problem is not None and r.problem.tenant_uuid
    }
    if runtime.tenant_source is None or not failed:
        return results
    oldest = now - parse_duration(policy.rules.defaults.max_report_age)
    fetched = inventory_store.fetched_since(session, sorted(failed), oldest)
    if not fetched:
        return results
    patched = list(results)
    for manifest in inventory_store.load_manifests(session, sorted(fetched)):
        i = failed[manifest.tenant_uuid]
        patched[i] = replace(results[i], manifest=manifest, stale_since=fetched[manifest.tenant_uuid])
    return patched

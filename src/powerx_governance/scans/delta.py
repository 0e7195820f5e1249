"""A delta scan: only tenants whose manifest changed, and installations of plugins whose data changed."""

from __future__ import annotations

from sqlalchemy.orm import Session

from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.session import transaction
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.recommendations.store import persist_findings
from powerx_governance.scans.runtime import Outcome, ScanRuntime, Timer, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import scan


def run_delta(runtime: ScanRuntime, scan_id: str) -> Outcome:
    """Only tenants whose manifest changed, and only installations of plugins whose data changed."""
    now, timer, policy = runtime.clock(), Timer(), runtime.policy()
    with transaction(runtime.factory) as session:
        dirty_tenants = set(inventory_store.dirty_tenants(session))
        dirty_plugins = set(catalog_store.dirty_plugins(session))
        whole = inventory_store.load_manifests(session, sorted(dirty_tenants)) if dirty_tenants else []
        partial = [
            m
            for m in inventory_store.load_installations_of(session, sorted(dirty_plugins))
            if m.tenant_uuid not in dirty_tenants
        ]
        timer.lap("load")
        engine = evaluation_engine(session, runtime, policy, now)
        installed = _installed_for_dependencies(session, engine, partial, dirty_plugins)
        result = scan(
            engine, [ManifestResult("store", m, None) for m in (*whole, *partial)], installed=installed
        )
        timer.lap("evaluate")
        findings_whole = [f for f in result.findings if f.tenant.tenant_uuid in dirty_tenants]
        findings_partial = [f for f in result.findings if f.tenant.tenant_uuid not in dirty_tenants]
        version = policy.version
        changes = persist_findings(
            session,
            findings_whole,
            scope=sorted(dirty_tenants),
            scan_id=scan_id,
            now=now,
            policy_version=version,
        )
        pairs = [(m.tenant_uuid, p.plugin_id) for m in partial for p in m.plugins]
        more = persist_findings(
            session, findings_partial, scope=pairs, scan_id=scan_id, now=now, policy_version=version
        )
        changes.changes += more.changes
        changes.unchanged += more.unchanged
        inventory_store.mark_clean(session, sorted(dirty_tenants))
        catalog_store.mark_plugins_clean(session, sorted(dirty_plugins))
        run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("persist")
    return Outcome(result, policy, changes, timer.timings)


def _installed_for_dependencies(
    session: Session, engine: PolicyEngine, partial: list[TenantManifest], plugin_ids: set[str]
) -> dict[str, dict[str, str]]:
    """What partially loaded tenants run of the plugins the changed plugins' releases depend on."""
    needed = {
        dep.id
        for pid in plugin_ids
        if (plugin := engine.index.plugins.get(pid)) is not None
        for release in plugin.releases
        for dep in release.release.dependencies
    }
    if not needed or not partial:
        return {}
    known = inventory_store.installed_versions(session, [m.tenant_uuid for m in partial], sorted(needed))
    for manifest in partial:
        known.setdefault(manifest.tenant_uuid, {}).update({p.plugin_id: p.version for p in manifest.plugins})
    return known

"""A delta scan: only tenants whose manifest changed, and installations of plugins whose data changed.

A small delta is one job and one transaction (the push latency path). A large one (at least
`POWERX_SCAN_DELTA_SHARD_FROM` installations, when shards are on) is cut into shard jobs by
`shards.plan_delta`; each shard evaluates its part with `evaluate_delta`, as the one job does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.session import checkpoint_apart, transaction
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import ChangeSet, persist_findings
from powerx_governance.scans.dirty import dirty_manifests, mark_evaluated
from powerx_governance.scans.runtime import Outcome, ScanRuntime, Timer, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import ScanResult, bulk_allocation, scan


@dataclass(frozen=True)
class DeltaWork:
    """What (part of) a delta evaluates: tenants whole, and other tenants' installations of the
    changed plugins."""

    whole: Sequence[str]  # tenants whose manifest changed
    plugins: Sequence[str]  # plugins whose data changed
    partial: Sequence[str] | None = None  # tenants evaluated in part (None: every one running a plugin)


def run_delta(runtime: ScanRuntime, scan_id: str) -> Outcome:
    """Only tenants whose manifest changed, and only installations of plugins whose data changed."""
    now, timer, policy = runtime.clock(), Timer(), runtime.policy()
    # persisting allocates as evaluating does (a row, a revision, a change per recommendation): the
    # default thresholds ran two full collections of the service's heap per push (~30% of its CPU)
    with bulk_allocation(), _older_objects_set_aside(), transaction(runtime.factory) as session:
        checkpoint_apart(session)
        plugins = sorted(catalog_store.dirty_plugins(session))
        work = DeltaWork(sorted(inventory_store.dirty_tenants(session)), plugins)
        result, changes = evaluate_delta(session, runtime, policy, scan_id, work, now, timer)
        catalog_store.mark_plugins_clean(session, plugins)
    return Outcome(result, policy, changes, timer.timings)


@contextmanager
def _older_objects_set_aside() -> Iterator[None]:
    """Collections during the delta skip every object made before it (`gc.freeze`), thawed after.

    The service's long-lived heap (the indexed catalog, SQLAlchemy's caches) was most of the cost
    of the full collection a push of 20,000 changed recommendations still ran. Freezing is
    process-wide: a collection in another thread meanwhile skips those objects too, which only
    delays reclaiming cycles among them until the thaw.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def evaluate_delta(
    session: Session,
    runtime: ScanRuntime,
    policy: CurrentPolicy,
    scan_id: str,
    work: DeltaWork,
    now: datetime,
    timer: Timer | None = None,
) -> tuple[ScanResult, ChangeSet]:
    """Evaluate `work` and persist its findings, clear the evaluated tenants' marks and run the
    change hooks, in the caller's transaction (the plugins' marks are the caller's)."""
    timer = timer or Timer()
    evaluated = dirty_manifests(session, work.whole)  # before the manifests: see `scans.dirty`
    whole = inventory_store.load_manifests(session, work.whole) if work.whole else []
    changed = set(work.whole)
    partial = [
        m
        for m in inventory_store.load_installations_of(session, work.plugins, work.partial)
        if m.tenant_uuid not in changed
    ]
    timer.lap("load")
    engine = evaluation_engine(session, runtime, policy, now)
    installed = _installed_for_dependencies(session, engine, partial, set(work.plugins))
    result = scan(engine, [ManifestResult("store", m, None) for m in (*whole, *partial)], installed=installed)
    timer.lap("evaluate")
    version = policy.version
    changes = persist_findings(
        session,
        [f for f in result.findings if f.tenant.tenant_uuid in changed],
        scope=list(work.whole),
        scan_id=scan_id,
        now=now,
        policy_version=version,
    )
    more = persist_findings(
        session,
        [f for f in result.findings if f.tenant.tenant_uuid not in changed],
        scope=[(m.tenant_uuid, p.plugin_id) for m in partial for p in m.plugins],
        scan_id=scan_id,
        now=now,
        policy_version=version,
    )
    changes.changes += more.changes
    changes.unchanged += more.unchanged
    mark_evaluated(session, evaluated)
    run_hooks(runtime, session, scan_id, changes, now)
    timer.lap("persist")
    return result, changes


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

"""A first ingest: the first full scan of an empty store, streamed in tenant batches.

It stores and writes what a full scan (`full.run_full`) stores and writes, row for row, in one
transaction as that does (a crash leaves the store empty, and the scan runs again), but never
holds the fleet in memory: manifests, findings and planned rows live for one batch of tenants.

Recommendation ids must come out as one fleet-wide write numbers them: in the order of the
fleet's findings sorted by priority (highest first, ties in tenant and manifest order). So it
runs twice over the tenants. The intake reads the source batch by batch, stores the manifests,
evaluates them and counts the findings by priority. The write loads each batch back from the
store (in source and manifest order, which the intake keeps as plugin ids), evaluates it again
(the engine remembers every distinct evaluation) and numbers each finding from the counts: its
rank is the findings of higher priority in the fleet, plus those of its priority before it.
The change hooks (notifications, events, decisions, baselines) run once, on every change in
id order, as after a fleet-wide write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Final

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.chunks import chunks
from powerx_governance.db.session import transaction
from powerx_governance.findings import Finding
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import (
    ChangeSet,
    FirstIngestShared,
    new_recommendation_ids,
    persist_first_findings,
)
from powerx_governance.recommendations.tables import RecommendationRow, TenantFindingsRow
from powerx_governance.scans.runtime import Outcome, ScanRuntime, Timer, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import ScanResult, scan
from powerx_governance.sources.interface import TenantSource

BATCH: Final = 1000  # tenants read, evaluated and written at a time


def is_first_ingest(runtime: ScanRuntime, tenants: Sequence[str]) -> bool:
    """A fleet scan from a tenant source into a store holding no tenant and no recommendation."""
    if runtime.tenant_source is None or tenants:
        return False
    with runtime.factory() as session:
        held = (TenantRow.tenant_uuid, RecommendationRow.id, TenantFindingsRow.tenant_uuid)
        return all(session.execute(select(column).limit(1)).first() is None for column in held)


@dataclass
class _Intake:
    """What the intake keeps of the fleet: tenants in source order with their plugins in manifest
    order, and how many findings each priority has."""

    result: ScanResult
    plugins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    priorities: Counter[int] = field(default_factory=Counter)
    unscanned: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # one string per plugin id, shared

    def add(self, batch: list[ManifestResult], scanned: ScanResult) -> None:
        self.result.add_batch(scanned)
        self.priorities.update(f.verdict.priority for f in scanned.findings)
        for r in batch:
            if r.manifest is not None:
                names = (self.names.setdefault(p.plugin_id, p.plugin_id) for p in r.manifest.plugins)
                self.plugins[r.manifest.tenant_uuid] = tuple(names)
            elif r.problem is not None and r.problem.tenant_uuid:
                self.unscanned[r.problem.tenant_uuid] = "failed"


def _batches(results: Iterable[ManifestResult]) -> Iterator[list[ManifestResult]]:
    batch: list[ManifestResult] = []
    for result in results:
        batch.append(result)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _take_in(session: Session, source: TenantSource, engine: PolicyEngine, now: datetime) -> _Intake:
    """Store and evaluate the source's manifests batch by batch; keep only what numbering needs."""
    intake = _Intake(ScanResult(generated_at=engine.now))
    for batch in _batches(source.manifests(None)):
        good = [r.manifest for r in batch if r.manifest is not None]
        inventory_store.upsert_manifests(session, good, now)
        intake.add(batch, scan(engine, batch))
    return intake


class _Numbering:
    """Each finding's id: its rank in the fleet's findings sorted by priority, as an id taken."""

    def __init__(self, ids: list[int], priorities: Counter[int]) -> None:
        self._ids = ids
        self._next: dict[int, int] = {}
        above = 0
        for priority in sorted(priorities, reverse=True):
            self._next[priority] = above
            above += priorities[priority]

    def of(self, findings: Sequence[Finding]) -> list[int]:
        """Ids of the next findings, given batch by batch in tenant order, sorted by priority."""
        ranks = []
        for f in findings:
            rank = self._next[f.verdict.priority]
            self._next[f.verdict.priority] = rank + 1
            ranks.append(rank)
        return [self._ids[rank] for rank in ranks]


def _in_manifest_order(manifest: TenantManifest, plugins: tuple[str, ...]) -> TenantManifest:
    stored = {p.plugin_id: p for p in manifest.plugins}
    return msgspec.structs.replace(manifest, plugins=tuple(stored[p] for p in plugins))


def _stored_batch(
    session: Session, source: str, intake: _Intake, tenants: Sequence[str]
) -> list[ManifestResult]:
    """The batch's manifests as stored, in source order with their plugins in manifest order."""
    stored = {m.tenant_uuid: m for m in inventory_store.load_manifests(session, tenants)}
    return [ManifestResult(source, _in_manifest_order(stored[t], intake.plugins[t]), None) for t in tenants]


def _write(
    session: Session,
    engine: PolicyEngine,
    intake: _Intake,
    source: str,
    scan_id: str,
    policy: CurrentPolicy,
) -> ChangeSet:
    """Evaluate and write batch by batch; the changes of every batch, in id order."""
    total = sum(intake.priorities.values())
    numbering = _Numbering(new_recommendation_ids(session, total), intake.priorities)
    changes, shared = ChangeSet(), FirstIngestShared()
    for tenants in chunks(list(intake.plugins), BATCH):
        findings = scan(engine, _stored_batch(session, source, intake, tenants)).findings
        done = persist_first_findings(
            session,
            findings,
            numbering.of(findings),
            scan_id=scan_id,
            now=engine.now,
            policy_version=policy.version,
            shared=shared,
        )
        changes.changes += done.changes
        inventory_store.mark_clean(session, tenants)
    if len(changes.changes) != total:
        raise RuntimeError(f"first ingest: {len(changes.changes)} findings written, {total} found")
    changes.changes.sort(key=attrgetter("recommendation_id"))
    return changes


def run_first_ingest(
    runtime: ScanRuntime, scan_id: str, now: datetime, policy: CurrentPolicy, timer: Timer
) -> Outcome:
    """The full scan of an empty store (`is_first_ingest`), after its catalog refresh."""
    source = runtime.tenant_source
    if source is None:
        raise ValueError("a first ingest reads a tenant source")
    with transaction(runtime.factory) as session:
        engine = evaluation_engine(session, runtime, policy, now)
        intake = _take_in(session, source, engine, now)
        timer.lap("store_inventory_evaluate")
        changes = _write(session, engine, intake, source.name, scan_id, policy)
        catalog_store.mark_plugins_clean(session, catalog_store.dirty_plugins(session))
        timer.lap("persist")
        run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("hooks")
    return Outcome(intake.result, policy, changes, timer.timings, intake.unscanned)

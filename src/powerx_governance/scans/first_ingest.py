"""A first ingest: the first full scan of an empty store, streamed in tenant batches.

It stores and writes what a full scan (`full.run_full`) stores and writes, row for row, in one
transaction as that does (a crash leaves the store empty, and the scan runs again), but never
holds the fleet's manifests in memory: they live for one batch of tenants.

Recommendation ids must come out as one fleet-wide write numbers them: in the order of the
fleet's findings sorted by priority (highest first, ties in tenant and manifest order). The intake
reads the source batch by batch, stores the manifests, evaluates them and keeps each finding as
(tenant, kind): a shared tenant record and one of the few thousand kinds of finding a fleet has
(`OpenedFindings`), a pair of references each. The write then numbers every finding from the counts
by priority (its rank is the findings of higher priority, plus those of its priority before it)
and writes them in id order, a chunk at a time, each row built from what its kind has in common
(`FirstIngestWriter`). The change hooks (notifications, events, decisions, baselines) run once,
on every change in id order, as after a fleet-wide write.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from operator import attrgetter
from typing import Final, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.bulk import CopiedApart
from powerx_governance.db.chunks import chunks
from powerx_governance.db.session import (
    analyse_after_bulk_load,
    indexes_built_after,
    postgresql_foreign_keys_checked_after,
    sqlite_page_cache,
    transaction,
)
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import (
    ChangeSet,
    FirstIngestWriter,
    OpenedFinding,
    OpenedFindings,
    new_recommendation_ids,
)
from powerx_governance.recommendations.tables import RecommendationRow, TenantFindingsRow
from powerx_governance.scans.runtime import Outcome, ScanRuntime, Timer, evaluation_engine, run_hooks
from powerx_governance.scans.scanner import ScanResult, batch_scanner, bulk_allocation
from powerx_governance.sources.interface import TenantSource

# The tables an ingest fills from empty: their secondary indexes are built after it, and their
# PostgreSQL foreign keys (and those to `tenants`) checked after it. Not `verdicts`: new ones are
# committed apart (recommendations/store.py), and dropping a key to them would lock that writer out.
FILLED: Final = (
    "installations",
    "recommendations",
    "recommendation_revisions",
    "notification_events",
    "notification_entries",
    "notification_deliveries",
)
# Analysed once the ingest committed (PostgreSQL): the tables the next scans and pushes join (1.1 s on
# the reference fleet); the notification outbox, which they only append to, is left to autovacuum.
ANALYSED: Final = ("installations", "recommendations", "tenants", "tenant_findings", "verdicts")
BATCH: Final = 1000  # tenants read and evaluated at a time
WRITE_EVERY: Final = 20_000  # findings written at a time
# SQLite's page cache during the ingest. 256 MiB while its indexes were kept up row by row (they
# outgrew the usual 128 MiB); built after the writes, the usual size does: 256 MiB took the
# 20,000-tenant ingest to 958 MiB peak RSS, 128 MiB to 825 MiB, its CPU no higher.
PAGE_CACHE_MIB: Final = 128


def is_first_ingest(runtime: ScanRuntime, tenants: Sequence[str]) -> bool:
    """A fleet scan from a tenant source into a store holding no tenant and no recommendation."""
    if runtime.tenant_source is None or tenants:
        return False
    with runtime.factory() as session:
        held = (TenantRow.tenant_uuid, RecommendationRow.id, TenantFindingsRow.tenant_uuid)
        return all(session.execute(select(column).limit(1)).first() is None for column in held)


@dataclass
class _Intake:
    """What the intake keeps of the fleet: tenants in source order, each finding as (tenant, kind)
    batch by batch as the scan sorts them (by priority, ties in tenant and manifest order), and how
    many findings each priority has."""

    result: ScanResult
    tenants: dict[str, None] = field(default_factory=dict)
    findings: list[OpenedFinding] = field(default_factory=list)
    priorities: Counter[int] = field(default_factory=Counter)
    unscanned: dict[str, str] = field(default_factory=dict)
    opened: OpenedFindings = field(default_factory=OpenedFindings)

    def add(self, batch: list[ManifestResult], scanned: ScanResult) -> None:
        self.result.add_batch(scanned)
        self.priorities.update(f.verdict.priority for f in scanned.findings)
        self.findings += map(self.opened.of, scanned.findings)
        for r in batch:
            if r.manifest is not None:
                self.tenants[r.manifest.tenant_uuid] = None
            elif r.problem is not None and r.problem.tenant_uuid:
                self.unscanned[r.problem.tenant_uuid] = "failed"

    def in_id_order(self) -> list[OpenedFinding]:
        """Every finding at its rank in the fleet's findings sorted by priority; forgets them."""
        ranked: list[OpenedFinding | None] = [None] * len(self.findings)
        following: dict[int, int] = {}  # the next rank of each priority
        above = 0
        for priority in sorted(self.priorities, reverse=True):
            following[priority] = above
            above += self.priorities[priority]
        for found in self.findings:
            priority = found[1].verdict.priority
            ranked[following[priority]] = found
            following[priority] += 1
        self.findings = []
        return cast(list[OpenedFinding], ranked)


def _batches(results: Iterable[ManifestResult]) -> Iterator[list[ManifestResult]]:
    batch: list[ManifestResult] = []
    for result in results:
        batch.append(result)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def _kept_objects_set_aside() -> Iterator[Callable[[], None]]:
    """Collections skip what the ingest keeps: every object made before the block, and those kept
    at each call of the function it gives (`_set_aside`); thawed after.

    The ingest keeps a fleet's findings, then their changes, a few million objects without cycles.
    The full collections the growing heap set off went over all of them each time (17 at 4,000
    tenants, a fifth of the process's CPU). Freezing is process-wide: a collection in another thread
    meanwhile skips those objects too, which only delays reclaiming cycles among them until the thaw.
    """
    gc.freeze()
    try:
        yield _set_aside
    finally:
        gc.unfreeze()


def _set_aside() -> None:
    """Collect what was made since the last call (frozen objects are never visited: the cost is the
    new ones'), then freeze what is left. Frozen, cycles made by the work in between (SQLAlchemy's
    results and the like) would stay until the thaw: 200 MiB more peak RSS at 20,000 tenants."""
    gc.collect()
    gc.freeze()


def _take_in(
    session: Session, source: TenantSource, engine: PolicyEngine, now: datetime, set_aside: Callable[[], None]
) -> _Intake:
    """Store and evaluate the source's manifests batch by batch; keep only what the write needs."""
    intake = _Intake(ScanResult(generated_at=engine.now))
    copying = CopiedApart()  # PostgreSQL: a batch's installations are stored while it is evaluated
    scan = batch_scanner(engine)
    try:
        for batch in _batches(source.manifests(None)):
            good = [r.manifest for r in batch if r.manifest is not None]
            inventory_store.insert_new_manifests(session, good, now, copying)
            intake.add(batch, scan(batch))
            set_aside()
        copying.wait()
    finally:
        copying.settle()  # before a rollback uses the connection
    return intake


def _write(
    session: Session,
    engine: PolicyEngine,
    intake: _Intake,
    scan_id: str,
    policy: CurrentPolicy,
    set_aside: Callable[[], None],
) -> ChangeSet:
    """Write every finding in id order, `WRITE_EVERY` at a time; the changes in id order."""
    findings = intake.in_id_order()
    ids: Sequence[int] = new_recommendation_ids(session, len(findings))
    if ids and ids[-1] - ids[0] == len(ids) - 1 and not any(a >= b for a, b in pairwise(ids)):
        ids = range(ids[0], ids[-1] + 1)  # the usual case, without a million int objects
    writer = FirstIngestWriter(session, scan_id=scan_id, now=engine.now, policy_version=policy.version)
    changes = ChangeSet()
    start = 0
    try:
        while findings:
            part = findings[:WRITE_EVERY]
            del findings[:WRITE_EVERY]  # written ones go as their changes come
            numbered = [(ids[start + i], tenant, kind) for i, (tenant, kind) in enumerate(part)]
            changes.changes += writer.write(numbered)
            start += len(part)
            set_aside()
        writer.finish()
    finally:
        writer.settle()
    for tenants in chunks(list(intake.tenants), BATCH):
        inventory_store.mark_clean(session, tenants)
    if any(a > b for a, b in pairwise(ids)):  # PostgreSQL: a sequence shared with other writers
        changes.changes.sort(key=attrgetter("recommendation_id"))
    return changes


def run_first_ingest(
    runtime: ScanRuntime, scan_id: str, now: datetime, policy: CurrentPolicy, timer: Timer
) -> Outcome:
    """The full scan of an empty store (`is_first_ingest`), after its catalog refresh."""
    source = runtime.tenant_source
    if source is None:
        raise ValueError("a first ingest reads a tenant source")
    with (
        bulk_allocation(),
        _kept_objects_set_aside() as set_aside,
        transaction(runtime.factory) as session,
        sqlite_page_cache(session, PAGE_CACHE_MIB),
        indexes_built_after(session, FILLED),
        postgresql_foreign_keys_checked_after(session, (*FILLED, "tenants")),
    ):
        engine = evaluation_engine(session, runtime, policy, now)
        intake = _take_in(session, source, engine, now, set_aside)
        timer.lap("store_inventory_evaluate")
        changes = _write(session, engine, intake, scan_id, policy, set_aside)
        catalog_store.mark_plugins_clean(session, catalog_store.dirty_plugins(session))
        timer.lap("persist")
        run_hooks(runtime, session, scan_id, changes, now)
        timer.lap("hooks")
    timer.lap("commit")  # the indexes and keys built again, then the commit
    analyse_after_bulk_load(runtime.factory, ANALYSED)
    timer.lap("analyse")
    return Outcome(intake.result, policy, changes, timer.timings, intake.unscanned)

"""What a scan needs from its surroundings, and what running one produces for `finish`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.catalog.cache import CatalogCache
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.observability.metrics import Metrics
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.rules import GovernanceRules
from powerx_governance.policy_versions.model import CurrentPolicy
from powerx_governance.recommendations.store import ChangeSet
from powerx_governance.scans.scanner import ScanResult
from powerx_governance.scans.tables import ScanRow
from powerx_governance.sources.interface import CatalogSource, TenantSource

# Called inside the transaction that persists recommendation changes (the outbox pattern):
# (session, changes, now, triggered_at) where triggered_at is when the triggering data arrived.
ChangeHook = Callable[[Session, ChangeSet, datetime, datetime], None]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ScanRuntime:
    """What a scan needs from its surroundings."""

    factory: sessionmaker[Session]
    policy: Callable[[], CurrentPolicy]
    clock: Clock
    metrics: Metrics
    notifications: NotificationRuntime  # scan-failure alerts are announced through it
    tenant_source: TenantSource | None = None
    catalog_source: CatalogSource | None = None
    retry_delay_seconds: float = 60.0
    change_hooks: tuple[ChangeHook, ...] = ()  # given at construction, in the order they run
    catalog_cache: CatalogCache = field(default_factory=CatalogCache)
    shard_size: int = 0  # tenants per shard of a sharded scan (0: one job scans everything)
    delta_shard_from: int = 50_000  # installations from which a delta scan is sharded (when shards are on)

    def rules(self) -> GovernanceRules:
        return self.policy().rules


@dataclass
class Outcome:
    result: ScanResult
    policy: CurrentPolicy  # what the scan evaluated with: finishing it uses the same rules
    changes: ChangeSet = field(default_factory=ChangeSet)
    timings: dict[str, float] = field(default_factory=dict)
    unscanned: dict[str, str] = field(default_factory=dict)  # tenant -> "stale" | "failed"


class Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._start, 4)
        self._start = now


def evaluation_engine(
    session: Session, runtime: ScanRuntime, policy: CurrentPolicy, now: datetime
) -> PolicyEngine:
    return PolicyEngine(runtime.catalog_cache.index(session), policy.rules, now, plain=policy.plain)


def run_hooks(
    runtime: ScanRuntime, session: Session, scan_id: str, changes: ChangeSet, now: datetime
) -> None:
    """Follow-ups (notifications, decision bookkeeping) in the same transaction as the changes."""
    if not changes.changes:
        return
    triggered_at = session.get_one(ScanRow, scan_id).requested_at  # when the triggering data arrived
    for hook in runtime.change_hooks:
        hook(session, changes, now, triggered_at)

"""Evaluating groups in the caller's transaction: members, baselines, drift, and their announcements.

New drift (and drift that comes back) is announced once per opening: a notification on the
group's route and a `plugin.version.drift` CloudEvent; resolved drift emits its resolution
event. Stored items are diffed set-wise, so a re-evaluation that changes nothing writes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from powerx_governance.baselines.config import BaselineSettings
from powerx_governance.baselines.derive import Member, derive, drift, explicit_baseline, members_of
from powerx_governance.baselines.model import (
    DRIFT_ALERT,
    DRIFT_EVENT_TYPE,
    Baseline,
    BaselineMode,
    BaselineStatus,
    Drift,
    DriftState,
    ExplicitBaseline,
    GroupEvaluation,
    GroupSpec,
)
from powerx_governance.baselines.service import all_groups, current_explicit
from powerx_governance.baselines.tables import DriftRow, GroupBaselineRow, GroupMemberRow
from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.chunks import chunks
from powerx_governance.domain import Severity
from powerx_governance.events import outbox as events_outbox
from powerx_governance.events.tables import EventType
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.notifications import outbox as notifications_outbox
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.notifications.tables import EventKind
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.index import CatalogIndex
from powerx_governance.policy_versions.models import CurrentPolicy
from powerx_governance.times import iso

MAX_LISTED: Final = 10  # drift items a notification names; the console lists them all


@dataclass(frozen=True, slots=True)
class Evaluator:
    """What evaluating groups needs: the groups file, the catalog and policy in force, notifications."""

    settings: BaselineSettings
    catalog: Callable[[Session], CatalogIndex]
    policy: Callable[[datetime], CurrentPolicy]
    notifications: NotificationRuntime

    def engine(self, session: Session, now: datetime) -> PolicyEngine:
        policy = self.policy(now)
        return PolicyEngine(self.catalog(session), policy.rules, now, plain=policy.plain)


@dataclass(frozen=True, slots=True)
class Outcome:
    groups: int
    opened: int
    resolved: int
    conflicts: int

    def as_dict(self) -> dict[str, int]:
        return {
            "groups": self.groups,
            "opened": self.opened,
            "resolved": self.resolved,
            "conflicts": self.conflicts,
        }


def memberships(session: Session, groups: Iterable[GroupSpec]) -> dict[str, list[str]]:
    """group id → its members now (tenant uuids, sorted), from the stored tenants' facts."""
    facts = session.execute(
        select(TenantRow.tenant_uuid, TenantRow.tenant_key, TenantRow.plan, TenantRow.tags)
    ).all()
    return {
        g.id: sorted(uuid for uuid, key, plan, tags in facts if g.selects(uuid, key, plan, tags))
        for g in groups
    }


def _stored_members(session: Session) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for group_id, tenant in session.execute(select(GroupMemberRow.group_id, GroupMemberRow.tenant_uuid)):
        found.setdefault(group_id, set()).add(tenant)
    return found


def evaluate(
    session: Session,
    evaluator: Evaluator,
    now: datetime,
    *,
    group_ids: Collection[str] | None = None,
    tenants: Collection[str] | None = None,
    plugins: Collection[str] | None = None,
) -> Outcome:
    """Re-evaluate groups: those named, else those with a member (now or before) among `tenants`
    or running one of `plugins`, else every group; persist and announce what changed."""
    groups = all_groups(session, evaluator.settings)
    if group_ids is not None:
        groups = [g for g in groups if g.id in group_ids]
    members = memberships(session, groups)
    if tenants is not None or plugins is not None:
        groups = _touched(session, groups, members, set(tenants or ()), set(plugins or ()))
    if not groups:
        return Outcome(0, 0, 0, 0)
    engine = evaluator.engine(session, now)
    wanted = sorted({t for g in groups for t in members[g.id]})
    by_uuid = {m.tenant_uuid: m for m in members_of(engine, inventory_store.load_manifests(session, wanted))}
    explicit = current_explicit(session, [g.id for g in groups])
    opened = resolved = conflicts = 0
    for group in groups:
        result = evaluate_group(
            engine, group, [by_uuid[t] for t in members[group.id] if t in by_uuid], explicit
        )
        conflicts += sum(1 for b in result.baselines if b.status is BaselineStatus.CONFLICT)
        o, r = _persist(session, evaluator, result, now)
        opened, resolved = opened + o, resolved + r
    return Outcome(len(groups), opened, resolved, conflicts)


def _touched(
    session: Session,
    groups: list[GroupSpec],
    members: dict[str, list[str]],
    tenants: set[str],
    plugins: set[str],
) -> list[GroupSpec]:
    stored = _stored_members(session)
    running = set(inventory_store.tenants_running(session, sorted(plugins))) if plugins else set()
    concerned = tenants | running
    return [g for g in groups if concerned & (set(members[g.id]) | stored.get(g.id, set()))]


def evaluate_group(
    engine: PolicyEngine,
    group: GroupSpec,
    members: list[Member],
    explicit: dict[tuple[str, str], ExplicitBaseline],
) -> GroupEvaluation:
    """Baselines of every plugin a member runs (and of every explicit baseline), and the drift from them."""
    plugin_ids = {pid for m in members for pid in m.installed} | {p for g, p in explicit if g == group.id}
    baselines: list[Baseline] = []
    drifts: list[Drift] = []
    for plugin_id in sorted(plugin_ids):
        plugin = engine.index.plugins.get(plugin_id)
        chosen = explicit.get((group.id, plugin_id))
        if chosen is not None:
            baseline = explicit_baseline(plugin_id, chosen)
        elif plugin is None:
            baseline = _unknown(plugin_id)
        else:
            baseline = derive(engine, plugin, members)
        baselines.append(baseline)
        drifts += drift(group.id, baseline, plugin, members)
    return GroupEvaluation(group, tuple(m.tenant_uuid for m in members), tuple(baselines), tuple(drifts))


def _unknown(plugin_id: str) -> Baseline:
    reason = f"{plugin_id} is not in the catalog: no baseline can be derived (set one explicitly)"
    return Baseline(plugin_id, BaselineMode.DERIVED, BaselineStatus.UNKNOWN, None, reason)


# -- persisting and announcing ------------------------------------------------------------------------


def _persist(
    session: Session, evaluator: Evaluator, result: GroupEvaluation, now: datetime
) -> tuple[int, int]:
    group_id = result.group.id
    _persist_members(session, group_id, result.members)
    established = _persist_baselines(session, group_id, result.baselines, now)
    return _persist_drift(session, evaluator if established else None, result, now)


def _persist_members(session: Session, group_id: str, members: tuple[str, ...]) -> None:
    stored = set(
        session.execute(
            select(GroupMemberRow.tenant_uuid).where(GroupMemberRow.group_id == group_id)
        ).scalars()
    )
    gone = sorted(stored - set(members))
    for part in chunks(gone):
        session.execute(
            delete(GroupMemberRow).where(
                GroupMemberRow.group_id == group_id, GroupMemberRow.tenant_uuid.in_(part)
            )
        )
    bulk_insert(
        session,
        GroupMemberRow,
        [{"group_id": group_id, "tenant_uuid": t} for t in members if t not in stored],
    )


def _persist_baselines(
    session: Session, group_id: str, baselines: tuple[Baseline, ...], now: datetime
) -> bool:
    """Store the group's baselines; whether the group had been evaluated before (its drift is news then)."""
    stored = {
        row.plugin_id: row
        for row in session.execute(
            select(GroupBaselineRow).where(GroupBaselineRow.group_id == group_id)
        ).scalars()
    }
    established = bool(stored) or _evaluated_before(session, group_id)
    for baseline in baselines:
        values = {
            "mode": baseline.mode.value,
            "status": baseline.status.value,
            "spec": baseline.spec,
            "reason": baseline.reason,
            "conflict": baseline.conflict_dict() if baseline.status is BaselineStatus.CONFLICT else {},
            "revision": baseline.revision,
        }
        row = stored.pop(baseline.plugin_id, None)
        if row is None:
            session.add(
                GroupBaselineRow(group_id=group_id, plugin_id=baseline.plugin_id, evaluated_at=now, **values)
            )
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.evaluated_at = now
    for gone in stored.values():
        session.delete(gone)
    return established


def _evaluated_before(session: Session, group_id: str) -> bool:
    """A group without baselines (no member runs a plugin) was evaluated when it has members stored."""
    stmt = select(GroupMemberRow.tenant_uuid).where(GroupMemberRow.group_id == group_id).limit(1)
    return session.execute(stmt).first() is not None


def _persist_drift(
    session: Session, evaluator: Evaluator | None, result: GroupEvaluation, now: datetime
) -> tuple[int, int]:
    """Diff the group's drift with what is stored; announce what opened and resolved (`evaluator`
    None: the group's first evaluation, which establishes its drift without announcing it)."""
    group = result.group
    stored = {
        (row.group_id, row.tenant_uuid, row.plugin_id): row
        for row in session.execute(select(DriftRow).where(DriftRow.group_id == group.id)).scalars()
    }
    opened: list[DriftRow] = []
    for item in result.drift:
        row = stored.pop(item.key, None)
        if row is None:
            row = DriftRow(
                group_id=group.id,
                tenant_uuid=item.tenant_uuid,
                plugin_id=item.plugin_id,
                episode=0,
                opened_at=now,
                resolved_at=None,
            )
            session.add(row)
        if _same(row, item):
            continue
        if row.state != DriftState.OPEN.value or row.status != item.status.value:
            row.episode, row.opened_at, row.resolved_at = row.episode + 1, now, None
            opened.append(row)
        row.state, row.status, row.installed = DriftState.OPEN.value, item.status.value, item.installed
        row.baseline, row.reason, row.updated_at = item.baseline, item.reason[:2000], now
    resolved = [row for row in stored.values() if row.state == DriftState.OPEN.value]
    for row in resolved:
        row.state, row.resolved_at, row.updated_at = DriftState.RESOLVED.value, now, now
    session.flush()
    if evaluator is not None:
        _announce(session, evaluator, group, opened, resolved, now)
    return len(opened), len(resolved)


def _same(row: DriftRow, item: Drift) -> bool:
    return (
        row.state == DriftState.OPEN.value
        and row.status == item.status.value
        and row.installed == item.installed
        and row.baseline == item.baseline
    )


def drift_dict(row: DriftRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "group_id": row.group_id,
        "tenant_uuid": row.tenant_uuid,
        "plugin_id": row.plugin_id,
        "state": row.state,
        "status": row.status,
        "installed_version": row.installed,
        "baseline": row.baseline,
        "reason": row.reason,
        "episode": row.episode,
        "opened_at": iso(row.opened_at),
        "resolved_at": iso(row.resolved_at),
    }


def _announce(
    session: Session,
    evaluator: Evaluator,
    group: GroupSpec,
    opened: list[DriftRow],
    resolved: list[DriftRow],
    now: datetime,
) -> None:
    if not opened and not resolved:
        return
    by_tenant: dict[str, list[DriftRow]] = {}
    for row in opened:
        by_tenant.setdefault(row.tenant_uuid, []).append(row)
    notices = [_notice(group, tenant, rows, now) for tenant, rows in by_tenant.items()]
    notifications_outbox.record_events(session, evaluator.notifications, notices, now)
    changes = [(row, "opened") for row in opened] + [(row, "resolved") for row in resolved]
    events_outbox.record(session, [_cloud_event(group, row, change) for row, change in changes], now)


def _notice(
    group: GroupSpec, tenant: str, rows: list[DriftRow], now: datetime
) -> notifications_outbox.NewEvent:
    """One member's new drift in one group, as an alert on the group's route (the notification
    outbox has no drift kind); deduped on the items and their openings."""
    items = ", ".join(f"{r.plugin_id} ({r.reason})" for r in rows[:MAX_LISTED])
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    message = f"tenant {tenant} drifted from the baselines of group {group.id}: {items}{more}"
    return notifications_outbox.NewEvent(
        dedupe_key=f"drift:{group.id}:{tenant}:{_openings(rows)}",
        kind=EventKind.ALERT,
        risk=Severity.MEDIUM,
        triggered_at=now,
        tenant_uuid=tenant,
        route=group.route,
        data={
            "alert": DRIFT_ALERT,
            "message": message,
            "severity": Severity.MEDIUM.value,
            "data": {
                "group_id": group.id,
                "group_name": group.name or group.id,
                "items": [drift_dict(r) for r in rows],
            },
        },
    )


def _openings(rows: list[DriftRow]) -> str:
    """A short digest of which items opened, and which time each opened."""
    text = ",".join(f"{r.id}.{r.episode}" for r in sorted(rows, key=lambda r: r.id))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cloud_event(group: GroupSpec, row: DriftRow, change: str) -> events_outbox.NewEvent:
    data = {**drift_dict(row), "change": change, "group_name": group.name or group.id}
    # the events log has no drift member in its EventType enum: the type travels as its string value
    drift_type = cast(EventType, _DriftType(DRIFT_EVENT_TYPE))
    subject = f"{group.id}/{row.tenant_uuid}/{row.plugin_id}"
    return events_outbox.NewEvent(drift_type, row.tenant_uuid, subject, data)


class _DriftType(str):
    """The `plugin.version.drift` event type, shaped like an EventType member (`.value`)."""

    @property
    def value(self) -> str:
        return str(self)

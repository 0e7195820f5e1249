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
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from powerx_governance.baselines.config import BaselineSettings
from powerx_governance.baselines.derive import (
    FitCache,
    Member,
    derive,
    drift,
    explicit_baseline,
    members_of,
    runners_by_plugin,
)
from powerx_governance.baselines.model import (
    DRIFT_ALERT,
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
from powerx_governance.db.bulk import bulk_insert, bulk_update
from powerx_governance.db.chunks import chunks
from powerx_governance.domain import Severity
from powerx_governance.events import outbox as events_outbox
from powerx_governance.events.model import EventType
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.notifications import outbox as notifications_outbox
from powerx_governance.notifications.model import EventKind
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.policy.index import CatalogIndex
from powerx_governance.policy_versions.model import CurrentPolicy
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
    only_plugins: Collection[str] | None = None,
) -> Outcome:
    """Re-evaluate groups: those named, else those with a member (now or before) among `tenants`
    or running one of `plugins`, else every group; persist and announce what changed.

    `only_plugins`: re-evaluate the baselines and drift of these plugins only (the change hook:
    the plugins whose findings changed), reading only their installations; the others stay as
    the last full evaluation left them."""
    groups = all_groups(session, evaluator.settings)
    if group_ids is not None:
        groups = [g for g in groups if g.id in group_ids]
    if not groups:  # no group at all: not even the tenants' facts are read
        return Outcome(0, 0, 0, 0)
    members = memberships(session, groups)
    if tenants is not None or plugins is not None:
        groups = _touched(session, groups, members, set(tenants or ()), set(plugins or ()))
    if not groups:
        return Outcome(0, 0, 0, 0)
    engine = evaluator.engine(session, now)
    scope = None if only_plugins is None else frozenset(only_plugins)
    by_uuid = {m.tenant_uuid: m for m in members_of(engine, _manifests(session, groups, members, scope))}
    explicit = current_explicit(session, [g.id for g in groups])
    opened = resolved = conflicts = 0
    cache: FitCache = {}
    for group in groups:
        member_ids = members[group.id]
        chosen = [by_uuid[t] for t in member_ids if t in by_uuid]
        result = evaluate_group(engine, group, member_ids, chosen, explicit, cache, scope)
        conflicts += sum(1 for b in result.baselines if b.status is BaselineStatus.CONFLICT)
        o, r = _persist(session, evaluator, result, now)
        opened, resolved = opened + o, resolved + r
    return Outcome(len(groups), opened, resolved, conflicts)


def _manifests(
    session: Session, groups: list[GroupSpec], members: dict[str, list[str]], scope: frozenset[str] | None
) -> list[TenantManifest]:
    """The members' manifests: whole, or with only the installations of the plugins in scope."""
    wanted = {t for g in groups for t in members[g.id]}
    if scope is None:
        return inventory_store.load_manifests(session, sorted(wanted))
    running = inventory_store.load_installations_of(session, sorted(scope))
    return [m for m in running if m.tenant_uuid in wanted]


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
    member_ids: list[str],
    members: list[Member],
    explicit: dict[tuple[str, str], ExplicitBaseline],
    cache: FitCache | None = None,
    scope: frozenset[str] | None = None,
) -> GroupEvaluation:
    """Baselines of every plugin a member runs (and of every explicit baseline), and the drift from
    them; only of the plugins in `scope` when given (`members` then carry only those installations)."""
    cache = {} if cache is None else cache
    running = runners_by_plugin(members)
    plugin_ids = set(running) | {p for g, p in explicit if g == group.id}
    if scope is not None:
        plugin_ids &= scope
    baselines: list[Baseline] = []
    drifts: list[Drift] = []
    for plugin_id in sorted(plugin_ids):
        plugin = engine.index.plugins.get(plugin_id)
        runners = running.get(plugin_id, [])
        chosen = explicit.get((group.id, plugin_id))
        if chosen is not None:
            baseline = explicit_baseline(plugin_id, chosen)
        elif plugin is None:
            baseline = _unknown(plugin_id)
        else:
            baseline = derive(engine, plugin, runners, cache)
        baselines.append(baseline)
        drifts += drift(group.id, baseline, plugin, member_ids, runners)
    return GroupEvaluation(group, tuple(member_ids), tuple(baselines), tuple(drifts), scope)


def _unknown(plugin_id: str) -> Baseline:
    reason = f"{plugin_id} is not in the catalog: no baseline can be derived (set one explicitly)"
    return Baseline(plugin_id, BaselineMode.DERIVED, BaselineStatus.UNKNOWN, None, reason)


# -- persisting and announcing ------------------------------------------------------------------------


def _persist(
    session: Session, evaluator: Evaluator, result: GroupEvaluation, now: datetime
) -> tuple[int, int]:
    group_id = result.group.id
    _persist_members(session, group_id, result.members)
    established = _persist_baselines(session, group_id, result.baselines, now, result.scope)
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
    session: Session,
    group_id: str,
    baselines: tuple[Baseline, ...],
    now: datetime,
    scope: frozenset[str] | None,
) -> bool:
    """Store the group's baselines; whether the group had been evaluated before (its drift is news then)."""
    stored = {
        row.plugin_id: row
        for row in session.execute(
            select(GroupBaselineRow).where(GroupBaselineRow.group_id == group_id)
        ).scalars()
    }
    established = bool(stored) or _evaluated_before(session, group_id)
    if scope is not None:
        stored = {plugin: row for plugin, row in stored.items() if plugin in scope}
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


_DRIFT_COLUMNS: Final = (
    "id",
    "group_id",
    "tenant_uuid",
    "plugin_id",
    "state",
    "status",
    "installed",
    "baseline",
    "reason",
    "episode",
    "opened_at",
    "updated_at",
    "resolved_at",
)


def _stored_drift(session: Session, group_id: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    columns = [getattr(DriftRow, c) for c in _DRIFT_COLUMNS]
    rows = session.execute(select(*columns).where(DriftRow.group_id == group_id))
    return {(r.group_id, r.tenant_uuid, r.plugin_id): dict(r._mapping) for r in rows}


def _persist_drift(
    session: Session, evaluator: Evaluator | None, result: GroupEvaluation, now: datetime
) -> tuple[int, int]:
    """Diff the group's drift with what is stored, set-wise; announce what opened and resolved
    (`evaluator` None: the group's first evaluation, which establishes its drift without announcing it)."""
    group = result.group
    stored = _stored_drift(session, group.id)
    if result.scope is not None:
        stored = {key: row for key, row in stored.items() if key[2] in result.scope}
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    opened: list[dict[str, Any]] = []
    for item in result.drift:
        row = stored.pop(item.key, None)
        if row is not None and _same(row, item):
            continue
        fresh = row is None or row["state"] != DriftState.OPEN.value or row["status"] != item.status.value
        values = _drift_values(group.id, item, row, now, fresh=fresh)
        (new if row is None else changed).append(values)
        if fresh:
            opened.append(values)
    resolved = [row for row in stored.values() if row["state"] == DriftState.OPEN.value]
    for row in resolved:
        row |= {"state": DriftState.RESOLVED.value, "resolved_at": now, "updated_at": now}
    bulk_insert(session, DriftRow, [{k: v for k, v in r.items() if k != "id"} for r in new])
    bulk_update(session, DriftRow, [*changed, *resolved], key="id")
    if new:
        ids = {(g, t, p): i for i, g, t, p in _ids(session, group.id)}
        for values in new:
            values["id"] = ids[(values["group_id"], values["tenant_uuid"], values["plugin_id"])]
    if evaluator is not None:
        _announce(session, evaluator, group, opened, resolved, now)
    return len(opened), len(resolved)


def _ids(session: Session, group_id: str) -> list[tuple[int, str, str, str]]:
    stmt = select(DriftRow.id, DriftRow.group_id, DriftRow.tenant_uuid, DriftRow.plugin_id)
    return [(i, g, t, p) for i, g, t, p in session.execute(stmt.where(DriftRow.group_id == group_id))]


def _drift_values(
    group_id: str, item: Drift, row: dict[str, Any] | None, now: datetime, *, fresh: bool
) -> dict[str, Any]:
    episode = (row["episode"] if row else 0) + (1 if fresh else 0)
    return {
        "id": row["id"] if row else None,
        "group_id": group_id,
        "tenant_uuid": item.tenant_uuid,
        "plugin_id": item.plugin_id,
        "state": DriftState.OPEN.value,
        "status": item.status.value,
        "installed": item.installed,
        "baseline": item.baseline,
        "reason": item.reason[:2000],
        "episode": episode,
        "opened_at": now if fresh or row is None else row["opened_at"],
        "updated_at": now,
        "resolved_at": None,
    }


def _same(row: dict[str, Any], item: Drift) -> bool:
    stored = (row["state"], row["status"], row["installed"], row["baseline"])
    return stored == (DriftState.OPEN.value, item.status.value, item.installed, item.baseline)


def drift_view(row: dict[str, Any]) -> dict[str, Any]:
    """A drift item as the API shows it, from its stored columns."""
    return {
        "id": row["id"],
        "group_id": row["group_id"],
        "tenant_uuid": row["tenant_uuid"],
        "plugin_id": row["plugin_id"],
        "state": row["state"],
        "status": row["status"],
        "installed_version": row["installed"],
        "baseline": row["baseline"],
        "reason": row["reason"],
        "episode": row["episode"],
        "opened_at": iso(row["opened_at"]),
        "resolved_at": iso(row["resolved_at"]),
    }


def drift_dict(row: DriftRow) -> dict[str, Any]:
    return drift_view({c: getattr(row, c) for c in _DRIFT_COLUMNS})


def _announce(
    session: Session,
    evaluator: Evaluator,
    group: GroupSpec,
    opened: list[dict[str, Any]],
    resolved: list[dict[str, Any]],
    now: datetime,
) -> None:
    if not opened and not resolved:
        return
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for row in opened:
        by_tenant.setdefault(row["tenant_uuid"], []).append(row)
    notices = [_notice(group, tenant, rows, now) for tenant, rows in by_tenant.items()]
    notifications_outbox.record_events(session, evaluator.notifications, notices, now)
    changes = [(row, "opened") for row in opened] + [(row, "resolved") for row in resolved]
    events_outbox.record(session, [_cloud_event(group, row, change) for row, change in changes], now)


def _notice(
    group: GroupSpec, tenant: str, rows: list[dict[str, Any]], now: datetime
) -> notifications_outbox.NewEvent:
    """One member's new drift in one group, as an alert on the group's route (the notification
    outbox has no drift kind); deduped on the items and their openings."""
    items = ", ".join(f"{r['plugin_id']} ({r['reason']})" for r in rows[:MAX_LISTED])
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
                "items": [drift_view(r) for r in rows],
            },
        },
    )


def _openings(rows: list[dict[str, Any]]) -> str:
    """A short digest of which items opened, and which time each opened."""
    text = ",".join(f"{r['id']}.{r['episode']}" for r in sorted(rows, key=lambda r: int(r["id"])))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _cloud_event(group: GroupSpec, row: dict[str, Any], change: str) -> events_outbox.NewEvent:
    data = {**drift_view(row), "change": change, "group_name": group.name or group.id}
    subject = f"{group.id}/{row['tenant_uuid']}/{row['plugin_id']}"
    return events_outbox.NewEvent(EventType.DRIFT, row["tenant_uuid"], subject, data)

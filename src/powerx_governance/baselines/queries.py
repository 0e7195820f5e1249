"""Reads of groups, baselines and drift shared by the API, the console and the CLI.

Tenant scope is passed explicitly (`tenant`, keyword-only): a tenant-bound caller sees the groups
its tenant belongs to, its own row of each, and conflicts with the other members' names left out.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.baselines.config import BaselineSettings
from powerx_governance.baselines.evaluation import drift_dict
from powerx_governance.baselines.model import BaselineStatus, DriftState, GroupSpec, UnknownGroupError
from powerx_governance.baselines.service import all_groups, get_group
from powerx_governance.baselines.tables import DriftRow, GroupBaselineRow, GroupMemberRow
from powerx_governance.db.chunks import chunks
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.times import iso


def _members(session: Session, group_id: str) -> list[str]:
    stmt = select(GroupMemberRow.tenant_uuid).where(GroupMemberRow.group_id == group_id)
    return sorted(session.execute(stmt).scalars())


def groups_of(session: Session, tenant: str) -> set[str]:
    stmt = select(GroupMemberRow.group_id).where(GroupMemberRow.tenant_uuid == tenant)
    return set(session.execute(stmt).scalars())


def visible_group(
    session: Session, settings: BaselineSettings, group_id: str, *, tenant: str | None
) -> GroupSpec:
    """The group, when the caller may see it (a tenant-bound caller: only groups of its tenant)."""
    group = get_group(session, settings, group_id)
    if tenant is not None and group_id not in groups_of(session, tenant):
        raise UnknownGroupError(group_id)
    return group


def list_groups(session: Session, settings: BaselineSettings, *, tenant: str | None) -> list[dict[str, Any]]:
    """Every group the caller may see, with its member count, conflicts and open drift."""
    groups = all_groups(session, settings)
    if tenant is not None:
        mine = groups_of(session, tenant)
        groups = [g for g in groups if g.id in mine]
    counts = _counts(session, tenant=tenant)
    items = []
    for group in groups:
        members, conflicts, drifting = counts.get(group.id, (0, 0, 0))
        summary = group.as_dict() if tenant is None else _public(group)
        items.append(summary | {"members": members, "conflicts": conflicts, "open_drift": drifting})
    return items


def _public(group: GroupSpec) -> dict[str, Any]:
    """A group as a tenant-bound caller sees it: no other tenant named."""
    return {k: v for k, v in group.as_dict().items() if k != "tenants"}


def _counts(session: Session, *, tenant: str | None) -> dict[str, tuple[int, int, int]]:
    members: dict[str, int] = {}
    member_stmt = select(GroupMemberRow.group_id)
    if tenant is not None:
        member_stmt = member_stmt.where(GroupMemberRow.tenant_uuid == tenant)
    for group_id in session.execute(member_stmt).scalars():
        members[group_id] = members.get(group_id, 0) + 1
    conflicts: dict[str, int] = {}
    for group_id in session.execute(
        select(GroupBaselineRow.group_id).where(GroupBaselineRow.status == BaselineStatus.CONFLICT.value)
    ).scalars():
        conflicts[group_id] = conflicts.get(group_id, 0) + 1
    drifting: dict[str, int] = {}
    drift_stmt = select(DriftRow.group_id).where(DriftRow.state == DriftState.OPEN.value)
    if tenant is not None:
        drift_stmt = drift_stmt.where(DriftRow.tenant_uuid == tenant)
    for group_id in session.execute(drift_stmt).scalars():
        drifting[group_id] = drifting.get(group_id, 0) + 1
    keys = set(members) | set(conflicts) | set(drifting)
    return {k: (members.get(k, 0), conflicts.get(k, 0), drifting.get(k, 0)) for k in keys}


def _baseline_dict(row: GroupBaselineRow, visible: set[str] | None) -> dict[str, Any]:
    conflict = row.conflict
    if visible is not None and conflict:
        conflict = {
            "subgroups": [
                {**s, "members": [m for m in s["members"] if m in visible]}
                for s in conflict.get("subgroups", [])
            ],
            "splits": [
                {**s, "members": [m for m in s["members"] if m in visible]}
                for s in conflict.get("splits", [])
            ],
        }
    return {
        "plugin_id": row.plugin_id,
        "mode": row.mode,
        "status": row.status,
        "baseline": row.spec,
        "reason": row.reason if visible is None else _redacted_reason(row),
        "conflict": conflict or None,
        "revision": row.revision,
        "evaluated_at": iso(row.evaluated_at),
    }


def _redacted_reason(row: GroupBaselineRow) -> str:
    if row.status == BaselineStatus.CONFLICT.value:
        return "no release is eligible and clean for every member of the group: an operator decides"
    return row.reason


def group_detail(
    session: Session, settings: BaselineSettings, group_id: str, *, tenant: str | None
) -> dict[str, Any]:
    """A group: members x plugins with the baseline and each member's drift, conflicts first."""
    group = visible_group(session, settings, group_id, tenant=tenant)
    members = _members(session, group_id)
    if tenant is not None:
        members = [m for m in members if m == tenant]
    visible = None if tenant is None else set(members)
    rows = session.execute(select(GroupBaselineRow).where(GroupBaselineRow.group_id == group_id)).scalars()
    baselines = sorted(
        (_baseline_dict(r, visible) for r in rows),
        key=lambda b: (b["status"] != BaselineStatus.CONFLICT.value, b["plugin_id"]),
    )
    drift = _drift_rows(session, group_id=group_id, tenant=tenant)
    return {
        "group": group.as_dict() if tenant is None else _public(group),
        "members": _member_facts(session, members),
        "baselines": baselines,
        "installed": _installed(session, members, [b["plugin_id"] for b in baselines]),
        "drift": [drift_dict(r) for r in drift],
    }


def _member_facts(session: Session, members: list[str]) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = []
    stmt = select(TenantRow.tenant_uuid, TenantRow.tenant_key, TenantRow.name, TenantRow.core_version)
    for part in chunks(members):
        for uuid, key, name, core in session.execute(stmt.where(TenantRow.tenant_uuid.in_(part))):
            facts.append({"tenant_uuid": uuid, "tenant_key": key, "name": name, "core_version": core})
    return sorted(facts, key=lambda f: f["tenant_key"] or f["tenant_uuid"])


def _installed(session: Session, members: list[str], plugins: list[str]) -> dict[str, dict[str, str]]:
    """tenant → {plugin → installed version}, for the group's plugins."""
    wanted = set(plugins)
    found: dict[str, dict[str, str]] = {m: {} for m in members}
    stmt = select(InstallationRow.tenant_uuid, InstallationRow.plugin_id, InstallationRow.version)
    for part in chunks(members):
        for uuid, plugin_id, version in session.execute(stmt.where(InstallationRow.tenant_uuid.in_(part))):
            if plugin_id in wanted:
                found[uuid][plugin_id] = version
    return found


def _drift_rows(
    session: Session, *, group_id: str | None = None, tenant: str | None = None, state: str | None = None
) -> list[DriftRow]:
    stmt = select(DriftRow).order_by(DriftRow.group_id, DriftRow.tenant_uuid, DriftRow.plugin_id)
    if group_id is not None:
        stmt = stmt.where(DriftRow.group_id == group_id)
    if tenant is not None:
        stmt = stmt.where(DriftRow.tenant_uuid == tenant)
    if state is not None:
        stmt = stmt.where(DriftRow.state == state)
    return list(session.execute(stmt).scalars())


def list_drift(
    session: Session,
    settings: BaselineSettings,
    *,
    tenant: str | None,
    group_id: str | None = None,
    state: DriftState | None = DriftState.OPEN,
) -> list[dict[str, Any]]:
    """Drift items (open ones unless told otherwise) the caller may see."""
    if group_id is not None:
        visible_group(session, settings, group_id, tenant=tenant)
    rows = _drift_rows(session, group_id=group_id, tenant=tenant, state=state.value if state else None)
    return [drift_dict(r) for r in rows]


def baseline_of(session: Session, tenant: str, plugin_id: str) -> list[dict[str, Any]]:
    """The baselines a member's finding links to: its groups' baselines for the plugin, with its drift."""
    groups = sorted(groups_of(session, tenant))
    if not groups:
        return []
    rows = session.execute(
        select(GroupBaselineRow).where(
            GroupBaselineRow.group_id.in_(groups), GroupBaselineRow.plugin_id == plugin_id
        )
    ).scalars()
    drift = {
        r.group_id: r
        for r in _drift_rows(session, tenant=tenant, state=DriftState.OPEN.value)
        if r.plugin_id == plugin_id
    }
    return [
        {
            "group_id": r.group_id,
            **_baseline_dict(r, {tenant}),
            "drift": drift_dict(drift[r.group_id]) if r.group_id in drift else None,
        }
        for r in rows
    ]

"""Writes of groups and explicit baselines: validated, audited, versioned; no commits.

Each change re-evaluates the group in the same transaction (see `evaluation`), so an explicit
baseline that resolves a conflict, and the drift it creates or resolves, commit together with
the audit record of the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.baselines.config import GROUP_ID, BaselineSettings
from powerx_governance.baselines.derive import parse_spec
from powerx_governance.baselines.model import (
    BaselineSpecError,
    ExplicitBaseline,
    FileGroupError,
    GroupExistsError,
    GroupSource,
    GroupSpec,
    Selector,
    UnknownGroupError,
)
from powerx_governance.baselines.tables import (
    BaselineRevisionRow,
    DriftRow,
    GroupBaselineRow,
    GroupMemberRow,
    TenantGroupRow,
)
from powerx_governance.versioning.ranges import ConstraintError

AUDIT_SOURCE = "governance"


def _group_of(row: TenantGroupRow) -> GroupSpec:
    selector = Selector(tags=tuple(row.selector.get("tags", ())), plans=tuple(row.selector.get("plans", ())))
    return GroupSpec(
        id=row.id,
        name=row.name,
        route=row.route,
        select=selector,
        tenants=tuple(row.tenants),
        source=GroupSource.API,
    )


def all_groups(session: Session, settings: BaselineSettings) -> list[GroupSpec]:
    """Every group: the groups file's, then the stored ones, by id."""
    stored = [_group_of(r) for r in session.execute(select(TenantGroupRow)).scalars()]
    return sorted((*settings.file_groups, *stored), key=lambda g: g.id)


def get_group(session: Session, settings: BaselineSettings, group_id: str) -> GroupSpec:
    found = settings.file_group(group_id)
    if found is not None:
        return found
    row = session.get(TenantGroupRow, group_id)
    if row is None:
        raise UnknownGroupError(group_id)
    return _group_of(row)


def _check_new_group(spec: GroupSpec) -> None:
    if not GROUP_ID.match(spec.id):
        raise BaselineSpecError("id", "a group id is 1-64 of a-z 0-9 . _ - (first: a-z 0-9)")
    if spec.select.empty and not spec.tenants:
        raise BaselineSpecError(
            "select", "the group selects nobody: give select.tags, select.plans or tenants"
        )


def create_group(
    session: Session, settings: BaselineSettings, spec: GroupSpec, *, actor: str, now: datetime
) -> GroupSpec:
    """Store a new group (audited); GroupExistsError when the id is taken (by the file too)."""
    _check_new_group(spec)
    if settings.file_group(spec.id) is not None:
        raise GroupExistsError(spec.id, GroupSource.FILE)
    if session.get(TenantGroupRow, spec.id) is not None:
        raise GroupExistsError(spec.id, GroupSource.API)
    selector = {"tags": list(spec.select.tags), "plans": list(spec.select.plans)}
    session.add(
        TenantGroupRow(
            id=spec.id,
            name=spec.name,
            route=spec.route,
            selector=selector,
            tenants=list(spec.tenants),
            created_by=actor,
            created_at=now,
        )
    )
    session.flush()
    created = _group_of(session.get_one(TenantGroupRow, spec.id))
    record(session, _group_event("group.created", created, actor, {"after": created.as_dict()}), now)
    return created


def delete_group(
    session: Session, settings: BaselineSettings, group_id: str, *, actor: str, now: datetime
) -> None:
    """Remove an API-made group with its baselines and drift (audited); file groups stay."""
    if settings.file_group(group_id) is not None:
        raise FileGroupError(group_id)
    row = session.get(TenantGroupRow, group_id)
    if row is None:
        raise UnknownGroupError(group_id)
    before = _group_of(row)
    for table in (GroupMemberRow, GroupBaselineRow, DriftRow, BaselineRevisionRow):
        session.execute(delete(table).where(table.group_id == group_id))
    session.delete(row)
    session.flush()
    record(session, _group_event("group.deleted", before, actor, {"before": before.as_dict()}), now)


def _group_event(operation: str, group: GroupSpec, actor: str, changes: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        source=AUDIT_SOURCE,
        operation=operation,
        resource_type="tenant_group",
        resource_id=group.id,
        actor=actor,
        changes=changes,
    )


# -- explicit baselines -----------------------------------------------------------------------------


def current_explicit(
    session: Session, group_ids: list[str] | None = None
) -> dict[tuple[str, str], ExplicitBaseline]:
    """(group, plugin) → the explicit baseline in force (the newest revision, when it sets one)."""
    newest = select(
        BaselineRevisionRow.group_id,
        BaselineRevisionRow.plugin_id,
        func.max(BaselineRevisionRow.revision).label("revision"),
    ).group_by(BaselineRevisionRow.group_id, BaselineRevisionRow.plugin_id)
    if group_ids is not None:
        newest = newest.where(BaselineRevisionRow.group_id.in_(group_ids))
    latest = newest.subquery()
    stmt = select(BaselineRevisionRow).join(
        latest,
        (BaselineRevisionRow.group_id == latest.c.group_id)
        & (BaselineRevisionRow.plugin_id == latest.c.plugin_id)
        & (BaselineRevisionRow.revision == latest.c.revision),
    )
    return {
        (row.group_id, row.plugin_id): ExplicitBaseline(row.spec, row.reason, row.revision, row.actor)
        for row in session.execute(stmt).scalars()
        if row.spec is not None
    }


@dataclass(frozen=True, slots=True)
class BaselineChange:
    """An operator's change of one group's baseline for one plugin: a spec, or None for derived."""

    group_id: str
    plugin_id: str
    spec: str | None
    reason: str


def _check_change(change: BaselineChange) -> None:
    if not change.plugin_id.strip() or len(change.plugin_id) > 256:
        raise BaselineSpecError("plugin_id", "a plugin id of 1-256 characters is required")
    if not change.reason.strip():
        raise BaselineSpecError("reason", "say why (kept in the audit trail and on the baseline)")
    if change.spec is None:
        return
    if len(change.spec) > 256:
        raise BaselineSpecError("version", "at most 256 characters")
    try:
        parse_spec(change.spec)
    except ConstraintError as exc:
        raise BaselineSpecError("version", f"neither a version nor a constraint ({exc.detail})") from exc


def change_baseline(
    session: Session, settings: BaselineSettings, change: BaselineChange, *, actor: str, now: datetime
) -> int:
    """Record the next revision of an explicit baseline (audited); returns its number.

    The caller re-evaluates the group in the same transaction (`evaluation.evaluate`).
    """
    _check_change(change)
    get_group(session, settings, change.group_id)
    key = (change.group_id, change.plugin_id)
    before = current_explicit(session, [change.group_id]).get(key)
    newest = session.execute(
        select(func.max(BaselineRevisionRow.revision)).where(
            BaselineRevisionRow.group_id == change.group_id, BaselineRevisionRow.plugin_id == change.plugin_id
        )
    ).scalar_one_or_none()
    revision = (newest or 0) + 1
    session.add(
        BaselineRevisionRow(
            group_id=change.group_id,
            plugin_id=change.plugin_id,
            revision=revision,
            spec=change.spec,
            reason=change.reason,
            actor=actor,
            created_at=now,
        )
    )
    session.flush()
    event = AuditEvent(
        source=AUDIT_SOURCE,
        operation="baseline.set" if change.spec is not None else "baseline.derived",
        resource_type="group_baseline",
        resource_id=f"{change.group_id}/{change.plugin_id}",
        actor=actor,
        changes={
            "before": {
                "spec": before.spec if before else None,
                "revision": before.revision if before else None,
            },
            "after": {"spec": change.spec, "revision": revision},
        },
        meta={"reason": change.reason},
    )
    record(session, event, now)
    return revision


def revisions(session: Session, group_id: str, plugin_id: str) -> list[dict[str, Any]]:
    """Every revision of a group's explicit baseline for a plugin, oldest first."""
    stmt = (
        select(BaselineRevisionRow)
        .where(BaselineRevisionRow.group_id == group_id, BaselineRevisionRow.plugin_id == plugin_id)
        .order_by(BaselineRevisionRow.revision)
    )
    return [
        {
            "revision": r.revision,
            "spec": r.spec,
            "mode": "explicit" if r.spec is not None else "derived",
            "reason": r.reason,
            "actor": r.actor,
            "created_at": r.created_at,
        }
        for r in session.execute(stmt).scalars()
    ]

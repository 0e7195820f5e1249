"""Reads of the stored inventory shared by the API, the console and the CLI: tenants by name, key or
tag, their labels and counts, one installation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, cast, exists, func, literal, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from powerx_governance.inventory.tables import InstallationRow, TenantRow


def tenants_named(session: Session, name: str) -> list[str]:
    """The uuids of the stored tenants `name` names, the way the CLI reads `--tenant`: the tenant
    with that uuid, else every tenant with that key (sorted; more than one means the key is ambiguous)."""
    if session.get(TenantRow, name) is not None:
        return [name]
    stmt = select(TenantRow.tenant_uuid).where(TenantRow.tenant_key == name).order_by(TenantRow.tenant_uuid)
    return list(session.execute(stmt).scalars())


# -- tags ---------------------------------------------------------------------------------------


def _carries(session: Session, tag: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":  # jsonb containment
        return TenantRow.tags.op("@>")(cast(literal(json.dumps([tag])), JSONB))
    values = func.json_each(TenantRow.tags).table_valued("value")
    return exists(select(literal(1)).select_from(values).where(values.c.value == tag))


def tags_match_sql(session: Session, wanted: Sequence[str]) -> ColumnElement[bool]:
    """`domain.tags_match` on the stored tenants: true when `wanted` is empty or the tenant carries
    one of its tags."""
    if not wanted:
        return true()
    return or_(*(_carries(session, tag) for tag in dict.fromkeys(wanted)))


def tagged_tenants(session: Session, wanted: Sequence[str]) -> Select[str]:
    """The uuids of the tenants `domain.tags_match` selects, for an `IN (…)` test."""
    return select(TenantRow.tenant_uuid).where(tags_match_sql(session, wanted))


def known_tags(session: Session, *, tenant_uuid: str | None, limit: int = 200) -> list[str]:
    """Tags for a filter's suggestions: the tenant's own, or a bounded sample of the fleet's."""
    stmt = select(TenantRow.tags)
    stmt = stmt.where(TenantRow.tenant_uuid == tenant_uuid) if tenant_uuid else stmt.limit(2000)
    found = {str(tag) for tags in session.execute(stmt).scalars() for tag in tags}
    return sorted(found)[:limit]


# -- labels -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantLabel:
    tenant_uuid: str
    tenant_key: str | None
    name: str | None
    tags: tuple[str, ...] = ()
    plan: str | None = None
    core_version: str | None = None
    fetched_at: datetime | None = None
    scanned_at: datetime | None = None

    @property
    def display(self) -> str:
        return self.name or self.tenant_key or self.tenant_uuid


def _label(row: TenantRow) -> TenantLabel:
    return TenantLabel(
        row.tenant_uuid,
        row.tenant_key,
        row.name,
        tuple(str(t) for t in row.tags),
        row.plan,
        row.core_version,
        row.fetched_at,
        row.scanned_at,
    )


def tenant(session: Session, tenant_uuid: str) -> TenantLabel | None:
    row = session.get(TenantRow, tenant_uuid)
    return _label(row) if row is not None else None


def tenant_labels(session: Session, tenant_uuids: Sequence[str]) -> dict[str, TenantLabel]:
    if not tenant_uuids:
        return {}
    rows = session.execute(select(TenantRow).where(TenantRow.tenant_uuid.in_(sorted(set(tenant_uuids)))))
    return {row.tenant_uuid: _label(row) for row in rows.scalars()}


def _escape_like(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\': its %, _ and \\ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_tenants(session: Session, query: str, *, limit: int = 25) -> list[TenantLabel]:
    """Tenants whose uuid, key or name starts with `query` (case-insensitive), by key then uuid."""
    prefix = _escape_like(query.strip().lower()) + "%"
    stmt = (
        select(TenantRow)
        .where(
            or_(
                func.lower(TenantRow.tenant_uuid).like(prefix, escape="\\"),
                func.lower(TenantRow.tenant_key).like(prefix, escape="\\"),
                func.lower(TenantRow.name).like(prefix, escape="\\"),
            )
        )
        .order_by(TenantRow.tenant_key, TenantRow.tenant_uuid)
        .limit(limit)
    )
    return [_label(r) for r in session.execute(stmt).scalars()]


# -- counts and installations ---------------------------------------------------------------------


def _count(session: Session, column: InstrumentedAttribute[str], tenant_uuid: str | None) -> int:
    stmt = select(func.count()).select_from(column.class_)
    if tenant_uuid is not None:
        stmt = stmt.where(column == tenant_uuid)
    return int(session.scalar(stmt) or 0)


def tenant_count(session: Session, *, tenant_uuid: str | None) -> int:
    """Stored tenants: the fleet's (None), or 1/0 for one tenant."""
    return _count(session, TenantRow.tenant_uuid, tenant_uuid)


def installation_count(session: Session, *, tenant_uuid: str | None) -> int:
    """Stored installations of the fleet (None) or of one tenant."""
    return _count(session, InstallationRow.tenant_uuid, tenant_uuid)


def installation(session: Session, *, tenant_uuid: str, plugin_id: str) -> InstallationRow | None:
    return session.get(InstallationRow, (tenant_uuid, plugin_id))

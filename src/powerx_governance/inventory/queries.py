"""Reads of the stored inventory shared by the API, the console and the CLI."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.inventory.tables import TenantRow


def tenants_named(session: Session, name: str) -> list[str]:
    """The uuids of the stored tenants `name` names, the way the CLI reads `--tenant`: the tenant
    with that uuid, else every tenant with that key (sorted; more than one means the key is ambiguous)."""
    if session.get(TenantRow, name) is not None:
        return [name]
    stmt = select(TenantRow.tenant_uuid).where(TenantRow.tenant_key == name).order_by(TenantRow.tenant_uuid)
    return list(session.execute(stmt).scalars())

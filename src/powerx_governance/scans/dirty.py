"""What a scan marks clean: only what it evaluated, and only while it is still what it evaluated.

A tenant's dirty mark is cleared by the work that evaluated its manifest, on the condition that the
stored manifest is still the one read (its hash): a manifest pushed while the work ran keeps the
tenant dirty for the next delta scan. The hashes are read before the manifests, so a push landing
between the two reads leaves the tenant dirty (evaluated again, never lost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from powerx_governance.db.chunks import among, chunks
from powerx_governance.inventory.tables import TenantRow


def dirty_manifests(session: Session, tenant_uuids: Sequence[str]) -> dict[str, str]:
    """tenant → stored manifest hash, for those of `tenant_uuids` marked dirty (read before loading them)."""
    found: dict[str, str] = {}
    stmt = select(TenantRow.tenant_uuid, TenantRow.manifest_hash).where(TenantRow.dirty)
    for part in chunks(list(tenant_uuids)):
        found.update(
            session.connection().execute(stmt.where(among(session, TenantRow.tenant_uuid, part))).all()
        )
    return found


def mark_evaluated(session: Session, evaluated: Mapping[str, str]) -> None:
    """Clear the dirty marks of tenants whose stored manifest still has the hash that was evaluated."""
    if not evaluated:
        return
    table = cast(Table, TenantRow.__table__)  # Core: one executemany, not an ORM bulk update by key
    stmt = (
        update(table)
        .where(table.c.tenant_uuid == bindparam("b_tenant"), table.c.manifest_hash == bindparam("b_hash"))
        .values(dirty=False)
    )
    rows = [{"b_tenant": tenant, "b_hash": digest} for tenant, digest in evaluated.items()]
    for part in chunks(rows):
        session.connection().execute(stmt, list(part))

"""`db.chunks.among` on both stores: a list of keys (one array on PostgreSQL, an `IN` list on SQLite)
selects, updates and deletes the rows an `IN` list names, keys of every column type, unknown keys
and keys that need quoting included."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from powerx_governance.db.chunks import among
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import ServiceFactory, scanned_service


def test_keys_select_what_in_lists_select(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    with service.factory() as session:
        tenants = sorted(session.execute(select(TenantRow.tenant_uuid)).scalars())
        ids = sorted(session.execute(select(RecommendationRow.id)).scalars())
        asked: dict[Any, list[Any]] = {
            TenantRow.tenant_uuid: [*tenants[::2], "no-such-tenant", 'o\'brien, "quoted" {a,b}'],
            RecommendationRow.id: [*ids[1::3], -1],
        }
        for column, keys in asked.items():
            by_array = set(session.execute(select(column).where(among(session, column, keys))).scalars())
            by_list = set(session.execute(select(column).where(column.in_(keys))).scalars())
            assert by_array == by_list
            assert by_array == set(keys[:-2] if column is TenantRow.tenant_uuid else keys[:-1])
    assert len(ids) > 3
    assert len(tenants) > 2


def test_keys_name_the_rows_written(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    with service.factory() as session:
        tenants = sorted(session.execute(select(TenantRow.tenant_uuid)).scalars())
    cleared, kept = tenants[:2], tenants[2:]
    with transaction(service.factory) as session:
        session.execute(update(TenantRow).values(dirty=True))
        session.execute(
            update(TenantRow)
            .where(among(session, TenantRow.tenant_uuid, [*cleared, "nobody"]))
            .values(dirty=False)
        )
        session.execute(delete(InstallationRow).where(among(session, InstallationRow.tenant_uuid, cleared)))
    with service.factory() as session:
        dirty = set(session.execute(select(TenantRow.tenant_uuid).where(TenantRow.dirty)).scalars())
        running = set(session.execute(select(InstallationRow.tenant_uuid)).scalars())
    assert dirty == set(kept)
    assert not running & set(cleared)
    assert running

"""`db.chunks.rows_for` on both stores: many tenants read as one sequential read, filtered, give what
their `IN` lookups give (manifests in the order asked for, installations, kept sums)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from powerx_governance.db import chunks
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.recommendations import store as recommendations_store
from tests.conftest import ServiceFactory, scanned_service


def test_reading_every_row_selects_what_lookups_select(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = scanned_service(make_service)
    with service.factory() as session:
        tenants = sorted(inventory_store.existing_hashes(session, None))
        asked = tenants[::2][::-1]  # some of them, in an order of their own
        plugins = sorted(set(session.execute(select(InstallationRow.plugin_id)).scalars()))[:3]

        def reads() -> tuple[object, ...]:
            return (
                inventory_store.load_manifests(session, asked),
                inventory_store.load_manifests(session, tenants),
                inventory_store.load_installations_of(session, plugins),
                inventory_store.load_installations_of(session, plugins, asked),
                recommendations_store.kept_tenant_findings(session, asked),
                recommendations_store.kept_tenant_findings(session, tenants),
            )

        by_lookup = reads()
        monkeypatch.setattr(chunks, "READ_ALL_ABOVE", 0)
        by_reading_all = reads()
        manifests = inventory_store.load_manifests(session, asked)
    assert by_reading_all == by_lookup
    assert [m.tenant_uuid for m in manifests] == asked
    assert all(by_lookup)


def test_rows_read_through_the_driver_are_the_rows_sqlalchemy_reads(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service)
    statements = (
        select(*recommendations_store._KEPT),  # the kept sums, as a push reads them
        select(*inventory_store._TENANT_COLUMNS),  # tenants, as a delta reads them
    )
    with service.factory() as session:
        for stmt in statements:
            read = [tuple(row) for row in chunks.read_rows(session, stmt)]
            assert read == [tuple(row) for row in session.connection().execute(stmt)]
            assert read

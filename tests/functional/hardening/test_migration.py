"""Migrations on both stores: keys recorded before 0008 keep their uniqueness under the scope `legacy`;
0013 leaves room in the pages of the rows a push rewrites, 0014 in those of the tenants a full scan
stamps (PostgreSQL), and each goes back."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select, text

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.db.migrate import _config
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.service import DecisionRequest, decide
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.service import GovernanceService
from tests.conftest import ServiceFactory
from tests.functional.console.support import SANDBOX, recommendation_id, scanned_service

OPERATOR = Principal(7, "ops", Role.OPERATOR, None)


def test_keys_recorded_before_0008_stay_unique_and_match_no_new_caller(make_service: ServiceFactory) -> None:
    service = scanned_service(make_service, POWERX_WORKER="0")
    rec_id = recommendation_id(service, SANDBOX, "com.powerx.plugins.crm")
    request = DecisionRequest(rec_id, 1, DecisionKind.UPGRADE, idempotency_key="before-0008")
    with transaction(service.factory) as session:
        decide(session, service.notifications, request, OPERATOR, service.clock())
    config = _config(service.engine)
    with service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        command.upgrade(config, "head")
    with transaction(service.factory) as session:
        [legacy] = session.execute(select(DecisionRow)).scalars()
        assert (legacy.idempotency_key, legacy.idempotency_scope) == ("before-0008", "legacy")
        row, created = decide(session, service.notifications, request, OPERATOR, service.clock())
    assert created
    assert (row.idempotency_scope, row.id != legacy.id) == ("token:7", True)


def _fillfactors(
    service: GovernanceService, tables: tuple[str, ...] = ("recommendations", "tenant_findings")
) -> dict[str, list[str] | None]:
    if service.engine.dialect.name != "postgresql":
        return {}
    with service.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT relname, reloptions FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
                " AND relname = ANY(:tables)"
            ),
            {"tables": list(tables)},
        )
        return {str(name): options for name, options in rows}


def test_0013_sets_the_fillfactor_of_the_rows_a_push_rewrites_and_resets_it(
    make_service: ServiceFactory,
) -> None:
    service = make_service(POWERX_WORKER="0")
    postgresql = service.engine.dialect.name == "postgresql"
    room = {"recommendations": ["fillfactor=85"], "tenant_findings": ["fillfactor=50"]}
    assert _fillfactors(service) == (room if postgresql else {})
    config = _config(service.engine)
    with service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
    assert _fillfactors(service) == ({"recommendations": None, "tenant_findings": None} if postgresql else {})
    with service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert _fillfactors(service) == (room if postgresql else {})


def test_0014_sets_the_fillfactor_of_the_tenants_a_full_scan_stamps_and_resets_it(
    make_service: ServiceFactory,
) -> None:
    service = make_service(POWERX_WORKER="0")
    postgresql = service.engine.dialect.name == "postgresql"
    room = {"tenants": ["fillfactor=50"]} if postgresql else {}
    assert _fillfactors(service, ("tenants",)) == room
    config = _config(service.engine)
    with service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0013")
    assert _fillfactors(service, ("tenants",)) == ({"tenants": None} if postgresql else {})
    assert _fillfactors(service) == (
        {"recommendations": ["fillfactor=85"], "tenant_findings": ["fillfactor=50"]} if postgresql else {}
    )
    with service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    assert _fillfactors(service, ("tenants",)) == room

"""The synthetic tenants of `powerx version smoke`, and their removal when a smoke run ends.

A smoke tenant's uuid starts with `powerx-smoke-`; only such tenants can be removed, with
everything the run made for them (recommendations, decisions, notifications, console cards,
events), so fleet counts and figures are what they were before the run. The audit trail is
append-only: the run's audit events stay, marked by the smoke tenant and correlation id, and
the removal itself is audited (`smoke.cleaned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.catalog import store as catalog_store
from powerx_governance.db.rows import rowcount
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.errors import InvalidError, NotFoundError
from powerx_governance.events.tables import EventRow
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.notifications.tables import (
    ConsoleCardRow,
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow

SMOKE_PREFIX: Final = "powerx-smoke-"


class SmokeTenantError(InvalidError, ValueError):
    """The tenant is not a smoke tenant: nothing is removed."""

    title = "Not a smoke tenant"

    field = "tenant_uuid"


class SmokeTenantNotFoundError(NotFoundError, LookupError):
    """No such smoke tenant (already removed, or never made)."""


@dataclass(frozen=True)
class Cleanup:
    actor: str
    correlation_id: str | None = None


def _tenant_tables() -> list[Any]:
    """Rows keyed by tenant, children before parents."""
    return [
        ConsoleCardRow,
        NotificationEntryRow,
        NotificationEventRow,
        NotificationDeliveryRow,
        EventRow,
        DecisionRow,
    ]


def _delete(session: Session, table: Any, tenant_uuid: str) -> int:
    result = session.execute(delete(table).where(table.tenant_uuid == tenant_uuid))
    return rowcount(result)


def remove_smoke_tenant(
    session: Session, tenant_uuid: str, cleanup: Cleanup, now: datetime
) -> dict[str, int]:
    """Remove a smoke tenant and everything stored for it; the rows removed per table."""
    if not tenant_uuid.startswith(SMOKE_PREFIX):
        raise SmokeTenantError(
            f"{tenant_uuid!r} is not a smoke tenant (its uuid must start with {SMOKE_PREFIX!r})"
        )
    if session.get(TenantRow, tenant_uuid) is None:
        raise SmokeTenantNotFoundError(f"no smoke tenant {tenant_uuid!r}")
    plugins = list(
        session.execute(
            select(InstallationRow.plugin_id).where(InstallationRow.tenant_uuid == tenant_uuid)
        ).scalars()
    )
    recommendations = select(RecommendationRow.id).where(RecommendationRow.tenant_uuid == tenant_uuid)
    session.execute(
        delete(RecommendationRevisionRow).where(
            RecommendationRevisionRow.recommendation_id.in_(recommendations)
        )
    )
    removed = {
        table.__tablename__: _delete(session, table, tenant_uuid)
        for table in (*_tenant_tables(), RecommendationRow, InstallationRow, TenantRow)
    }
    removed["plugins"] = len(catalog_store.drop_unheld_plugins(session, plugins))  # its synthetic plugin
    event = AuditEvent(
        source="governance",
        operation="smoke.cleaned",
        resource_type="tenant",
        resource_id=tenant_uuid,
        actor=cleanup.actor,
        tenant_uuid=tenant_uuid,
        correlation_id=cleanup.correlation_id,
        meta={"smoke": True, "removed": removed},
    )
    record(session, event, now)
    return removed

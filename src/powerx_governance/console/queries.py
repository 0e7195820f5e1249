"""What the console reads, composed from the components' query modules; it runs no SQL of its own.

Everything here is scoped by an explicit keyword-only `tenant_uuid` (None: the fleet, for
operators only). The figures are the ones the components give the API and the CLI: one meaning
per number, one lister and cursor, one definition of "past SLA".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from powerx_governance.db.weeks import WeekValue, Window
from powerx_governance.decisions import queries as decisions
from powerx_governance.inventory import queries as inventory
from powerx_governance.inventory.queries import TenantLabel, tenant
from powerx_governance.recommendations import queries as recommendations
from powerx_governance.recommendations.queries import Exposure
from powerx_governance.scans.queries import LastScan, last_scan


@dataclass(frozen=True, slots=True)
class Posture:
    """What the overview's tiles show, for the fleet or one tenant."""

    tenants: int
    installations: int
    last_scan: LastScan | None
    exposure: Exposure


def posture(session: Session, *, tenant_uuid: str | None, now: datetime, top: int = 10) -> Posture:
    """Tenants, installations, the last fleet scan, and the exposure of the unresolved recommendations."""
    return Posture(
        tenants=inventory.tenant_count(session, tenant_uuid=tenant_uuid),
        installations=inventory.installation_count(session, tenant_uuid=tenant_uuid),
        last_scan=last_scan(session, tenant_uuid=tenant_uuid),
        exposure=recommendations.exposure(session, tenant_uuid=tenant_uuid, now=now, top=top),
    )


@dataclass(frozen=True, slots=True)
class TenantMatch:
    label: TenantLabel
    open: int
    critical: int


def find_tenants(session: Session, query: str, *, limit: int = 25) -> list[TenantMatch]:
    """Tenants whose uuid, key or name starts with `query`, with their open and critical counts."""
    labels = inventory.find_tenants(session, query, limit=limit)
    counts = recommendations.open_counts(session, [label.tenant_uuid for label in labels])
    return [TenantMatch(label, *counts.get(label.tenant_uuid, (0, 0))) for label in labels]


@dataclass(frozen=True, slots=True)
class Adoption:
    """Trend figures over `weeks` weeks ending now, for the fleet or one tenant."""

    start: datetime
    weeks: int
    accept_rate: float | None
    accept_weekly: list[WeekValue]
    decisions_weekly: dict[str, list[int]]
    ignores_by_scope: list[tuple[str, int]]
    ignores_by_reason: list[tuple[str, int]]
    patch_hours_weekly: list[WeekValue]
    sla_hit_weekly: list[WeekValue]
    sla_hit_rate: float | None
    sla_counted: int

    def week_start(self, week: int) -> datetime:
        return self.start + timedelta(weeks=week)


def adoption(session: Session, *, tenant_uuid: str | None, now: datetime, weeks: int = 12) -> Adoption:
    window = Window(now, weeks)
    decided = decisions.decision_trends(session, tenant_uuid=tenant_uuid, window=window)
    ignores = decisions.ignore_breakdown(session, tenant_uuid=tenant_uuid)
    patches = recommendations.critical_patch_trends(session, tenant_uuid=tenant_uuid, window=window)
    return Adoption(
        start=window.start,
        weeks=weeks,
        accept_rate=decisions.accept_rate(session, tenant_uuid=tenant_uuid),
        accept_weekly=decided.accept_weekly,
        decisions_weekly=decided.by_kind_weekly,
        ignores_by_scope=ignores.by_scope,
        ignores_by_reason=ignores.by_reason,
        patch_hours_weekly=patches.hours_weekly,
        sla_hit_weekly=patches.sla_hit_weekly,
        sla_hit_rate=patches.sla_hit_rate,
        sla_counted=patches.sla_counted,
    )


# console/deps.py reads the signed-in user's tenant label through this module.
__all__ = [
    "Adoption",
    "Posture",
    "TenantLabel",
    "TenantMatch",
    "adoption",
    "find_tenants",
    "posture",
    "tenant",
]

"""Decisions at run time: the change hook (decision bookkeeping), the periodic checks, the SLA breach task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from powerx_governance.db.session import transaction
from powerx_governance.decisions import followups, sla
from powerx_governance.decisions.queries import accept_rate
from powerx_governance.kernel import ChangeStage, Contribution, InstallContext
from powerx_governance.notifications.runtime import NotificationRuntime

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService


def install(ctx: InstallContext) -> Contribution:
    """Expiries and SLA checks on every tick, the `sla_breach` task, and the change hook that fulfils,
    breaks or supersedes the decisions standing on changed recommendations."""
    notifications = ctx.require(NotificationRuntime)
    host = ctx.host

    def periodic(service: GovernanceService) -> None:
        now = service.clock()
        with transaction(service.factory) as session:
            sla.check(session, notifications, now)
            rate = accept_rate(session)
        if rate is not None:
            service.metrics.recommendation_accept_ratio.set(rate)

    def breach(payload: dict[str, Any]) -> None:
        with transaction(host.factory) as session:
            recorded = sla.record_breach(session, notifications, payload, host.clock())
        if recorded:
            host.metrics.sla_breaches_total.labels(kind=recorded["kind"]).inc()

    return Contribution(
        tasks={sla.SLA_TASK: breach},
        periodic=(periodic,),
        change_hook=followups.change_hook(notifications, host.catalog_cache.index),
        change_stage=ChangeStage.DECIDE,
    )

"""Wiring decisions into the service: periodic follow-ups, the SLA breach task (the change hook is
given to the scan runtime by `service._change_hooks`)."""

from __future__ import annotations

from typing import Any

from powerx_governance.db.session import transaction
from powerx_governance.decisions import followups
from powerx_governance.service import GovernanceService


def install(service: GovernanceService) -> None:
    service.periodic.append(_periodic)
    service.tasks[followups.SLA_TASK] = lambda payload: _breach(service, payload)


def _periodic(service: GovernanceService) -> None:
    now = service.clock()
    with transaction(service.factory) as session:
        followups.check(session, now)
        rate = followups.accept_rate(session)
    if rate is not None:
        service.metrics.recommendation_accept_ratio.set(rate)


def _breach(service: GovernanceService, payload: dict[str, Any]) -> None:
    with transaction(service.factory) as session:
        recorded = followups.record_breach(session, payload, service.clock())
    if recorded:
        service.metrics.sla_breaches_total.labels(kind=recorded["kind"]).inc()

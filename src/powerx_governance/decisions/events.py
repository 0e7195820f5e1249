"""The CloudEvents a decision's life produces: taken, a recommendation reopened by its end, an SLA breach.

Decisions own these facts, so they build the events here and hand them to the events log
(`events.outbox.record`), which knows nothing of decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.events.model import EventType
from powerx_governance.events.outbox import NewEvent, record, subject
from powerx_governance.recommendations.model import RecommendationChange
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.times import iso


def decision_event(decision: DecisionRow) -> NewEvent:
    """The `plugin.version.decision` of an upgrade, schedule or ignore decision just taken."""
    data = {
        "decision_id": decision.id,
        "decision": decision.kind,
        "tenant_uuid": decision.tenant_uuid,
        "plugin_id": decision.plugin_id,
        "recommendation_id": decision.recommendation_id,
        "revision": decision.revision,
        "from_version": decision.from_version,
        "target_version": decision.target_version,
        "scheduled_for": iso(decision.scheduled_for),
        "until": iso(decision.until),
        "scope": decision.scope,
        "reason": decision.reason,
        "approver": decision.approver,
        "actor": decision.actor,
        "decided_at": iso(decision.created_at),
        "batch_id": decision.batch_id,
        "correlation_id": decision.correlation_id,
    }
    tenant = decision.tenant_uuid
    return NewEvent(EventType.DECISION, tenant, subject(tenant, decision.plugin_id), data)


def record_decisions(session: Session, decisions: Sequence[DecisionRow], now: datetime) -> int:
    """One `plugin.version.decision` per decision just taken, recorded together."""
    return record(session, [decision_event(d) for d in decisions], now)


def record_sla_breach(session: Session, rec: RecommendationRow, breach: dict[str, Any], now: datetime) -> int:
    """One `plugin.version.sla_breach`: a critical patch past its deadline, or a missed schedule."""
    data = {
        "breach": breach.get("kind"),
        "tenant_uuid": rec.tenant_uuid,
        "plugin_id": rec.plugin_id,
        "recommendation_id": rec.id,
        "revision": rec.revision,
        "state": rec.state,
        "current_version": rec.current_version,
        "target_version": rec.target_version,
        "risk_level": rec.risk_level,
        "critical_patch": rec.critical_patch,
        "sla_deadline": breach.get("sla_deadline", iso(rec.sla_deadline)),
        "scheduled_for": breach.get("scheduled_for"),
        "decision_id": breach.get("decision_id"),
        "breached_at": iso(now),
    }
    tenant = rec.tenant_uuid
    return record(
        session, [NewEvent(EventType.SLA_BREACH, tenant, subject(tenant, rec.plugin_id), data)], now
    )


def record_reopened(
    session: Session, rec: RecommendationRow, previous_state: str, decision: DecisionRow, now: datetime
) -> int:
    """One `plugin.version.alert` (change `reopened`) for a recommendation a decision's end reopened."""
    data = {
        "tenant_uuid": rec.tenant_uuid,
        "plugin_id": rec.plugin_id,
        "recommendation_id": rec.id,
        "revision": rec.revision,
        "change": RecommendationChange.REOPENED.value,
        "previous_state": previous_state,
        "current_version": rec.current_version,
        "target_version": rec.target_version,
        "latest_version": rec.latest_version,
        "risk_level": rec.risk_level,
        "priority": rec.priority,
        "action": rec.action,
        "critical_patch": rec.critical_patch,
        "sla_deadline": iso(rec.sla_deadline),
        "decision": {
            "decision_id": decision.id,
            "decision": decision.kind,
            "state": decision.state,
            "target_version": decision.target_version,
            "reason": decision.end_reason,
        },
    }
    tenant = rec.tenant_uuid
    return record(session, [NewEvent(EventType.ALERT, tenant, subject(tenant, rec.plugin_id), data)], now)

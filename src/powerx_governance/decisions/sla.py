"""Decisions over time: ignores that expire and SLA breaches, checked at every scheduler tick.

A breach is identified by what it is about, never by revision numbers, policy versions or flag
state: (recommendation, kind, deadline) for a critical patch past its SLA deadline, the decision
for a missed schedule. That identity is the job's idempotency key and the notification's dedupe
key, and the job records nothing when the audit trail already holds that breach, so it is
recorded (audit, notification, event, metric) exactly once however many ticks, instances, flag
switches, policy versions or re-scans see it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.decisions.events import record_sla_breach
from powerx_governance.decisions.followups import end, end_and_announce
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.jobs import queue
from powerx_governance.notifications.service import NotificationRuntime, notify_sla_breach
from powerx_governance.recommendations.queries import critical_patches_past_sla
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.times import iso

SLA_TASK = "sla_breach"
CRITICAL_PAST_DEADLINE: Final = "critical_past_deadline"


def _expire_ignores(session: Session, runtime: NotificationRuntime, now: datetime) -> int:
    stmt = select(DecisionRow).where(
        DecisionRow.state == DecisionState.ACTIVE.value,
        DecisionRow.kind == DecisionKind.IGNORE.value,
        DecisionRow.until.is_not(None),
        DecisionRow.until <= now,
    )
    expired = list(session.execute(stmt).scalars())
    for decision in expired:
        reason = f"the ignore expired at {iso(decision.until)}"
        end_and_announce(session, runtime, decision, DecisionState.EXPIRED, reason, now)
    return len(expired)


def _critical_key(rec_id: int, deadline: str | None) -> str:
    return f"critical:{rec_id}:{deadline}"


def _queue_breaches(session: Session, now: datetime) -> int:
    """Queue one breach job per missed schedule and per (critical patch, SLA deadline) passed."""
    queued = 0
    missed = select(DecisionRow.id).where(
        DecisionRow.state == DecisionState.ACTIVE.value,
        DecisionRow.kind == DecisionKind.SCHEDULE.value,
        DecisionRow.scheduled_for <= now,
    )
    for decision_id in session.execute(missed).scalars():
        queued += queue.enqueue(
            session, SLA_TASK, {"decision_id": decision_id}, key=f"sla:schedule:{decision_id}", now=now
        )
    for late in critical_patches_past_sla(session, now=now):
        deadline = iso(late.sla_deadline)
        payload = {"recommendation_id": late.recommendation_id, "sla_deadline": deadline}
        key = f"sla:{_critical_key(late.recommendation_id, deadline)}"
        queued += queue.enqueue(session, SLA_TASK, payload, key=key, now=now)
    return queued


def check(session: Session, runtime: NotificationRuntime, now: datetime) -> dict[str, int]:
    """The periodic follow-up: expire ignores, queue SLA breaches."""
    return {
        "expired": _expire_ignores(session, runtime, now),
        "breaches_queued": _queue_breaches(session, now),
    }


def _recorded(session: Session, rec: RecommendationRow, deadline: str) -> bool:
    """The audit trail already holds this (recommendation, critical_past_deadline, deadline) breach."""
    stmt = select(AuditEventRow.meta).where(
        AuditEventRow.tenant_uuid == rec.tenant_uuid,
        AuditEventRow.operation == "sla.breach",
        AuditEventRow.resource_id == str(rec.id),
    )
    return any(
        meta.get("kind") == CRITICAL_PAST_DEADLINE and meta.get("sla_deadline") == deadline
        for meta in session.execute(stmt).scalars()
    )


def _critical_breach(
    session: Session, payload: dict[str, Any], now: datetime
) -> tuple[RecommendationRow, dict[str, Any]] | None:
    """The breach a check saw (its deadline passed while the critical patch was open), unless recorded."""
    rec = session.get_one(RecommendationRow, payload["recommendation_id"])
    deadline = payload.get("sla_deadline")
    if deadline is None and rec.sla_deadline is not None and rec.sla_deadline <= now:
        deadline = iso(rec.sla_deadline)  # a job queued before breaches were keyed on their deadline
    if deadline is None or _recorded(session, rec, deadline):
        return None
    return rec, {"kind": CRITICAL_PAST_DEADLINE, "sla_deadline": deadline}


def _missed_schedule(
    session: Session, payload: dict[str, Any], now: datetime
) -> tuple[RecommendationRow, dict[str, Any]] | None:
    decision = session.get_one(DecisionRow, payload["decision_id"])
    if decision.state != DecisionState.ACTIVE.value:
        return None
    rec = session.get_one(RecommendationRow, decision.recommendation_id)
    detail = {
        "kind": "schedule_missed",
        "scheduled_for": iso(decision.scheduled_for),
        "decision_id": decision.id,
    }
    end(
        session,
        decision,
        DecisionState.BREACHED,
        "the scheduled upgrade time passed without the target reached",
        now,
        reopen=True,
        extra=detail,
    )
    return rec, detail


def record_breach(
    session: Session, runtime: NotificationRuntime, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    """The `sla_breach` job: audit the breach (and close a missed schedule); returns what it recorded."""
    found = (
        _missed_schedule(session, payload, now)
        if "decision_id" in payload
        else _critical_breach(session, payload, now)
    )
    if found is None:
        return {}
    rec, detail = found
    record(
        session,
        AuditEvent(
            source="governance",
            operation="sla.breach",
            resource_type="recommendation",
            resource_id=str(rec.id),
            actor="system",
            tenant_uuid=rec.tenant_uuid,
            severity="critical" if rec.critical_patch else "warning",
            changes={"after": {"state": rec.state, "current_version": rec.current_version}},
            meta={
                **detail,
                "plugin_id": rec.plugin_id,
                "target_version": rec.target_version,
                "risk_level": rec.risk_level,
                "revision": rec.revision,
            },
        ),
        now,
    )
    notify_sla_breach(
        session,
        runtime,
        recommendation_id=rec.id,
        breach=str(detail["kind"]),
        breach_key=_breach_key(payload, detail),
        now=now,
        sla_deadline=_parsed(detail.get("sla_deadline")),
        scheduled_for=_scheduled(payload, session),
        decision_id=payload.get("decision_id"),
    )
    record_sla_breach(session, rec, detail, now)
    return {**detail, "recommendation_id": rec.id, "tenant_uuid": rec.tenant_uuid, "plugin_id": rec.plugin_id}


def _parsed(moment: str | None) -> datetime | None:
    return None if moment is None else datetime.fromisoformat(moment)


def _breach_key(payload: dict[str, Any], detail: dict[str, Any]) -> str:
    if "decision_id" in payload:
        return f"schedule:{payload['decision_id']}"
    return _critical_key(payload["recommendation_id"], detail["sla_deadline"])


def _scheduled(payload: dict[str, Any], session: Session) -> datetime | None:
    if "decision_id" not in payload:
        return None
    return session.get_one(DecisionRow, payload["decision_id"]).scheduled_for

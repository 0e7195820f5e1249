"""What happens to decisions afterwards: fulfilment, broken and expired ignores, SLA breaches.

`on_recommendation_changes` runs inside the transaction that persists a scan's changes;
`check` runs at every scheduler tick. Breaches go through the job queue with one idempotency
key per breach, so a breach is recorded (audit, notification, metric) exactly once however
many ticks or instances see it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.decisions.tables import DecisionKind, DecisionRow, DecisionState, IgnoreScope
from powerx_governance.domain import Severity
from powerx_governance.events.outbox import record_sla_breach
from powerx_governance.jobs import queue
from powerx_governance.notifications.service import notify_ignore_broken, notify_sla_breach
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import (
    RecommendationChange,
    RecommendationRow,
    RecommendationState,
)
from powerx_governance.scans.report import iso

SLA_TASK = "sla_breach"
_OPEN_STATES = (
    RecommendationState.OPEN.value,
    RecommendationState.DECIDED.value,
    RecommendationState.IGNORED.value,
)


def _active(session: Session, rec_ids: list[int]) -> dict[int, DecisionRow]:
    if not rec_ids:
        return {}
    stmt = select(DecisionRow).where(
        DecisionRow.recommendation_id.in_(rec_ids), DecisionRow.state == DecisionState.ACTIVE.value
    )
    return {d.recommendation_id: d for d in session.execute(stmt).scalars()}


def _end(
    session: Session,
    decision: DecisionRow,
    state: DecisionState,
    reason: str,
    now: datetime,
    *,
    reopen: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    """Close a decision, optionally reopen its recommendation, and audit it (actor `system`)."""
    decision.state, decision.ended_at, decision.end_reason = state.value, now, reason
    rec = session.get_one(RecommendationRow, decision.recommendation_id)
    before = rec.state
    if reopen:
        rec.state, rec.updated_at = RecommendationState.OPEN.value, now
    record(
        session,
        AuditEvent(
            source="governance",
            operation=f"decision.{state.value}",
            resource_type="decision",
            resource_id=str(decision.id),
            actor="system",
            tenant_uuid=decision.tenant_uuid,
            correlation_id=decision.correlation_id,
            severity="warning" if state is not DecisionState.FULFILLED else "info",
            changes={
                "before": {"decision_state": DecisionState.ACTIVE.value, "recommendation_state": before},
                "after": {"decision_state": state.value, "recommendation_state": rec.state},
            },
            meta={
                "reason": reason,
                "decision": decision.kind,
                "recommendation_id": rec.id,
                "plugin_id": rec.plugin_id,
                "target_version": rec.target_version,
                "risk_level": rec.risk_level,
                **(extra or {}),
            },
        ),
        now,
    )


def _judge(session: Session, change: Change, decision: DecisionRow, now: datetime) -> None:
    """Decide what a recommendation change means for the decision standing on it."""
    if change.change is RecommendationChange.RESOLVED:
        _end(
            session,
            decision,
            DecisionState.FULFILLED,
            "a later scan shows the installation no longer needs action",
            now,
            reopen=False,
        )
        return
    kind = DecisionKind(decision.kind)
    if kind is DecisionKind.IGNORE:
        if (
            change.risk_level == Severity.CRITICAL.value
            and decision.details.get("risk_level") != Severity.CRITICAL.value
        ):
            reason = "a new advisory made the ignored installation critical"
            _end(
                session,
                decision,
                DecisionState.BROKEN,
                reason,
                now,
                reopen=True,
                extra={"new_risk_level": change.risk_level},
            )
            notify_ignore_broken(
                session,
                decision_id=decision.id,
                recommendation_id=decision.recommendation_id,
                reason=reason,
                now=now,
            )
        elif decision.scope == IgnoreScope.TARGET.value and change.target_version != decision.target_version:
            _end(
                session,
                decision,
                DecisionState.SUPERSEDED,
                f"the target moved from {decision.target_version} to {change.target_version}",
                now,
                reopen=True,
            )
    elif change.target_version != decision.target_version:
        _end(
            session,
            decision,
            DecisionState.SUPERSEDED,
            f"the target moved from {decision.target_version} to {change.target_version}",
            now,
            reopen=True,
        )


def on_recommendation_changes(
    session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime
) -> None:
    """Change hook: fulfil, break or supersede the decisions standing on changed recommendations."""
    decided = [
        c
        for c in changes.changes
        if c.previous_state in (RecommendationState.DECIDED.value, RecommendationState.IGNORED.value)
    ]
    standing = _active(session, [c.recommendation_id for c in decided])
    for change in decided:
        decision = standing.get(change.recommendation_id)
        if decision is not None:
            _judge(session, change, decision, now)


def _expire_ignores(session: Session, now: datetime) -> int:
    stmt = select(DecisionRow).where(
        DecisionRow.state == DecisionState.ACTIVE.value,
        DecisionRow.kind == DecisionKind.IGNORE.value,
        DecisionRow.until.is_not(None),
        DecisionRow.until <= now,
    )
    expired = list(session.execute(stmt).scalars())
    for decision in expired:
        _end(
            session,
            decision,
            DecisionState.EXPIRED,
            f"the ignore expired at {iso(decision.until)}",
            now,
            reopen=True,
        )
    return len(expired)


def _queue_breaches(session: Session, now: datetime) -> int:
    """Queue one breach job per missed schedule and per critical patch past its SLA deadline."""
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
    late = select(RecommendationRow.id, RecommendationRow.revision).where(
        RecommendationRow.critical_patch.is_(True),
        RecommendationRow.state.in_(_OPEN_STATES),
        RecommendationRow.sla_deadline.is_not(None),
        RecommendationRow.sla_deadline <= now,
    )
    for rec_id, revision in session.execute(late):
        queued += queue.enqueue(
            session,
            SLA_TASK,
            {"recommendation_id": rec_id, "revision": revision},
            key=f"sla:critical:{rec_id}:{revision}",
            now=now,
        )
    return queued


def check(session: Session, now: datetime) -> dict[str, int]:
    """The periodic follow-up: expire ignores, queue SLA breaches."""
    return {"expired": _expire_ignores(session, now), "breaches_queued": _queue_breaches(session, now)}


def record_breach(session: Session, payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The `sla_breach` job: audit the breach (and close a missed schedule); returns what it recorded."""
    if "decision_id" in payload:
        decision = session.get_one(DecisionRow, payload["decision_id"])
        if decision.state != DecisionState.ACTIVE.value:
            return {}
        rec = session.get_one(RecommendationRow, decision.recommendation_id)
        detail = {
            "kind": "schedule_missed",
            "scheduled_for": iso(decision.scheduled_for),
            "decision_id": decision.id,
        }
        _end(
            session,
            decision,
            DecisionState.BREACHED,
            "the scheduled upgrade time passed without the target reached",
            now,
            reopen=True,
            extra=detail,
        )
    else:
        rec = session.get_one(RecommendationRow, payload["recommendation_id"])
        if rec.revision != payload["revision"] or rec.state not in _OPEN_STATES:
            return {}
        detail = {"kind": "critical_past_deadline", "sla_deadline": iso(rec.sla_deadline)}
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
        recommendation_id=rec.id,
        breach=str(detail["kind"]),
        breach_key=_breach_key(payload),
        now=now,
        sla_deadline=rec.sla_deadline,
        scheduled_for=_scheduled(payload, session),
        decision_id=payload.get("decision_id"),
    )
    record_sla_breach(session, rec, detail, now)
    return {**detail, "recommendation_id": rec.id, "tenant_uuid": rec.tenant_uuid, "plugin_id": rec.plugin_id}


def _breach_key(payload: dict[str, Any]) -> str:
    if "decision_id" in payload:
        return f"schedule:{payload['decision_id']}"
    return f"critical:{payload['recommendation_id']}:{payload['revision']}"


def _scheduled(payload: dict[str, Any], session: Session) -> datetime | None:
    if "decision_id" not in payload:
        return None
    return session.get_one(DecisionRow, payload["decision_id"]).scheduled_for


def accept_rate(session: Session) -> float | None:
    """Accepted ÷ answered: upgrade/schedule decisions whose target a later scan saw reached, over every
    decision that stands or ended (superseded ones excluded: they were replaced, not answered)."""
    counted = (
        select(DecisionRow.kind, DecisionRow.state, func.count())
        .where(DecisionRow.state != DecisionState.SUPERSEDED.value)
        .group_by(DecisionRow.kind, DecisionRow.state)
    )
    rows = session.execute(counted).all()
    total = sum(n for _, _, n in rows)
    accepted = sum(
        n
        for kind, state, n in rows
        if state == DecisionState.FULFILLED.value and kind != DecisionKind.IGNORE.value
    )
    return None if total == 0 else accepted / total

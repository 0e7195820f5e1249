"""`powerx version reconcile`: find and repair misalignment between recommendations, decisions,
notifications and the audit trail. Every repair is itself audited (actor `reconcile`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.notifications.service import NotificationRuntime, on_recommendation_changes
from powerx_governance.notifications.tables import NotificationEventRow
from powerx_governance.recommendations.model import RecommendationChange, RecommendationState
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.times import iso


@dataclass
class Finding:
    kind: str
    resource: str
    detail: str
    repaired: bool = False


@dataclass
class ReconcileReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings


def _audited_decisions(session: Session) -> set[str]:
    stmt = select(AuditEventRow.changes).where(AuditEventRow.operation.like("decision.%"))
    return {str(c.get("after", {}).get("decision_id")) for c in session.execute(stmt).scalars()}


def _decisions_without_audit(session: Session, now: datetime, repair: bool, report: ReconcileReport) -> None:
    audited = _audited_decisions(session)
    for decision in session.execute(select(DecisionRow).order_by(DecisionRow.id)).scalars():
        if str(decision.id) in audited:
            continue
        item = Finding(
            "decision_without_audit",
            f"decision {decision.id}",
            f"{decision.kind} on recommendation {decision.recommendation_id} by {decision.actor}",
        )
        if repair:
            record(
                session,
                AuditEvent(
                    source="governance",
                    operation=f"decision.{decision.kind}",
                    resource_type="recommendation",
                    resource_id=str(decision.recommendation_id),
                    actor=decision.actor,
                    tenant_uuid=decision.tenant_uuid,
                    correlation_id=decision.correlation_id,
                    occurred_at=decision.created_at,
                    changes={
                        "after": {
                            "decision_id": decision.id,
                            "decision": decision.kind,
                            "reason": decision.reason,
                            "scheduled_for": iso(decision.scheduled_for),
                            "scope": decision.scope,
                            "until": iso(decision.until),
                            "approver": decision.approver,
                        }
                    },
                    meta={"recommender": "system", "reconciled_by": "reconcile", "reconciled_at": iso(now)},
                ),
                now,
            )
            item.repaired = True
        report.findings.append(item)


_STATE_OF = {DecisionKind.IGNORE.value: RecommendationState.IGNORED.value}


def _states_out_of_line(session: Session, now: datetime, repair: bool, report: ReconcileReport) -> None:
    """A recommendation's state must follow its standing decision (or be open without one)."""
    standing = {
        d.recommendation_id: d
        for d in session.execute(
            select(DecisionRow).where(DecisionRow.state == DecisionState.ACTIVE.value)
        ).scalars()
    }
    decided = (RecommendationState.DECIDED.value, RecommendationState.IGNORED.value)
    for rec in session.execute(
        select(RecommendationRow).where(RecommendationRow.state != RecommendationState.RESOLVED.value)
    ).scalars():
        decision = standing.get(rec.id)
        expected = (
            _STATE_OF.get(decision.kind, RecommendationState.DECIDED.value)
            if decision
            else (rec.state if rec.state not in decided else RecommendationState.OPEN.value)
        )
        if rec.state == expected:
            continue
        item = Finding(
            "state_out_of_line", f"recommendation {rec.id}", f"state {rec.state}, expected {expected}"
        )
        if repair:
            record(
                session,
                AuditEvent(
                    source="governance",
                    operation="recommendation.state_repaired",
                    resource_type="recommendation",
                    resource_id=str(rec.id),
                    actor="reconcile",
                    tenant_uuid=rec.tenant_uuid,
                    changes={"before": {"state": rec.state}, "after": {"state": expected}},
                    meta={},
                ),
                now,
            )
            rec.state, rec.updated_at, item.repaired = expected, now, True
        report.findings.append(item)


def _opened(rec: RecommendationRow) -> Change:
    return Change(
        rec.id,
        rec.tenant_uuid,
        rec.plugin_id,
        rec.revision,
        RecommendationChange.OPENED,
        rec.risk_level,
        rec.action,
        rec.critical_patch,
        target_version=rec.target_version,
    )


def _critical_never_notified(
    notifications: NotificationRuntime, session: Session, now: datetime, repair: bool, report: ReconcileReport
) -> None:
    """Every open critical patch must have been announced at least once."""
    announced = select(NotificationEventRow.recommendation_id).where(
        NotificationEventRow.recommendation_id.is_not(None)
    )
    silent = list(
        session.execute(
            select(RecommendationRow).where(
                RecommendationRow.critical_patch.is_(True),
                RecommendationRow.state == RecommendationState.OPEN.value,
                RecommendationRow.id.not_in(announced),
            )
        ).scalars()
    )
    if repair and silent:
        on_recommendation_changes(
            notifications, session, ChangeSet([_opened(rec) for rec in silent]), now, now
        )
    report.findings.extend(
        Finding(
            "critical_never_notified",
            f"recommendation {rec.id}",
            f"{rec.plugin_id} {rec.current_version} -> {rec.target_version} for {rec.tenant_uuid}",
            repaired=repair,
        )
        for rec in silent
    )


Check = Callable[[Session, datetime, bool, ReconcileReport], None]


def default_checks(notifications: NotificationRuntime) -> list[Check]:
    return [_decisions_without_audit, _states_out_of_line, partial(_critical_never_notified, notifications)]


def reconcile(
    session: Session,
    now: datetime,
    *,
    repair: bool,
    notifications: NotificationRuntime,
    checks: list[Check] | None = None,
) -> ReconcileReport:
    """Run every check; with `repair`, fix what is found in the caller's transaction."""
    report = ReconcileReport()
    for check in checks or default_checks(notifications):
        check(session, now, repair, report)
    return report

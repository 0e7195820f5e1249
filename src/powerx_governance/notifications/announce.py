"""Announcing what happened: the scan's change hook and the events other components report."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.db.chunks import chunks
from powerx_governance.db.session import plan_each_query
from powerx_governance.domain import Severity
from powerx_governance.notifications.model import EventKind
from powerx_governance.notifications.outbox import NewEvent, none_stored, record_events
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.recommendations.model import RecommendationChange, RecommendationState
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.times import iso

_ANNOUNCED: Final = frozenset(
    {RecommendationChange.OPENED, RecommendationChange.ESCALATED, RecommendationChange.REOPENED}
)
# Each change's risk and change as the event takes them, by dict look-up: `Severity(...)` and an enum
# member's `.value` cost a few microseconds each, paid for every finding a first ingest opens
_RISKS: Final = {s.value: s for s in Severity}
_CHANGES: Final = {c: c.value for c in RecommendationChange}
_ANNOUNCE_EVERY: Final = 20_000  # changes announced at a time (one `record_events` call each)


def _routes_of(session: Session, rec_ids: Sequence[int]) -> dict[int, str | None]:
    """The notification route of each recommendation's finding (`notification` of its verdict)."""
    verdict_of: dict[int, str] = {}
    for part in chunks(list(rec_ids)):
        rows = session.execute(
            select(RecommendationRow.id, RecommendationRow.verdict).where(RecommendationRow.id.in_(part))
        ).all()
        verdict_of.update(dict(rows))
    route_of: dict[str, str | None] = {}
    for part in chunks(sorted(set(verdict_of.values()))):
        documents = session.execute(
            select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(part))
        ).all()
        route_of.update({fp: doc.get("notification") for fp, doc in documents})
    return {rec_id: route_of.get(fp) for rec_id, fp in verdict_of.items()}


def _finding_key(c: Change) -> str:
    """What the finding says, never its revision: a flag or policy switched back and forth
    announces nothing new."""
    if c.change is RecommendationChange.ESCALATED:
        return f"finding:{c.recommendation_id}:escalated:{c.risk_level}:{c.action}"
    if c.change is RecommendationChange.REOPENED:
        return f"finding:{c.recommendation_id}:reopened:{c.risk_level}:{c.action}:{c.target_version}"
    return f"finding:{c.recommendation_id}:opened"


def on_recommendation_changes(
    runtime: NotificationRuntime, session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime
) -> None:
    """Change hook: announce opened, escalated and reopened findings (not ignored ones).

    Announced `_ANNOUNCE_EVERY` at a time: a first ingest opens ~740,000 findings, and their events,
    entries and rows built at once took more memory than the rest of the scan."""
    wanted = [
        c
        for c in changes.changes
        if c.change in _ANNOUNCED and c.previous_state != RecommendationState.IGNORED.value
    ]
    unstored = False  # none of the keys stored before the first piece: no piece looks them up
    if len(wanted) > _ANNOUNCE_EVERY:
        plan_each_query(session)  # later pieces that look keys up find what earlier ones wrote
        unstored = none_stored(session, map(_finding_key, wanted))
    keys: dict[str, str | None] = {}  # each tenant's key, looked up once for every piece
    for part in chunks(wanted, _ANNOUNCE_EVERY):
        _announce(runtime, session, part, now, triggered_at, keys, unstored=unstored)


def _announce(
    runtime: NotificationRuntime,
    session: Session,
    wanted: Sequence[Change],
    now: datetime,
    triggered_at: datetime,
    tenant_keys: dict[str, str | None],
    *,
    unstored: bool,
) -> None:
    unrouted = [c.recommendation_id for c in wanted if not c.routed]
    routes = _routes_of(session, unrouted) if unrouted else {}
    finding, risks, changes = EventKind.FINDING, _RISKS, _CHANGES  # enum look-ups, once per piece
    data = _EventData()
    events = [
        NewEvent(
            _finding_key(c),
            finding,
            risks[c.risk_level],
            triggered_at,
            c.tenant_uuid,
            c.recommendation_id,
            changes[c.change],
            c.route if c.routed else routes.get(c.recommendation_id),
            data(c),
        )
        for c in wanted
    ]
    record_events(session, runtime, events, now, tenant_keys=tenant_keys, unstored=unstored)


class _EventData(dict[tuple[int, str, str, str | None, bool], dict[str, Any]]):
    """Each change's event `data`, one shared document per distinct content: the fleet's findings
    say the same revision, plugin, action and target for thousands of tenants, and the outbox
    converts each document object once."""

    def __call__(self, c: Change) -> dict[str, Any]:
        said = (c.revision, c.plugin_id, c.action, c.target_version, c.critical_patch)
        found = self.get(said)
        if found is None:
            found = self[said] = {
                "revision": c.revision,
                "plugin_id": c.plugin_id,
                "action": c.action,
                "target_version": c.target_version,
                "critical_patch": c.critical_patch,
            }
        return found


def _about(session: Session, recommendation_id: int) -> tuple[str, Severity, str | None]:
    """(tenant, risk, route) of a recommendation; LookupError when there is none."""
    row = session.get(RecommendationRow, recommendation_id)
    if row is None:
        raise LookupError(f"no recommendation {recommendation_id}")
    return (
        row.tenant_uuid,
        Severity(row.risk_level),
        _routes_of(session, [recommendation_id]).get(recommendation_id),
    )


def _about_event(
    session: Session,
    runtime: NotificationRuntime,
    key: str,
    kind: EventKind,
    recommendation_id: int,
    now: datetime,
    data: dict[str, Any],
) -> bool:
    tenant, risk, route = _about(session, recommendation_id)
    event = NewEvent(key, kind, risk, now, tenant, recommendation_id, None, route, data)
    return record_events(session, runtime, [event], now) == 1


class RecommendationAbout(NamedTuple):
    """Who a recommendation's events are for: its tenant, risk and notification route."""

    tenant_uuid: str
    risk: Severity
    route: str | None


@dataclass(frozen=True, slots=True)
class DecisionNotice:
    """An admin decision (upgrade, schedule, ignore) to announce; `about`: its recommendation's tenant,
    risk and route when the caller read them already (`notify_decisions` reads the others)."""

    decision_id: int
    recommendation_id: int
    decision: str
    actor: str
    reason: str | None = None
    target_version: str | None = None
    scheduled_for: datetime | None = None
    until: datetime | None = None
    about: RecommendationAbout | None = None


def _abouts(session: Session, rec_ids: Collection[int]) -> dict[int, RecommendationAbout]:
    """`RecommendationAbout` of each of these recommendations; LookupError when one is missing."""
    if not rec_ids:
        return {}
    rows = session.execute(
        select(RecommendationRow.id, RecommendationRow.tenant_uuid, RecommendationRow.risk_level).where(
            RecommendationRow.id.in_(rec_ids)
        )
    ).all()
    missing = set(rec_ids) - {rec_id for rec_id, _, _ in rows}
    if missing:
        raise LookupError(f"no recommendation {min(missing)}")
    routes = _routes_of(session, list(rec_ids))
    return {
        rec_id: RecommendationAbout(tenant, Severity(risk), routes.get(rec_id))
        for rec_id, tenant, risk in rows
    }


def notify_decisions(
    session: Session,
    runtime: NotificationRuntime,
    notices: Sequence[DecisionNotice],
    now: datetime,
    *,
    written_now: bool = False,
    tenant_keys: dict[str, str | None] | None = None,
) -> int:
    """Announce decisions taken together (one transaction) with a few statements; how many were new.

    Each decision still gets its own event and message, deduped on `decision:{id}`; what its
    recommendation is about is read for the notices that do not carry it (`DecisionNotice.about`).
    `written_now`: the decisions were inserted by this transaction, so no stored event can name them
    yet and their keys are not looked up (a repeated one is still skipped by its insert: the unique key).
    `tenant_keys`: the keys of their tenants when the caller read them (the others are looked up)."""
    if not notices:
        return 0
    read = _abouts(session, {n.recommendation_id for n in notices if n.about is None})
    events = [
        NewEvent(
            f"decision:{n.decision_id}",
            EventKind.DECISION,
            (about := n.about or read[n.recommendation_id]).risk,
            now,
            about.tenant_uuid,
            n.recommendation_id,
            None,
            about.route,
            {
                "decision_id": n.decision_id,
                "decision": n.decision,
                "actor": n.actor,
                "reason": n.reason,
                "target_version": n.target_version,
                "scheduled_for": iso(n.scheduled_for),
                "until": iso(n.until),
            },
        )
        for n in notices
    ]
    return record_events(session, runtime, events, now, tenant_keys=tenant_keys, unstored=written_now)


def notify_decision(
    session: Session,
    runtime: NotificationRuntime,
    *,
    decision_id: int,
    recommendation_id: int,
    decision: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    target_version: str | None = None,
    scheduled_for: datetime | None = None,
    until: datetime | None = None,
) -> bool:
    """Announce an admin decision (upgrade, schedule, ignore) on a recommendation; False when not new."""
    notice = DecisionNotice(
        decision_id, recommendation_id, decision, actor, reason, target_version, scheduled_for, until
    )
    return notify_decisions(session, runtime, [notice], now) == 1


def notify_sla_breach(
    session: Session,
    runtime: NotificationRuntime,
    *,
    recommendation_id: int,
    breach: str,
    breach_key: str,
    now: datetime,
    sla_deadline: datetime | None = None,
    scheduled_for: datetime | None = None,
    decision_id: int | None = None,
) -> bool:
    """Announce an SLA breach (`breach`: critical_past_deadline, schedule_missed ...) once per key."""
    data = {
        "breach": breach,
        "sla_deadline": iso(sla_deadline),
        "scheduled_for": iso(scheduled_for),
        "decision_id": decision_id,
    }
    return _about_event(
        session, runtime, f"sla:{breach_key}", EventKind.SLA_BREACH, recommendation_id, now, data
    )


def notify_ignore_broken(
    session: Session,
    runtime: NotificationRuntime,
    *,
    decision_id: int,
    recommendation_id: int,
    reason: str,
    now: datetime,
) -> bool:
    """Announce that an ignore decision no longer holds (e.g. a new critical advisory)."""
    data = {"decision_id": decision_id, "reason": reason}
    return _about_event(
        session,
        runtime,
        f"ignore_broken:{decision_id}",
        EventKind.IGNORE_BROKEN,
        recommendation_id,
        now,
        data,
    )


def notify_reopened(
    session: Session,
    runtime: NotificationRuntime,
    *,
    recommendation_id: int,
    decision_id: int,
    decision_state: str,
    reason: str,
    now: datetime,
) -> bool:
    """Announce a finding a decision's end reopened (expired ignore, superseded decision), once per
    decision: a `finding` with change `reopened`, as a re-scan announces one."""
    row = session.get_one(RecommendationRow, recommendation_id)
    event = NewEvent(
        dedupe_key=f"finding:{recommendation_id}:reopened:decision:{decision_id}",
        kind=EventKind.FINDING,
        risk=Severity(row.risk_level),
        triggered_at=now,
        tenant_uuid=row.tenant_uuid,
        recommendation_id=recommendation_id,
        change=RecommendationChange.REOPENED.value,
        route=_routes_of(session, [recommendation_id]).get(recommendation_id),
        data={
            "revision": row.revision,
            "plugin_id": row.plugin_id,
            "action": row.action,
            "target_version": row.target_version,
            "critical_patch": row.critical_patch,
            "decision_id": decision_id,
            "decision_state": decision_state,
            "reason": reason,
        },
    )
    return record_events(session, runtime, [event], now) == 1


def notify_alert(
    session: Session,
    runtime: NotificationRuntime,
    kind: str,
    message: str,
    channel: str | None,
    now: datetime,
    *,
    key: str | None = None,
    severity: Severity = Severity.HIGH,
    data: Mapping[str, Any] | None = None,
) -> bool:
    """Announce an operational alert on route `channel` (rules `defaults.alert_channel`).

    Deduped on `key` (default: kind and time), so a retried caller does not alert twice.
    """
    event = NewEvent(
        dedupe_key=f"alert:{key or f'{kind}:{iso(now)}'}",
        kind=EventKind.ALERT,
        risk=severity,
        triggered_at=now,
        route=channel,
        data={"alert": kind, "message": message, "severity": severity.value, "data": dict(data or {})},
    )
    return record_events(session, runtime, [event], now) == 1

"""What a scan's changes do to the decisions standing on them: fulfil, break or supersede them.

`on_recommendation_changes` runs inside the transaction that persists a scan's changes (the
scheduler's expiries and SLA breaches are in `sla`).

Upgrade and schedule decisions keep their meaning while the recommendation under them moves:
reaching the decided target (or a later release without the advisories the target fixes)
fulfils them; only new risk on the decided target (an advisory affecting it that was stored or
changed since the decision) supersedes them; a new target for any other reason (policy mode,
policy version, a new lower release) leaves them standing. A `target`-scoped ignore ends for new
risk too, and for any move the data makes, never for a policy switch. A decision that ends and
reopens its recommendation is announced: a `finding` notification (change `reopened`) and a
`plugin.version.alert` event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.catalog.tables import AdvisoryRow
from powerx_governance.decisions.events import record_reopened
from powerx_governance.decisions.model import DecisionKind, DecisionState, IgnoreScope
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.domain import Severity
from powerx_governance.notifications.service import (
    NotificationRuntime,
    notify_ignore_broken,
    notify_reopened,
)
from powerx_governance.policy.index import CatalogIndex, PluginIndex
from powerx_governance.recommendations.model import RecommendationChange, RecommendationState
from powerx_governance.recommendations.store import Change, ChangeSet
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow, VerdictRow
from powerx_governance.versioning.semver import InvalidVersionError, Version, parse_version

CatalogOf = Callable[[Session], CatalogIndex]


def _active(session: Session, rec_ids: list[int]) -> dict[int, DecisionRow]:
    if not rec_ids:
        return {}
    stmt = select(DecisionRow).where(
        DecisionRow.recommendation_id.in_(rec_ids), DecisionRow.state == DecisionState.ACTIVE.value
    )
    return {d.recommendation_id: d for d in session.execute(stmt).scalars()}


def end(
    session: Session,
    decision: DecisionRow,
    state: DecisionState,
    reason: str,
    now: datetime,
    *,
    reopen: bool,
    extra: dict[str, Any] | None = None,
) -> str:
    """Close a decision, optionally reopen its recommendation, and audit it (actor `system`).

    Returns the recommendation's state before.
    """
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
    return before


def end_and_announce(
    session: Session,
    runtime: NotificationRuntime,
    decision: DecisionRow,
    state: DecisionState,
    reason: str,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    """End a decision, reopen its recommendation, and tell the admin (notification + event)."""
    before = end(session, decision, state, reason, now, reopen=True, extra=extra)
    notify_reopened(
        session,
        runtime,
        recommendation_id=decision.recommendation_id,
        decision_id=decision.id,
        decision_state=state.value,
        reason=reason,
        now=now,
    )
    rec = session.get_one(RecommendationRow, decision.recommendation_id)
    record_reopened(session, rec, before, decision, now)


# -- what the decided finding was, and what the catalog says now ------------------------------------


@dataclass(frozen=True, slots=True)
class _Decided:
    """The finding a decision answered: the advisories its target fixes, and those it still carried."""

    fixes: frozenset[str]
    carried: frozenset[str]


def _decided(session: Session, decision: DecisionRow) -> _Decided:
    """Read from the verdict of the revision the admin decided on."""
    stmt = (
        select(VerdictRow.document)
        .join(RecommendationRevisionRow, RecommendationRevisionRow.verdict == VerdictRow.fingerprint)
        .where(
            RecommendationRevisionRow.recommendation_id == decision.recommendation_id,
            RecommendationRevisionRow.revision == decision.revision,
        )
    )
    document: dict[str, Any] = session.execute(stmt).scalar_one_or_none() or {}
    advisories = document.get("advisories") or []
    carried = frozenset(a["id"] for a in advisories if a.get("in_target") or a.get("unavoidable"))
    return _Decided(frozenset(a["id"] for a in advisories) - carried, carried)


def _version(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return parse_version(text)
    except InvalidVersionError:
        return None


def _affecting(plugin: PluginIndex | None, version: Version | None) -> frozenset[str] | None:
    """Ids of the advisories affecting `version` now (None when the catalog cannot say)."""
    if plugin is None or version is None:
        return None
    mask = plugin.affected_mask(version)
    return frozenset(a.id for i, a in enumerate(plugin.advisories) if mask >> i & 1)


def _reached(
    installed: Version | None, target: Version | None, plugin: PluginIndex | None, fixes: frozenset[str]
) -> bool:
    """The decided target, or a later release that carries none of the advisories the target fixes."""
    if installed is None or target is None or installed.key < target.key:
        return False
    if installed.key == target.key:
        return True
    carried = _affecting(plugin, installed)
    return carried is not None and not carried & fixes


# -- judging the decisions standing on changed recommendations ------------------------------------


def _policy_switched(session: Session, change: Change) -> bool:
    """The change came with another policy: a new rules version, or the upgrade-policy flag switched."""
    if change.policy_version != change.previous_policy_version:
        return True
    stmt = (
        select(RecommendationRevisionRow.revision, VerdictRow.document)
        .join(VerdictRow, RecommendationRevisionRow.verdict == VerdictRow.fingerprint)
        .where(
            RecommendationRevisionRow.recommendation_id == change.recommendation_id,
            RecommendationRevisionRow.revision.in_((change.revision - 1, change.revision)),
        )
    )
    modes = {revision: document.get("policy_mode") for revision, document in session.execute(stmt)}
    return modes.get(change.revision - 1) != modes.get(change.revision)


def _new_risk(session: Session, advisories: frozenset[str], decision: DecisionRow) -> frozenset[str]:
    """Those of `advisories` stored or changed since the decision: what the admin could not know."""
    if not advisories:
        return frozenset()
    stmt = select(AdvisoryRow.advisory_id).where(
        AdvisoryRow.advisory_id.in_(sorted(advisories)), AdvisoryRow.updated_at >= decision.created_at
    )
    return frozenset(session.execute(stmt).scalars())


def _superseding(
    session: Session,
    change: Change,
    decision: DecisionRow,
    decided: _Decided,
    plugin: PluginIndex | None,
    *,
    data_only: bool,
) -> tuple[str, dict[str, Any]] | None:
    """Why a moved target is a new question for the admin; None when it is not.

    New risk on the decided target always is. With `data_only` (ignores of one target: "this
    target only") so is any move the data made (a new or withdrawn release or advisory), but
    not a move a policy switch made (a rules version, the upgrade-policy flag).
    """
    moved = f"the target moved from {decision.target_version} to {change.target_version}"
    target = _version(decision.target_version)
    if target is None:  # nothing was decided about a release: any target is a new question
        return moved, {}
    new_risk = _new_risk(session, (_affecting(plugin, target) or frozenset()) - decided.carried, decision)
    if new_risk:
        advisories = ", ".join(sorted(new_risk))
        reason = f"new risk: {advisories} affects the decided target {decision.target_version}; {moved}"
        return reason, {"new_advisories": sorted(new_risk), "new_target_version": change.target_version}
    if data_only and not _policy_switched(session, change):
        return moved, {"new_target_version": change.target_version}
    return None


def _judge_upgrade(
    session: Session,
    runtime: NotificationRuntime,
    change: Change,
    decision: DecisionRow,
    plugin: PluginIndex | None,
    now: datetime,
) -> None:
    """Fulfil an upgrade/schedule decision whose target was reached; supersede it only for new risk."""
    decided = _decided(session, decision)
    if _reached(_version(change.current_version), _version(decision.target_version), plugin, decided.fixes):
        reached = change.current_version
        reason = f"the installation reached {reached} (decided target {decision.target_version})"
        end(session, decision, DecisionState.FULFILLED, reason, now, reopen=True)
        return
    if change.target_version == decision.target_version:
        return
    why = _superseding(session, change, decision, decided, plugin, data_only=False)
    if why is not None:
        end_and_announce(session, runtime, decision, DecisionState.SUPERSEDED, why[0], now, why[1])


def _judge_ignore(
    session: Session,
    runtime: NotificationRuntime,
    change: Change,
    decision: DecisionRow,
    plugin: PluginIndex | None,
    now: datetime,
) -> None:
    if (
        change.risk_level == Severity.CRITICAL.value
        and decision.details.get("risk_level") != Severity.CRITICAL.value
    ):
        reason = "a new advisory made the ignored installation critical"
        end(
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
            runtime,
            decision_id=decision.id,
            recommendation_id=decision.recommendation_id,
            reason=reason,
            now=now,
        )
    elif decision.scope == IgnoreScope.TARGET.value and change.target_version != decision.target_version:
        why = _superseding(session, change, decision, _decided(session, decision), plugin, data_only=True)
        if why is not None:
            end_and_announce(session, runtime, decision, DecisionState.SUPERSEDED, why[0], now, why[1])


def _judge(
    session: Session,
    runtime: NotificationRuntime,
    change: Change,
    decision: DecisionRow,
    plugin: PluginIndex | None,
    now: datetime,
) -> None:
    """Decide what a recommendation change means for the decision standing on it."""
    if change.change is RecommendationChange.RESOLVED:
        end(
            session,
            decision,
            DecisionState.FULFILLED,
            "a later scan shows the installation no longer needs action",
            now,
            reopen=False,
        )
    elif DecisionKind(decision.kind) is DecisionKind.IGNORE:
        _judge_ignore(session, runtime, change, decision, plugin, now)
    else:
        _judge_upgrade(session, runtime, change, decision, plugin, now)


def on_recommendation_changes(
    session: Session,
    runtime: NotificationRuntime,
    changes: ChangeSet,
    now: datetime,
    triggered_at: datetime,
    *,
    catalog: CatalogOf | None = None,
) -> None:
    """Change hook: fulfil, break or supersede the decisions standing on changed recommendations."""
    decided = [
        c
        for c in changes.changes
        if c.previous_state in (RecommendationState.DECIDED.value, RecommendationState.IGNORED.value)
    ]
    standing = _active(session, [c.recommendation_id for c in decided])
    if not standing:
        return
    plugins = catalog(session).plugins if catalog is not None else {}
    for change in decided:
        decision = standing.get(change.recommendation_id)
        if decision is not None:
            _judge(session, runtime, change, decision, plugins.get(change.plugin_id), now)


def change_hook(
    runtime: NotificationRuntime, catalog: CatalogOf
) -> Callable[[Session, ChangeSet, datetime, datetime], None]:
    """`on_recommendation_changes` with the notifications and the catalog it reads advisories from."""

    def hook(session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime) -> None:
        on_recommendation_changes(session, runtime, changes, now, triggered_at, catalog=catalog)

    return hook

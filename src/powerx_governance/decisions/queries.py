"""Reading decisions, shared by the API, the console and the CLI: the recommendations a bulk decision
selects, the decisions of a batch, the accept rate, and the decision trends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, case, func, select, true
from sqlalchemy.orm import Session

from powerx_governance.db.weeks import WeekValue, Window, series, week_of
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory.queries import tagged_tenants
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.queries import verdicts_with_advisory
from powerx_governance.recommendations.tables import RecommendationRow

BATCH_SHOWN: Final = 500


@dataclass(frozen=True, slots=True)
class BulkSelection:
    """Which open recommendations an operator's bulk decision applies to."""

    plugin_id: str
    tenant_tags: tuple[str, ...] = ()  # tenants carrying one of these (`domain.tags_match`)
    tenant_uuids: tuple[str, ...] = ()
    target_version: str | None = None
    advisory_id: str | None = None  # only recommendations this advisory affects


def _bulk_where(session: Session, stmt: Select[Any], selection: BulkSelection) -> Select[Any]:
    rec = RecommendationRow
    stmt = stmt.where(rec.plugin_id == selection.plugin_id, rec.state == RecommendationState.OPEN.value)
    if selection.target_version is not None:
        stmt = stmt.where(rec.target_version == selection.target_version)
    if selection.tenant_uuids:
        stmt = stmt.where(rec.tenant_uuid.in_(selection.tenant_uuids))
    if selection.tenant_tags:
        stmt = stmt.where(rec.tenant_uuid.in_(tagged_tenants(session, selection.tenant_tags)))
    if selection.advisory_id is not None:
        wanted = verdicts_with_advisory(session, selection.advisory_id, plugin_id=selection.plugin_id)
        stmt = stmt.where(rec.verdict.in_(wanted))
    return stmt


def select_for_bulk(session: Session, selection: BulkSelection) -> list[RecommendationRow]:
    """The open recommendations of the selection, by tenant."""
    stmt = _bulk_where(session, select(RecommendationRow), selection)
    return list(session.execute(stmt.order_by(RecommendationRow.tenant_uuid)).scalars())


@dataclass(frozen=True, slots=True)
class BulkGroup:
    """Open recommendations of a selection sharing a target, installed version and verdict."""

    target_version: str | None
    current_version: str
    verdict: str
    count: int
    late: int  # of them, those whose SLA deadline is before the scheduled time asked about


def bulk_groups(
    session: Session, selection: BulkSelection, *, scheduled_for: datetime | None
) -> list[BulkGroup]:
    """What `select_for_bulk` selects, aggregated in SQL: the preview and the confirmation count it."""
    rec = RecommendationRow
    late = (
        func.sum(case((and_(rec.sla_deadline.is_not(None), rec.sla_deadline < scheduled_for), 1), else_=0))
        if scheduled_for is not None
        else func.sum(0)
    )
    stmt = select(rec.target_version, rec.current_version, rec.verdict, func.count(), late)
    stmt = _bulk_where(session, stmt, selection).group_by(
        rec.target_version, rec.current_version, rec.verdict
    )
    return [BulkGroup(t, c, v, int(n), int(lt or 0)) for t, c, v, n, lt in session.execute(stmt)]


def bulk_sample(session: Session, selection: BulkSelection, *, limit: int) -> list[RecommendationRow]:
    """The first `limit` recommendations of the selection, by tenant."""
    stmt = _bulk_where(session, select(RecommendationRow), selection)
    return list(session.execute(stmt.order_by(RecommendationRow.tenant_uuid).limit(limit)).scalars())


def batch_decisions(session: Session, batch_id: str, *, limit: int = BATCH_SHOWN) -> Sequence[DecisionRow]:
    """The decisions of one bulk decision, by tenant."""
    stmt = select(DecisionRow).where(DecisionRow.batch_id == batch_id).order_by(DecisionRow.tenant_uuid)
    return list(session.execute(stmt.limit(limit)).scalars())


# -- accept rate and trends -------------------------------------------------------------------------


def _in_scope(tenant_uuid: str | None) -> ColumnElement[bool]:
    return true() if tenant_uuid is None else DecisionRow.tenant_uuid == tenant_uuid


def _answered() -> ColumnElement[bool]:
    """Decisions that stand or ended (superseded ones were replaced, not answered)."""
    return DecisionRow.state != DecisionState.SUPERSEDED.value


def _accepted() -> ColumnElement[bool]:
    """Upgrade and schedule decisions whose target a later scan saw reached."""
    return and_(
        DecisionRow.state == DecisionState.FULFILLED.value, DecisionRow.kind != DecisionKind.IGNORE.value
    )


def accept_rate(session: Session, *, tenant_uuid: str | None = None) -> float | None:
    """Accepted ÷ answered decisions of the fleet or one tenant (None: nothing answered yet); the
    `version_recommendation_accept_ratio` gauge and the console's tile."""
    stmt = select(func.count(), func.sum(case((_accepted(), 1), else_=0))).where(
        _answered(), _in_scope(tenant_uuid)
    )
    answered, accepted = session.execute(stmt).one()
    return int(accepted or 0) / int(answered) if answered else None


@dataclass(frozen=True, slots=True)
class DecisionTrends:
    """Decisions taken in a window, by the week they were taken."""

    accept_weekly: list[WeekValue]  # the accept rate of the week's decisions, as they stand now
    by_kind_weekly: dict[str, list[int]]  # decisions taken per week, by kind


def decision_trends(session: Session, *, tenant_uuid: str | None, window: Window) -> DecisionTrends:
    d = DecisionRow
    week = week_of(session, d.created_at, window)
    stmt = (
        select(
            week,
            d.kind,
            func.count(),
            func.sum(case((_answered(), 1), else_=0)),
            func.sum(case((_accepted(), 1), else_=0)),
        )
        .where(d.created_at >= window.start, d.created_at <= window.now, _in_scope(tenant_uuid))
        .group_by(week, d.kind)
    )
    by_kind = {k.value: [0] * window.weeks for k in DecisionKind}
    answered: dict[int, list[int]] = {}
    for w, kind, count, answers, accepts in session.execute(stmt):
        if not 0 <= int(w) < window.weeks:
            continue
        by_kind.setdefault(kind, [0] * window.weeks)[int(w)] += int(count)
        pair = answered.setdefault(int(w), [0, 0])
        pair[0] += int(accepts or 0)
        pair[1] += int(answers or 0)
    accept = {w: (a / n if n else None, n) for w, (a, n) in answered.items()}
    return DecisionTrends(series(window.weeks, accept), by_kind)


@dataclass(frozen=True, slots=True)
class IgnoreBreakdown:
    by_scope: list[tuple[str, int]]  # most used first; `target` when unset
    by_reason: list[tuple[str, int]]  # the most given reasons


def ignore_breakdown(session: Session, *, tenant_uuid: str | None, reasons: int = 8) -> IgnoreBreakdown:
    """Every ignore decision of the fleet or one tenant, by scope and by reason."""
    d = DecisionRow
    ignored = and_(d.kind == DecisionKind.IGNORE.value, _in_scope(tenant_uuid))
    by_scope = select(d.scope, func.count()).where(ignored).group_by(d.scope).order_by(func.count().desc())
    by_reason = (
        select(d.reason, func.count())
        .where(ignored)
        .group_by(d.reason)
        .order_by(func.count().desc(), d.reason)
        .limit(reasons)
    )
    return IgnoreBreakdown(
        [(scope or "target", int(n)) for scope, n in session.execute(by_scope)],
        [(reason or "(none)", int(n)) for reason, n in session.execute(by_reason)],
    )


def standing_decisions(session: Session, recommendation_ids: Sequence[int]) -> dict[int, DecisionRow]:
    """The active decision of each recommendation that has one (what its card says was decided)."""
    if not recommendation_ids:
        return {}
    stmt = select(DecisionRow).where(
        DecisionRow.recommendation_id.in_(list(recommendation_ids)),
        DecisionRow.state == DecisionState.ACTIVE.value,
    )
    return {row.recommendation_id: row for row in session.execute(stmt).scalars()}

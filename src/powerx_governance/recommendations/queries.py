"""Reading recommendations, shared by the API, the console and the CLI: the one lister (filters,
priority order, cursor pagination, tenant scope), one recommendation, the exposure figures, "past
SLA", and the trends of critical patches.

Everything is scoped by an explicit `tenant_uuid` (None: the fleet, for fleet-wide callers) and sized
for 20,000 tenants: aggregates run in SQL, pages use keyset cursors on the (state, priority, id) and
(tenant, priority, id) indexes, and nothing loads the fleet's rows into Python.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, String, and_, case, cast, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from powerx_governance.db.chunks import chunks
from powerx_governance.db.rows import MAX_ID
from powerx_governance.db.weeks import WeekValue, Window, epoch, series, week_of
from powerx_governance.domain import Severity
from powerx_governance.inventory.queries import tagged_tenants
from powerx_governance.recommendations.model import UNRESOLVED, RecommendationState
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow, VerdictRow
from powerx_governance.times import iso

RISK_LEVELS: Final = tuple(s.value for s in reversed(Severity))


class CursorError(ValueError):
    """A pagination cursor that was not produced by this service."""


# -- the lister -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecommendationFilter:
    """What a listing shows; `tenant_uuid` is the caller's resolved scope (None: the fleet)."""

    tenant_uuid: str | None = None
    plugin_id: str | None = None
    risk_level: str | None = None
    action: str | None = None
    state: str | None = None
    tenant_tags: tuple[str, ...] = ()  # tenants carrying one of these (`domain.tags_match`)
    past_sla_at: datetime | None = None  # only those past their SLA at this time (`past_sla_condition`)
    critical_patch: bool | None = None
    target_version: str | None = None
    verdicts: tuple[str, ...] | None = None  # only these verdicts (e.g. `verdicts_with_advisory`)


class ListOrder(StrEnum):
    """The lister's orders: priority highest first, ties by id."""

    PRIORITY = "priority"  # ties oldest first (ascending id): the API's documented order
    # ties newest first: walks the (state, priority, id) and (tenant, priority, id) indexes
    # backwards, so every page costs what the first costs at fleet size (the console's cards)
    PRIORITY_NEWEST = "priority_newest"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the recommendation (priority, id) in `order`."""

    order: ListOrder
    priority: int
    rec_id: int


def encode_cursor(cursor: Cursor) -> str:
    """`[priority, id]` for the API's order (the format it always had), `[priority, id, order]` else."""
    fields: list[int | str] = [cursor.priority, cursor.rec_id]
    if cursor.order is not ListOrder.PRIORITY:
        fields.append(cursor.order.value)
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor `encode_cursor` made; CursorError for anything else."""
    try:
        priority, rec_id, *rest = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        order = ListOrder(rest[0]) if rest else ListOrder.PRIORITY
        cursor = Cursor(order, int(priority), int(rec_id))
    except (ValueError, TypeError, OverflowError) as exc:
        raise CursorError("cursor is not valid; use the next_cursor of a previous page") from exc
    if len(rest) > 1 or not (0 <= cursor.priority <= 100 and 0 < cursor.rec_id <= MAX_ID):
        raise CursorError("cursor is out of range; use the next_cursor of a previous page")
    return cursor


def _filtered(session: Session, stmt: Select[Any], f: RecommendationFilter) -> Select[Any]:
    rec = RecommendationRow
    # One tenant's rows come from the (tenant, priority, id) index; SQLite, without statistics,
    # would walk the fleet's (state, priority, id) index instead unless the state test hides it.
    state: Any = rec.state if f.tenant_uuid is None else rec.state.concat("")
    for column, value in (
        (rec.tenant_uuid, f.tenant_uuid),
        (rec.plugin_id, f.plugin_id),
        (rec.risk_level, f.risk_level),
        (rec.action, f.action),
        (state, f.state),
        (rec.target_version, f.target_version),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.tenant_tags:
        stmt = stmt.where(rec.tenant_uuid.in_(tagged_tenants(session, f.tenant_tags)))
    if f.past_sla_at is not None:
        stmt = stmt.where(past_sla_condition(f.past_sla_at))
    if f.critical_patch is not None:
        stmt = stmt.where(rec.critical_patch.is_(f.critical_patch))
    if f.verdicts is not None:
        stmt = stmt.where(rec.verdict.in_(f.verdicts))
    return stmt


def count_recommendations(session: Session, f: RecommendationFilter, *, cap: int = 10_000) -> int:
    """How many recommendations the lister would list for `f`, counted up to `cap` (more: cap + 1)."""
    rows = _filtered(session, select(RecommendationRow.id), f).limit(cap + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(rows)) or 0)


def _after(cursor: Cursor) -> ColumnElement[bool]:
    """Past the cursor in its order; `priority <= p` bounds the index range either way."""
    rec = RecommendationRow
    if cursor.order is ListOrder.PRIORITY_NEWEST:
        return tuple_(rec.priority, rec.id) < tuple_(cursor.priority, cursor.rec_id)
    return and_(rec.priority <= cursor.priority, or_(rec.priority < cursor.priority, rec.id > cursor.rec_id))


_ORDER_BY: Final = {
    ListOrder.PRIORITY: (RecommendationRow.priority.desc(), RecommendationRow.id),
    ListOrder.PRIORITY_NEWEST: (RecommendationRow.priority.desc(), RecommendationRow.id.desc()),
}


def recommendation_dict(row: RecommendationRow, verdict: dict[str, Any]) -> dict[str, Any]:
    """A recommendation as the API shows it: the finding (DESIGN §4 fields) plus its state."""
    return {
        "id": row.id,
        "tenant_uuid": row.tenant_uuid,
        "plugin_id": row.plugin_id,
        **verdict,
        "sla_deadline": iso(
            row.sla_deadline
        ),  # counted from first sight (DESIGN §5.8), not the shared verdict's
        **row.tenant_facts,
        "revision": row.revision,
        "state": row.state,
        "first_seen_at": iso(row.first_seen_at),
        "updated_at": iso(row.updated_at),
        "resolved_at": iso(row.resolved_at),
        "scan_id": row.scan_id,
        "policy_version": row.policy_version,
    }


def list_recommendations(
    session: Session,
    f: RecommendationFilter,
    *,
    limit: int,
    cursor: str | None,
    order: ListOrder = ListOrder.PRIORITY,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page in `order` (priority highest first); the cursor of the next page or None.

    The one lister: the API, the console and the CLI page with it. Raises `CursorError` for a
    cursor this service did not make, or one made for another order.
    """
    rec = RecommendationRow
    stmt = _filtered(session, select(rec, VerdictRow.document).join(VerdictRow), f)
    if cursor is not None:
        after = decode_cursor(cursor)
        if after.order is not order:
            raise CursorError(f"cursor belongs to the {after.order} order, not {order}; start again")
        stmt = stmt.where(_after(after))
    rows = session.execute(stmt.order_by(*_ORDER_BY[order]).limit(limit + 1)).all()
    items = [recommendation_dict(row, doc) for row, doc in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return items, encode_cursor(Cursor(order, last.priority, last.id)) if last else None


def get_recommendation(session: Session, rec_id: int) -> dict[str, Any] | None:
    """One recommendation with its revision history; None when there is none with this id."""
    return get_recommendations(session, [rec_id]).get(rec_id)


def _with_verdicts(session: Session, rec_ids: Sequence[int]) -> Iterator[list[Any]]:
    """The recommendations of these ids with their verdict documents, a chunk of ids at a time."""
    for part in chunks(sorted(set(rec_ids))):
        yield list(
            session.execute(
                select(RecommendationRow, VerdictRow.document)
                .join(VerdictRow)
                .where(RecommendationRow.id.in_(part))
            ).all()
        )


def recommendation_dicts(session: Session, rec_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`recommendation_dict` of each of these ids that has a recommendation (no history)."""
    return {
        row.id: recommendation_dict(row, doc)
        for rows in _with_verdicts(session, rec_ids)
        for row, doc in rows
    }


def get_recommendations(session: Session, rec_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`get_recommendation` of several ids with two statements per 500 (those with no recommendation
    are left out): the detail pages read at the same moment are read together."""
    found: dict[int, dict[str, Any]] = {}
    for rows in _with_verdicts(session, rec_ids):
        histories: dict[int, list[dict[str, Any]]] = {row.id: [] for row, _ in rows}
        revisions = session.execute(
            select(RecommendationRevisionRow)
            .where(RecommendationRevisionRow.recommendation_id.in_(list(histories)))
            .order_by(RecommendationRevisionRow.recommendation_id, RecommendationRevisionRow.revision)
        ).scalars()
        for r in revisions:
            histories[r.recommendation_id].append(_revision_dict(r))
        found.update(
            {row.id: {**recommendation_dict(row, doc), "history": histories[row.id]} for row, doc in rows}
        )
    return found


def _revision_dict(r: RecommendationRevisionRow) -> dict[str, Any]:
    return {
        "revision": r.revision,
        "change": r.change,
        "state": r.state,
        "target_version": r.target_version,
        "risk_level": r.risk_level,
        "priority": r.priority,
        "action": r.action,
        "scan_id": r.scan_id,
        "created_at": iso(r.created_at),
    }


# -- past SLA -------------------------------------------------------------------------------------


def past_sla_condition(now: datetime) -> ColumnElement[bool]:
    """`model.past_sla` in SQL: unresolved, and the SLA deadline (DESIGN §5.8) is before `now`."""
    rec = RecommendationRow
    return and_(rec.state.in_(UNRESOLVED), rec.sla_deadline.is_not(None), rec.sla_deadline < now)


@dataclass(frozen=True, slots=True)
class PastSla:
    recommendation_id: int
    sla_deadline: datetime


def critical_patches_past_sla(session: Session, *, now: datetime) -> list[PastSla]:
    """The critical patches past their SLA: what the breach job records, what the console counts."""
    rec = RecommendationRow
    stmt = select(rec.id, rec.sla_deadline).where(rec.critical_patch.is_(True), past_sla_condition(now))
    return [
        PastSla(rec_id, deadline)
        for rec_id, deadline in session.execute(stmt.order_by(rec.id))
        if deadline is not None  # for the type checker: the condition excludes NULL deadlines
    ]


def critical_patches_open(session: Session, *, tenant_uuid: str | None) -> int:
    """Unresolved critical patches of the fleet (None) or one tenant: the overview's tile and
    `powerx version metrics`."""
    rec = RecommendationRow
    stmt = (
        select(func.count()).select_from(rec).where(rec.critical_patch.is_(True), rec.state.in_(UNRESOLVED))
    )
    if tenant_uuid is not None:
        stmt = stmt.where(rec.tenant_uuid == tenant_uuid)
    return int(session.scalar(stmt) or 0)


# -- exposure -------------------------------------------------------------------------------------


@dataclass(slots=True)
class PluginExposure:
    plugin_id: str
    tenants: int = 0
    critical: int = 0
    high: int = 0
    critical_patches: int = 0
    past_sla: int = 0  # critical patches past their SLA
    open: int = 0

    @property
    def rank(self) -> tuple[int, int, int, int]:
        return (self.critical_patches, self.critical, self.high, self.tenants)


@dataclass(slots=True)
class Exposure:
    """Unresolved recommendations of the fleet or one tenant: by risk and state, critical patches
    (and those past their SLA), and the most exposed plugins."""

    open_by_risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RISK_LEVELS, 0))
    by_state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNRESOLVED, 0))
    critical_open: int = 0  # unresolved critical patches (open, decided or ignored): the metric's figure
    critical_awaiting: int = 0  # critical patches still open: nobody has decided yet
    critical_past_sla: int = 0  # critical patches past their SLA: the breach job's queue
    past_sla: int = 0  # unresolved recommendations of any risk past their SLA: the cards' "overdue"
    top_plugins: list[PluginExposure] = field(default_factory=list)

    @property
    def open_total(self) -> int:
        return sum(self.open_by_risk.values())


def exposure(session: Session, *, tenant_uuid: str | None, now: datetime, top: int = 10) -> Exposure:
    """The exposure figures in one grouped pass over the unresolved recommendations."""
    rec = RecommendationRow
    critical = rec.critical_patch.is_(True)
    stmt = (
        select(
            rec.plugin_id,
            rec.risk_level,
            rec.state,
            func.count(),
            func.sum(case((critical, 1), else_=0)),
            func.sum(case((and_(critical, past_sla_condition(now)), 1), else_=0)),
            func.sum(case((past_sla_condition(now), 1), else_=0)),
        )
        .where(rec.state.in_(UNRESOLVED))
        .group_by(rec.plugin_id, rec.risk_level, rec.state)
    )
    if tenant_uuid is not None:
        stmt = stmt.where(rec.tenant_uuid == tenant_uuid)
    result = Exposure()
    plugins: dict[str, PluginExposure] = {}
    for plugin_id, risk, state, count, criticals, late, overdue in session.execute(stmt):
        plugin = plugins.setdefault(plugin_id, PluginExposure(plugin_id))
        _add(result, plugin, risk, state, int(count), int(criticals or 0), int(late or 0))
        result.past_sla += int(overdue or 0)
    result.top_plugins = sorted(plugins.values(), key=lambda p: p.rank, reverse=True)[:top]
    return result


def _add(
    result: Exposure, plugin: PluginExposure, risk: str, state: str, count: int, criticals: int, late: int
) -> None:
    result.by_state[state] = result.by_state.get(state, 0) + count
    result.critical_open += criticals
    result.critical_past_sla += late
    plugin.tenants += count  # one recommendation per (tenant, plugin)
    plugin.critical_patches += criticals
    plugin.past_sla += late
    plugin.critical += count if risk == "critical" else 0
    plugin.high += count if risk == "high" else 0
    if state == RecommendationState.OPEN.value:
        result.open_by_risk[risk] = result.open_by_risk.get(risk, 0) + count
        result.critical_awaiting += criticals
        plugin.open += count


def open_counts(session: Session, tenant_uuids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per tenant: its open recommendations and how many of them are critical."""
    if not tenant_uuids:
        return {}
    rec = RecommendationRow
    stmt = (
        select(rec.tenant_uuid, func.count(), func.sum(case((rec.risk_level == "critical", 1), else_=0)))
        .where(rec.tenant_uuid.in_(list(tenant_uuids)), rec.state == RecommendationState.OPEN.value)
        .group_by(rec.tenant_uuid)
    )
    return {t: (int(n), int(c or 0)) for t, n, c in session.execute(stmt)}


def same_finding_elsewhere(session: Session, *, plugin_id: str, current: str, target: str | None) -> int:
    """Unresolved recommendations (any tenant) with the same plugin, version and target."""
    rec = RecommendationRow
    stmt = (
        select(func.count())
        .select_from(rec)
        .where(
            rec.plugin_id == plugin_id,
            rec.current_version == current,
            rec.target_version.is_(None) if target is None else rec.target_version == target,
            rec.state.in_(UNRESOLVED),
        )
    )
    return int(session.scalar(stmt) or 0)


# -- trends ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatchTrends:
    """Critical patches resolved in a window, by the week they were resolved."""

    hours_weekly: list[WeekValue]  # average hours from first sight to resolution
    sla_hit_weekly: list[WeekValue]  # share resolved by their SLA deadline (of those with one)
    sla_hit_rate: float | None
    sla_counted: int


def _in_scope(tenant_uuid: str | None) -> ColumnElement[bool]:
    return true() if tenant_uuid is None else RecommendationRow.tenant_uuid == tenant_uuid


def critical_patch_trends(session: Session, *, tenant_uuid: str | None, window: Window) -> PatchTrends:
    """Time to patch and SLA hits of critical patches, by the week they were resolved."""
    rec = RecommendationRow
    week = week_of(session, rec.resolved_at, window)
    hours = (epoch(session, rec.resolved_at) - epoch(session, rec.first_seen_at)) / 3600.0
    stmt = (
        select(
            week,
            func.avg(hours),
            func.count(),
            func.sum(case((rec.resolved_at <= rec.sla_deadline, 1), else_=0)),
            func.sum(case((rec.sla_deadline.is_not(None), 1), else_=0)),
        )
        .where(
            rec.critical_patch.is_(True),
            rec.state == RecommendationState.RESOLVED.value,
            rec.resolved_at >= window.start,
            rec.resolved_at <= window.now,
            _in_scope(tenant_uuid),
        )
        .group_by(week)
    )
    patch: dict[int, tuple[float | None, int]] = {}
    sla: dict[int, tuple[float | None, int]] = {}
    hits = counted = 0
    for raw_week, avg_hours, count, hit_count, with_deadline in session.execute(stmt):
        week_no, hit, dated = int(raw_week), int(hit_count or 0), int(with_deadline or 0)
        patch[week_no] = (float(avg_hours) if avg_hours is not None else None, int(count))
        sla[week_no] = (hit / dated if dated else None, dated)
        hits, counted = hits + hit, counted + dated
    return PatchTrends(
        series(window.weeks, patch), series(window.weeks, sla), hits / counted if counted else None, counted
    )


# -- grouped by advisory --------------------------------------------------------------------------

_SEVERITY_RANK: Final = {level: rank for rank, level in enumerate(reversed(RISK_LEVELS))}


@dataclass(slots=True)
class AdvisoryGroup:
    """One advisory across the open recommendations it affects (one row of the grouped view)."""

    advisory_id: str
    summary: str = ""
    severity: str = "none"
    exploited: bool = False
    open: int = 0  # open recommendations (tenant and plugin) it affects
    past_sla: int = 0
    plugins: set[str] = field(default_factory=set)
    fixed_in: set[str] = field(default_factory=set)
    # what a bulk decision would select: (plugin, target) → open recommendations (None: no target)
    targets: dict[tuple[str, str | None], int] = field(default_factory=dict)

    @property
    def rank(self) -> tuple[int, bool, int]:
        return (_SEVERITY_RANK.get(self.severity, 0), self.exploited, self.open)

    @property
    def paths(self) -> list[tuple[str, str | None, int]]:
        """(plugin, target, open recommendations), by plugin and target; no target last."""
        return sorted(
            ((p, t, n) for (p, t), n in self.targets.items()), key=lambda x: (x[0], x[1] is None, x[1])
        )


def _advisories_of(session: Session, fingerprints: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for part in chunks(sorted(set(fingerprints))):
        stmt = select(VerdictRow.fingerprint, VerdictRow.document["advisories"]).where(
            VerdictRow.fingerprint.in_(part)
        )
        found.update({fp: list(advisories or []) for fp, advisories in session.execute(stmt)})
    return found


def advisory_groups(session: Session, *, tenant_uuid: str | None, now: datetime) -> list[AdvisoryGroup]:
    """The open recommendations grouped by the advisories affecting them, worst first.

    One grouped pass over the open recommendations by (verdict, plugin, target); advisories are
    read from the distinct verdicts only, so the cost does not grow with the tenants per verdict.
    """
    rec = RecommendationRow
    stmt = (
        select(
            rec.verdict,
            rec.plugin_id,
            rec.target_version,
            func.count(),
            func.sum(case((past_sla_condition(now), 1), else_=0)),
        )
        .where(rec.state == RecommendationState.OPEN.value, _in_scope(tenant_uuid))
        .group_by(rec.verdict, rec.plugin_id, rec.target_version)
    )
    rows = session.execute(stmt).all()
    advisories = _advisories_of(session, [r[0] for r in rows])
    groups: dict[str, AdvisoryGroup] = {}
    for fingerprint, plugin_id, target, count, late in rows:
        for a in advisories.get(fingerprint, []):
            _add_to_group(groups, a, plugin_id, target, int(count), int(late or 0))
    return sorted(groups.values(), key=lambda g: g.rank, reverse=True)


def _add_to_group(
    groups: dict[str, AdvisoryGroup],
    a: dict[str, Any],
    plugin_id: str,
    target: str | None,
    count: int,
    late: int,
) -> None:
    advisory_id = str(a.get("id") or "")
    if not advisory_id:
        return
    group = groups.setdefault(advisory_id, AdvisoryGroup(advisory_id, summary=str(a.get("summary") or "")))
    severity = str(a.get("severity") or "medium")
    if _SEVERITY_RANK.get(severity, 0) > _SEVERITY_RANK.get(group.severity, 0):
        group.severity = severity
    group.exploited = group.exploited or bool(a.get("exploited"))
    group.open += count
    group.past_sla += late
    group.plugins.add(plugin_id)
    if a.get("fixed_in"):
        group.fixed_in.add(str(a["fixed_in"]))
    group.targets[plugin_id, target] = group.targets.get((plugin_id, target), 0) + count


def verdicts_with_advisory(
    session: Session, advisory_id: str, *, plugin_id: str | None = None
) -> tuple[str, ...]:
    """The stored verdicts that list `advisory_id` among their advisories; with `plugin_id`, only
    the verdicts of that plugin's unresolved recommendations (read through the plugin index)."""
    if plugin_id is not None:
        rec = RecommendationRow
        used = select(rec.verdict).where(rec.plugin_id == plugin_id, rec.state.in_(UNRESOLVED)).distinct()
        candidates = _advisories_of(session, list(session.execute(used).scalars()))
        return tuple(fp for fp, advisories in candidates.items() if _lists(advisories, advisory_id))
    text = cast(VerdictRow.document, String)
    stmt = select(VerdictRow.fingerprint, VerdictRow.document["advisories"]).where(
        text.contains(json.dumps(advisory_id))
    )
    return tuple(fp for fp, advisories in session.execute(stmt) if _lists(advisories or [], advisory_id))


def _lists(advisories: list[Any], advisory_id: str) -> bool:
    return any(isinstance(a, dict) and a.get("id") == advisory_id for a in advisories)


def verdict_documents(session: Session, fingerprints: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The shared verdicts by fingerprint (co-upgrades, compatibility notes, advisories)."""
    found: dict[str, dict[str, Any]] = {}
    for part in chunks(sorted(set(fingerprints))):
        stmt = select(VerdictRow.fingerprint, VerdictRow.document).where(VerdictRow.fingerprint.in_(part))
        for fingerprint, document in session.execute(stmt):
            found[fingerprint] = document
    return found

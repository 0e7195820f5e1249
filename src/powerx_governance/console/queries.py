"""Console-specific reads: fleet posture, card pages, tenant search, card extras, adoption trends.

Everything here is scoped by an explicit keyword-only `tenant_uuid` (None: the fleet, for
operators only), and sized for 20,000 tenants: aggregates run in SQL (one grouped pass over
the recommendations), pages use keyset cursors on the (state, priority, id) and
(tenant, priority, id) indexes, and nothing loads the fleet's rows into Python.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from powerx_governance.audit.service import record_view
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.catalog.tables import PluginRow
from powerx_governance.decisions.model import DecisionKind, DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.queries import decode_cursor, encode_cursor, recommendation_dict
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.model import ScanStatus
from powerx_governance.scans.queries import last_fleet_scan, tenant_coverage, tenant_outcome
from powerx_governance.scans.tables import ScanRow

RISK_LEVELS: Final = ("critical", "high", "medium", "low", "none")
UNRESOLVED: Final = (
    RecommendationState.OPEN.value,
    RecommendationState.DECIDED.value,
    RecommendationState.IGNORED.value,
)
FINISHED: Final = (ScanStatus.SUCCEEDED.value, ScanStatus.INCOMPLETE.value, ScanStatus.FAILED.value)
WEEK_SECONDS: Final = 7 * 24 * 3600


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# -- posture ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastScan:
    scan_id: str
    status: str
    kind: str
    finished_at: datetime | None
    coverage_rate: float | None
    tenants_total: int
    tenants_scanned: int
    errors: int
    tenant_outcome: str | None = None  # a tenant's view: scanned | stale | failed in that scan


@dataclass(slots=True)
class PluginExposure:
    plugin_id: str
    tenants: int = 0
    critical: int = 0
    high: int = 0
    critical_patches: int = 0
    past_sla: int = 0
    open: int = 0

    @property
    def rank(self) -> tuple[int, int, int, int]:
        return (self.critical_patches, self.critical, self.high, self.tenants)


@dataclass(slots=True)
class Posture:
    """What the overview's tiles show, for the fleet or one tenant."""

    tenants: int
    installations: int
    last_scan: LastScan | None
    open_by_risk: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RISK_LEVELS, 0))
    by_state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNRESOLVED, 0))
    critical_open: int = 0
    critical_past_sla: int = 0
    top_plugins: list[PluginExposure] = field(default_factory=list)

    @property
    def open_total(self) -> int:
        return sum(self.open_by_risk.values())


def _last_scan(session: Session, tenant_uuid: str | None) -> LastScan | None:
    """The last fleet full scan: its figures for the fleet, or one tenant's part of it."""
    row = last_fleet_scan(session)
    if row is None:
        return None
    if tenant_uuid is None:
        return LastScan(
            row.scan_id,
            row.status,
            row.kind,
            row.finished_at,
            row.coverage_rate,
            row.tenants_total,
            row.tenants_scanned,
            len(row.errors),
        )
    coverage = tenant_coverage(session, row, tenant_uuid)
    outcome = tenant_outcome(row, tenant_uuid)
    return LastScan(
        row.scan_id,
        row.status,
        row.kind,
        row.finished_at,
        coverage["rate"],
        coverage["tenants_total"],
        coverage["tenants_scanned"],
        sum(1 for e in row.errors if e.get("tenant_uuid") == tenant_uuid),
        outcome.value if outcome is not None else None,
    )


def _count(session: Session, column: InstrumentedAttribute[str], tenant_uuid: str | None) -> int:
    stmt = select(func.count()).select_from(column.class_)
    if tenant_uuid is not None:
        stmt = stmt.where(column == tenant_uuid)
    return int(session.scalar(stmt) or 0)


def posture(session: Session, *, tenant_uuid: str | None, now: datetime, top: int = 10) -> Posture:
    """Counts by risk and state, critical patches (and those past SLA), top plugins: one grouped pass."""
    rec = RecommendationRow
    past_sla = case((and_(rec.critical_patch.is_(True), rec.sla_deadline < now), 1), else_=0)
    stmt = (
        select(
            rec.plugin_id,
            rec.risk_level,
            rec.state,
            func.count(),
            func.sum(case((rec.critical_patch.is_(True), 1), else_=0)),
            func.sum(past_sla),
        )
        .where(rec.state.in_(UNRESOLVED))
        .group_by(rec.plugin_id, rec.risk_level, rec.state)
    )
    if tenant_uuid is not None:
        stmt = stmt.where(rec.tenant_uuid == tenant_uuid)
    result = Posture(
        tenants=_count(session, TenantRow.tenant_uuid, tenant_uuid),
        installations=_count(session, InstallationRow.tenant_uuid, tenant_uuid),
        last_scan=_last_scan(session, tenant_uuid),
    )
    plugins: dict[str, PluginExposure] = {}
    for plugin_id, risk, state, count, criticals, late in session.execute(stmt):
        _add(
            result,
            plugins.setdefault(plugin_id, PluginExposure(plugin_id)),
            risk,
            state,
            count,
            criticals,
            late,
        )
    result.top_plugins = sorted(plugins.values(), key=lambda p: p.rank, reverse=True)[:top]
    return result


def _add(
    result: Posture, plugin: PluginExposure, risk: str, state: str, count: int, criticals: int, late: int
) -> None:
    count, criticals, late = int(count), int(criticals or 0), int(late or 0)
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
        plugin.open += count


# -- card pages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardFilter:
    """What the overview lists; `tenant_uuid` is the resolved scope (None: the fleet)."""

    tenant_uuid: str | None = None
    plugin_id: str | None = None
    risk_level: str | None = None
    action: str | None = None
    state: str | None = RecommendationState.OPEN.value
    tag: str | None = None


def has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    """The tenants whose `tags` list holds `tag` (jsonb containment on PostgreSQL, json_each on SQLite)."""
    if _dialect(session) == "postgresql":
        return TenantRow.tags.op("@>")(cast(literal(json.dumps([tag])), JSONB))
    values = func.json_each(TenantRow.tags).table_valued("value")
    return exists(select(literal(1)).select_from(values).where(values.c.value == tag))


def _filtered(session: Session, stmt: Select[Any], f: CardFilter) -> Select[Any]:
    rec = RecommendationRow
    # One tenant's cards come from the (tenant, priority, id) index; SQLite, without statistics,
    # would walk the fleet's (state, priority, id) index instead unless the state test hides it.
    state: Any = rec.state if f.tenant_uuid is None else rec.state.concat("")
    for column, value in (
        (rec.tenant_uuid, f.tenant_uuid),
        (rec.plugin_id, f.plugin_id),
        (rec.risk_level, f.risk_level),
        (rec.action, f.action),
        (state, f.state),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if f.tag is not None:
        tagged = select(TenantRow.tenant_uuid).where(has_tag(session, f.tag))
        stmt = stmt.where(rec.tenant_uuid.in_(tagged))
    return stmt


def card_page(
    session: Session, f: CardFilter, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of recommendations, highest priority first; the next page's cursor or None.

    Keyset order (priority desc, id desc) walks the priority indexes backwards, so page N costs
    what page 1 costs. Raises `CursorError` for a cursor this service did not make.
    """
    rec = RecommendationRow
    stmt = _filtered(session, select(rec, VerdictRow.document).join(VerdictRow), f)
    if cursor is not None:
        priority, rec_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(rec.priority, rec.id) < tuple_(priority, rec_id))
    rows = session.execute(stmt.order_by(rec.priority.desc(), rec.id.desc()).limit(limit + 1)).all()
    items = [recommendation_dict(row, doc) for row, doc in rows[:limit]]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return items, encode_cursor(last.priority, last.id) if last else None


# -- names --------------------------------------------------------------------------------------


def plugin_names(session: Session, plugin_ids: Sequence[str] | None = None) -> dict[str, str]:
    """Display names from the catalog (every plugin when `plugin_ids` is None)."""
    name = PluginRow.document["name"].as_string()
    stmt = select(PluginRow.plugin_id, name).order_by(PluginRow.plugin_id)
    if plugin_ids is not None:
        if not plugin_ids:
            return {}
        stmt = stmt.where(PluginRow.plugin_id.in_(sorted(set(plugin_ids))))
    return {plugin_id: found or plugin_id for plugin_id, found in session.execute(stmt)}


@dataclass(frozen=True, slots=True)
class TenantLabel:
    tenant_uuid: str
    tenant_key: str | None
    name: str | None
    tags: tuple[str, ...] = ()
    plan: str | None = None
    core_version: str | None = None
    fetched_at: datetime | None = None
    scanned_at: datetime | None = None

    @property
    def display(self) -> str:
        return self.name or self.tenant_key or self.tenant_uuid


def _label(row: TenantRow) -> TenantLabel:
    return TenantLabel(
        row.tenant_uuid,
        row.tenant_key,
        row.name,
        tuple(str(t) for t in row.tags),
        row.plan,
        row.core_version,
        row.fetched_at,
        row.scanned_at,
    )


def tenant_labels(session: Session, tenant_uuids: Sequence[str]) -> dict[str, TenantLabel]:
    if not tenant_uuids:
        return {}
    rows = session.execute(select(TenantRow).where(TenantRow.tenant_uuid.in_(sorted(set(tenant_uuids)))))
    return {row.tenant_uuid: _label(row) for row in rows.scalars()}


def tenant(session: Session, tenant_uuid: str) -> TenantLabel | None:
    row = session.get(TenantRow, tenant_uuid)
    return _label(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class TenantMatch:
    label: TenantLabel
    open: int
    critical: int


def _escape_like(text: str) -> str:
    """`text` matched literally by LIKE ... ESCAPE '\\': its %, _ and \\ are not wildcards."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def find_tenants(session: Session, query: str, *, limit: int = 25) -> list[TenantMatch]:
    """Tenants whose uuid, key or name starts with `query` (case-insensitive), with open counts."""
    prefix = _escape_like(query.strip().lower()) + "%"
    stmt = (
        select(TenantRow)
        .where(
            or_(
                func.lower(TenantRow.tenant_uuid).like(prefix, escape="\\"),
                func.lower(TenantRow.tenant_key).like(prefix, escape="\\"),
                func.lower(TenantRow.name).like(prefix, escape="\\"),
            )
        )
        .order_by(TenantRow.tenant_key, TenantRow.tenant_uuid)
        .limit(limit)
    )
    labels = [_label(r) for r in session.execute(stmt).scalars()]
    counts = _open_counts(session, [label.tenant_uuid for label in labels])
    return [TenantMatch(label, *counts.get(label.tenant_uuid, (0, 0))) for label in labels]


def _open_counts(session: Session, tenant_uuids: list[str]) -> dict[str, tuple[int, int]]:
    if not tenant_uuids:
        return {}
    rec = RecommendationRow
    stmt = (
        select(rec.tenant_uuid, func.count(), func.sum(case((rec.risk_level == "critical", 1), else_=0)))
        .where(rec.tenant_uuid.in_(tenant_uuids), rec.state == RecommendationState.OPEN.value)
        .group_by(rec.tenant_uuid)
    )
    return {t: (int(n), int(c or 0)) for t, n, c in session.execute(stmt)}


def known_tags(session: Session, *, tenant_uuid: str | None, limit: int = 200) -> list[str]:
    """Tags for the filter's suggestions: the tenant's own, or a bounded sample of the fleet's."""
    stmt = select(TenantRow.tags)
    stmt = stmt.where(TenantRow.tenant_uuid == tenant_uuid) if tenant_uuid else stmt.limit(2000)
    found = {str(tag) for tags in session.execute(stmt).scalars() for tag in tags}
    return sorted(found)[:limit]


# -- one card -----------------------------------------------------------------------------------


def installation(session: Session, *, tenant_uuid: str, plugin_id: str) -> InstallationRow | None:
    return session.get(InstallationRow, (tenant_uuid, plugin_id))


def same_finding_elsewhere(session: Session, *, plugin_id: str, current: str, target: str | None) -> int:
    """Unresolved recommendations of other tenants with the same plugin, version and target."""
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


def card_audit(
    session: Session,
    *,
    tenant_uuid: str,
    recommendation_id: int,
    decision_ids: Sequence[int],
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit records about a recommendation and the decisions taken on it, oldest first."""
    about = [
        and_(
            AuditEventRow.resource_type == "recommendation",
            AuditEventRow.resource_id == str(recommendation_id),
        )
    ]
    if decision_ids:
        about.append(
            and_(
                AuditEventRow.resource_type == "decision",
                AuditEventRow.resource_id.in_([str(d) for d in decision_ids]),
            )
        )
    stmt = (
        select(AuditEventRow)
        .where(AuditEventRow.tenant_uuid == tenant_uuid, or_(*about))
        .order_by(AuditEventRow.seq.desc())
        .limit(limit)
    )
    return [record_view(row) for row in reversed(list(session.execute(stmt).scalars()))]


# -- adoption trends ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeekValue:
    week: int  # 0 = the oldest week of the window
    value: float | None
    count: int


@dataclass(slots=True)
class Adoption:
    """Trend figures over `weeks` weeks ending now, for the fleet or one tenant."""

    start: datetime
    weeks: int
    accept_rate: float | None = None
    accept_weekly: list[WeekValue] = field(default_factory=list)
    decisions_weekly: dict[str, list[int]] = field(default_factory=dict)
    ignores_by_scope: list[tuple[str, int]] = field(default_factory=list)
    ignores_by_reason: list[tuple[str, int]] = field(default_factory=list)
    patch_hours_weekly: list[WeekValue] = field(default_factory=list)
    sla_hit_weekly: list[WeekValue] = field(default_factory=list)
    sla_hit_rate: float | None = None
    sla_counted: int = 0

    def week_start(self, week: int) -> datetime:
        return self.start + timedelta(weeks=week)


def _epoch(session: Session, column: Any) -> ColumnElement[float]:
    if _dialect(session) == "postgresql":
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _week(session: Session, column: Any, result: Adoption, now: datetime) -> ColumnElement[int]:
    """Week number in the window: (start + w weeks, start + (w + 1) weeks] is week w, now is the last."""
    back = (now.timestamp() - _epoch(session, column)) / WEEK_SECONDS
    whole = cast(func.floor(back), Integer) if _dialect(session) == "postgresql" else cast(back, Integer)
    return result.weeks - 1 - whole  # SQLite's cast truncates: the floor, as `back` is >= 0 here


def _in_scope(column: InstrumentedAttribute[str], tenant_uuid: str | None) -> ColumnElement[bool]:
    return true() if tenant_uuid is None else column == tenant_uuid


def _series(weeks: int, found: dict[int, tuple[float | None, int]]) -> list[WeekValue]:
    return [WeekValue(w, *found.get(w, (None, 0))) for w in range(weeks)]


def adoption(session: Session, *, tenant_uuid: str | None, now: datetime, weeks: int = 12) -> Adoption:
    start = now - timedelta(weeks=weeks)
    result = Adoption(start=start, weeks=weeks)
    _decision_trends(session, result, tenant_uuid, now)
    _ignores(session, result, tenant_uuid)
    _critical_trends(session, result, tenant_uuid, now)
    return result


def _decision_trends(session: Session, result: Adoption, tenant_uuid: str | None, now: datetime) -> None:
    d = DecisionRow
    week = _week(session, d.created_at, result, now)
    stmt = (
        select(week, d.kind, d.state, func.count())
        .where(d.created_at > result.start, d.created_at <= now, _in_scope(d.tenant_uuid, tenant_uuid))
        .group_by(week, d.kind, d.state)
    )
    by_kind = {k.value: [0] * result.weeks for k in DecisionKind}
    answered: dict[int, list[int]] = {}
    for w, kind, state, count in session.execute(stmt):
        if not 0 <= int(w) < result.weeks:
            continue
        by_kind.setdefault(kind, [0] * result.weeks)[int(w)] += int(count)
        if state != DecisionState.SUPERSEDED.value:
            pair = answered.setdefault(int(w), [0, 0])
            pair[0] += int(count) if state == DecisionState.FULFILLED.value else 0
            pair[1] += int(count)
    result.decisions_weekly = by_kind
    result.accept_weekly = _series(
        result.weeks, {w: (a / n if n else None, n) for w, (a, n) in answered.items()}
    )
    totals = (
        select(d.state, func.count())
        .where(d.state != DecisionState.SUPERSEDED.value, _in_scope(d.tenant_uuid, tenant_uuid))
        .group_by(d.state)
    )
    by_state = {state: int(n) for state, n in session.execute(totals)}
    decided = sum(by_state.values())
    result.accept_rate = by_state.get(DecisionState.FULFILLED.value, 0) / decided if decided else None


def _ignores(session: Session, result: Adoption, tenant_uuid: str | None) -> None:
    d = DecisionRow
    ignored = and_(d.kind == DecisionKind.IGNORE.value, _in_scope(d.tenant_uuid, tenant_uuid))
    by_scope = select(d.scope, func.count()).where(ignored).group_by(d.scope).order_by(func.count().desc())
    result.ignores_by_scope = [(scope or "target", int(n)) for scope, n in session.execute(by_scope)]
    by_reason = (
        select(d.reason, func.count())
        .where(ignored)
        .group_by(d.reason)
        .order_by(func.count().desc(), d.reason)
        .limit(8)
    )
    result.ignores_by_reason = [(reason or "(none)", int(n)) for reason, n in session.execute(by_reason)]


def _critical_trends(session: Session, result: Adoption, tenant_uuid: str | None, now: datetime) -> None:
    """Time to patch and SLA hits of critical patches, by the week they were resolved."""
    rec = RecommendationRow
    week = _week(session, rec.resolved_at, result, now)
    hours = (_epoch(session, rec.resolved_at) - _epoch(session, rec.first_seen_at)) / 3600.0
    in_time = case((rec.resolved_at <= rec.sla_deadline, 1), else_=0)
    stmt = (
        select(
            week,
            func.avg(hours),
            func.count(),
            func.sum(in_time),
            func.sum(case((rec.sla_deadline.is_not(None), 1), else_=0)),
        )
        .where(
            rec.critical_patch.is_(True),
            rec.state == RecommendationState.RESOLVED.value,
            rec.resolved_at > result.start,
            rec.resolved_at <= now,
            _in_scope(rec.tenant_uuid, tenant_uuid),
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
    result.patch_hours_weekly = _series(result.weeks, patch)
    result.sla_hit_weekly = _series(result.weeks, sla)
    result.sla_hit_rate = hits / counted if counted else None
    result.sla_counted = counted


# -- scans --------------------------------------------------------------------------------------


def scan_history(session: Session, *, limit: int, before: datetime | None = None) -> list[ScanRow]:
    stmt = select(ScanRow).order_by(ScanRow.requested_at.desc()).limit(limit)
    if before is not None:
        stmt = stmt.where(ScanRow.requested_at < before)
    return list(session.execute(stmt).scalars())


def active_scans(session: Session) -> int:
    stmt = select(func.count()).select_from(ScanRow).where(ScanRow.status.in_(("queued", "running")))
    return int(session.scalar(stmt) or 0)

"""Page contexts: what each console page shows, assembled from the services and the components' queries.

Each function takes an open session, an explicit tenant scope and the evaluation time, and
returns plain data for a template; routes stay parse → call → render.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from powerx_governance.audit.queries import records_about_recommendation
from powerx_governance.catalog.queries import advisory_references, plugin_names
from powerx_governance.console import charts, queries
from powerx_governance.console.charts import Point
from powerx_governance.console.forms import FormError
from powerx_governance.console.queries import Adoption
from powerx_governance.console.summary import FleetSummary
from powerx_governance.console.views import card
from powerx_governance.db.weeks import WeekValue
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.decisions.queries import (
    BulkSelection,
    batch_decisions,
    bulk_groups,
    bulk_sample,
    standing_decisions,
)
from powerx_governance.decisions.service import DecisionRequest, decision_dict, decisions_for
from powerx_governance.domain import Action, Severity
from powerx_governance.inventory.queries import installation, known_tags, tenant, tenant_labels
from powerx_governance.recommendations.model import RecommendationState
from powerx_governance.recommendations.queries import (
    ListOrder,
    RecommendationFilter,
    advisory_groups,
    count_recommendations,
    get_recommendation,
    list_recommendations,
    verdict_documents,
    verdicts_with_advisory,
)
from powerx_governance.scans.queries import active_scans, recent_scans, scan_progress

PAGE_SIZE: Final = 25
COUNT_CAP: Final = 10_000  # result counts beyond this read "more than 10,000": counting costs a scan
# Cards by priority, newest first among equals: the lister's order that walks the priority
# indexes backwards, so a deep page of the fleet costs what the first one does.
CARD_ORDER: Final = ListOrder.PRIORITY_NEWEST
STATE_CHOICES: Final = (
    *(s.value for s in RecommendationState if s is not RecommendationState.SUPERSEDED),
    "all",
)
RISK_CHOICES: Final = tuple(s.value for s in reversed(Severity))
ACTION_CHOICES: Final = tuple(a.value for a in Action)
ACTION_WORDS: Final = {
    "upgrade_now": "upgrade now",
    "schedule": "schedule an upgrade",
    "review": "review (no fix available)",
    "blocked": "blocked (no eligible fix)",
    "none": "nothing to do",
}


STATE_WORDS: Final = {
    "open": "Awaiting a decision",
    "decided": "Scheduled or upgrading",
    "ignored": "Ignored",
    "resolved": "Installed",
    "all": "Any state",
}


class FilterError(ValueError):
    """A filter value the console does not know."""


@dataclass(frozen=True, slots=True)
class Filters:
    """The overview's filters as the query string gave them (for the form and page links)."""

    risk: str | None = None
    plugin: str | None = None
    action: str | None = None
    state: str = RecommendationState.OPEN.value
    tag: str | None = None
    past_sla: bool = False
    critical_patch: bool = False
    advisory: str | None = None

    def card_filter(
        self, tenant_uuid: str | None, now: datetime, verdicts: tuple[str, ...] | None = None
    ) -> RecommendationFilter:
        return RecommendationFilter(  # past SLA implies unresolved (`past_sla_condition`)
            tenant_uuid=tenant_uuid,
            plugin_id=self.plugin,
            risk_level=self.risk,
            action=self.action,
            state=None if self.state == "all" else self.state,
            tenant_tags=(self.tag,) if self.tag else (),
            past_sla_at=now if self.past_sla else None,
            critical_patch=True if self.critical_patch else None,
            verdicts=verdicts,
        )

    def query(self, **more: str) -> dict[str, str]:
        given = {
            "risk": self.risk,
            "plugin": self.plugin,
            "action": self.action,
            "tag": self.tag,
            "advisory": self.advisory,
        }
        kept = {k: v for k, v in given.items() if v}
        flags = {k: "1" for k, on in (("past_sla", self.past_sla), ("critical", self.critical_patch)) if on}
        return {**kept, **flags, **({"state": self.state} if self.state != "open" else {}), **more}

    @property
    def active(self) -> bool:
        flags = (
            self.risk,
            self.plugin,
            self.action,
            self.tag,
            self.past_sla,
            self.critical_patch,
            self.advisory,
        )
        return any(flags) or self.state != "open"

    def described(self, plugin_names: dict[str, str]) -> list[str]:
        """The active filters in words, for the result line."""
        words = [f"affected by {self.advisory}"] if self.advisory else []
        words += [f"{self.risk} risk"] if self.risk else []
        words += [plugin_names.get(self.plugin, self.plugin)] if self.plugin else []
        words += [f"action: {ACTION_WORDS.get(self.action, self.action)}"] if self.action else []
        words += [f"tenants tagged {self.tag}"] if self.tag else []
        words += ["critical patches"] if self.critical_patch else []
        words += ["past their SLA"] if self.past_sla else []
        return [*words, STATE_WORDS.get(self.state, self.state).lower()]


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if not value:
        return None
    if value not in choices:
        raise FilterError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value


def filters_from(params: dict[str, str]) -> Filters:
    return Filters(
        risk=_choice("risk", params.get("risk"), RISK_CHOICES),
        plugin=(params.get("plugin") or "").strip() or None,
        action=_choice("action", params.get("action"), ACTION_CHOICES),
        state=_choice("state", params.get("state"), STATE_CHOICES) or "open",
        tag=(params.get("tag") or "").strip() or None,
        past_sla=params.get("past_sla") == "1",
        critical_patch=params.get("critical") == "1",
        advisory=(params.get("advisory") or "").strip()[:128] or None,
    )


def overview(
    session: Session,
    *,
    tenant_uuid: str | None,
    filters: Filters,
    cursor: str | None,
    now: datetime,
    summary: FleetSummary,
) -> dict[str, Any]:
    """Posture tiles, top plugins, and a page of cards (may raise CursorError).

    The fleet's posture comes from the summary cache; a tenant's is counted live.
    """
    fleet = summary.get() if tenant_uuid is None else None
    posture = fleet.posture if fleet else queries.posture(session, tenant_uuid=tenant_uuid, now=now)
    verdicts = (
        verdicts_with_advisory(session, filters.advisory, plugin_id=filters.plugin)
        if filters.advisory
        else None
    )
    wanted = filters.card_filter(tenant_uuid, now, verdicts)
    items, next_cursor = list_recommendations(
        session, wanted, limit=PAGE_SIZE, cursor=cursor, order=CARD_ORDER
    )
    # unfiltered, the open work is the posture's open total (the same rows, already counted)
    total = (
        posture.exposure.open_total
        if not filters.active
        else count_recommendations(session, wanted, cap=COUNT_CAP)
    )
    names = summary.plugin_names.get(session)
    tenants = tenant_labels(session, [i["tenant_uuid"] for i in items])
    cards = [
        card(i, plugin_name=names.get(i["plugin_id"]), tenant=tenants.get(i["tenant_uuid"]), now=now)
        for i in items
    ]
    _decorate(session, cards)
    return {
        "posture": posture,
        "posture_as_of": None if fleet is None or fleet.fresh else fleet.as_of,
        "cards": cards,
        "total": total,
        "total_capped": filters.active and total > COUNT_CAP,
        "active_filters": filters.described(names),
        "next_cursor": next_cursor,
        "first_page": cursor is None,
        "filters": filters,
        "plugin_names": names,
        "tags": known_tags(session, tenant_uuid=tenant_uuid),
        "risk_choices": RISK_CHOICES,
        "action_choices": ACTION_CHOICES,
        "state_choices": STATE_CHOICES,
        "state_words": STATE_WORDS,
        "action_words": ACTION_WORDS,
        "scope_tenant": tenant(session, tenant_uuid) if tenant_uuid else None,
    }


def _decorate(session: Session, cards: list[dict[str, Any]]) -> None:
    """Each card's standing decision and its advisories' reference pages."""
    standing = standing_decisions(session, [c["id"] for c in cards])
    refs = advisory_references(session, [a["id"] for c in cards for a in c["advisories"] if a["id"]])
    for c in cards:
        found = standing.get(c["id"])
        c["standing"] = decision_dict(found) if found else None
        c["advisories"] = [{**a, "url": refs.get(a["id"])} for a in c["advisories"]]


def _same_bulk_selection(session: Session, found: dict[str, Any]) -> int:
    """Other tenants' open recommendations a bulk decision for this plugin and target would answer
    (the same selection as `select_for_bulk`, so the card and the bulk preview agree)."""
    target = found.get("target_version")
    if target is None:
        return 0
    wanted = RecommendationFilter(plugin_id=found["plugin_id"], state="open", target_version=target)
    return count_recommendations(session, wanted, cap=COUNT_CAP) - (1 if found["state"] == "open" else 0)


def recommendation(session: Session, rec_id: int, now: datetime) -> dict[str, Any] | None:
    """One card with its revision history, decisions and audit entries (None: no such card)."""
    found = get_recommendation(session, rec_id)
    if found is None:
        return None
    tenant_uuid = found["tenant_uuid"]
    names = plugin_names(session, [found["plugin_id"]])
    decisions = [
        decision_dict(d)
        for d in decisions_for(session, tenant_uuid=tenant_uuid, recommendation_id=rec_id, limit=100)
    ]
    shown = card(
        found, plugin_name=names.get(found["plugin_id"]), tenant=tenant(session, tenant_uuid), now=now
    )
    _decorate(session, [shown])
    return {
        "card": shown,
        "history": list(reversed(found["history"])),
        "decisions": decisions,
        "audit": list(
            reversed(
                records_about_recommendation(
                    session,
                    tenant_uuid=tenant_uuid,
                    recommendation_id=rec_id,
                    decision_ids=[d["id"] for d in decisions],
                )
            )
        ),
        "installation": installation(session, tenant_uuid=tenant_uuid, plugin_id=found["plugin_id"]),
        "elsewhere": _same_bulk_selection(session, found),
    }


def _week_label(adoption: Adoption, week: int) -> str:
    monday = adoption.week_start(week).astimezone(UTC)
    return f"{monday.day} {monday:%b}"


def _points(adoption: Adoption, values: list[WeekValue], fmt: Any) -> list[Point]:
    return [
        Point(
            _week_label(adoption, v.week),
            v.value,
            "no data" if v.value is None else f"{fmt(v.value)} (n={v.count})",
        )
        for v in values
    ]


def adoption(session: Session, *, tenant_uuid: str | None, now: datetime, weeks: int = 12) -> dict[str, Any]:
    """The adoption charts (SVG) with the same values as tables."""
    data = queries.adoption(session, tenant_uuid=tenant_uuid, now=now, weeks=weeks)
    accept = _points(data, data.accept_weekly, charts.percent)
    patch = _points(data, data.patch_hours_weekly, charts.hours)
    sla = _points(data, data.sla_hit_weekly, charts.percent)
    totals = [sum(col) for col in zip(*data.decisions_weekly.values(), strict=True)] or [0] * weeks
    decided = [Point(_week_label(data, w), float(n), f"{n} decisions") for w, n in enumerate(totals)]
    scopes = [Point(s, float(n), str(n)) for s, n in data.ignores_by_scope]
    reasons = [Point(r, float(n), str(n)) for r, n in data.ignores_by_reason]
    return {
        "data": data,
        "weeks": weeks,
        "charts": [
            (
                "accept",
                "Accept rate by week of decision",
                charts.line_chart(
                    "Accept rate by week of decision", accept, fmt=charts.percent, fixed_max=1.0
                ),
                accept,
            ),
            (
                "decisions",
                "Decisions taken per week",
                charts.column_chart("Decisions taken per week", decided, fmt=charts.count),
                decided,
            ),
            (
                "patch",
                "Time to patch critical findings (average, by week resolved)",
                charts.line_chart("Time to patch critical findings", patch, fmt=charts.hours),
                patch,
            ),
            (
                "sla",
                "SLA hit rate of critical patches (by week resolved)",
                charts.line_chart("SLA hit rate of critical patches", sla, fmt=charts.percent, fixed_max=1.0),
                sla,
            ),
        ],
        "ignore_charts": [
            (
                "scope",
                "Ignored, by scope",
                charts.bar_list("Ignored recommendations by scope", scopes),
                scopes,
            ),
            (
                "reason",
                "Ignored, by reason",
                charts.bar_list("Ignored recommendations by reason", reasons),
                reasons,
            ),
        ],
        "scope_tenant": tenant(session, tenant_uuid) if tenant_uuid else None,
    }


def advisories(
    session: Session, *, tenant_uuid: str | None, now: datetime, summary: FleetSummary
) -> dict[str, Any]:
    """The open work grouped by advisory, worst first, with each group's bulk selections.

    The fleet's groups come from the summary cache (one pass over the fleet's open work, redone
    when the data changed); a tenant's are grouped live.
    """
    fleet = summary.advisories() if tenant_uuid is None else None
    groups = fleet.groups if fleet else advisory_groups(session, tenant_uuid=tenant_uuid, now=now)
    refs = advisory_references(session, [g.advisory_id for g in groups])
    return {
        "groups": groups,
        "refs": refs,
        "as_of": None if fleet is None or fleet.fresh else fleet.as_of,
        "plugin_names": summary.plugin_names.get(session),
        "open_total": sum(g.open for g in groups),
        "scope_tenant": tenant(session, tenant_uuid) if tenant_uuid else None,
    }


def scans(session: Session, *, limit: int = 30) -> dict[str, Any]:
    rows = recent_scans(session, limit=limit)
    return {"scans": [scan_progress(r) for r in rows], "active": active_scans(session)}


def batch(session: Session, batch_id: str) -> list[dict[str, Any]]:
    """The decisions of one bulk decision, with their tenants' names, for the result page."""
    rows = [decision_dict(r) for r in batch_decisions(session, batch_id)]
    labels = tenant_labels(session, [r["tenant_uuid"] for r in rows])
    return [{**r, "tenant": labels.get(r["tenant_uuid"])} for r in rows]


@dataclass(frozen=True, slots=True)
class BulkPreview:
    """What a bulk decision would record: the open recommendations of a selection, by target."""

    count: int
    targets: dict[str, int]  # target version ("" for none) → recommendations
    sample: list[dict[str, Any]]
    from_versions: list[str]
    co_upgrades: list[str]
    late: int  # upgraded after their SLA deadline at the scheduled time asked about (0: none asked)

    @property
    def one_target(self) -> str | None:
        """The single target version of the selection; None when mixed or missing."""
        return next(iter(self.targets)) or None if len(self.targets) == 1 else None


def bulk_preview(
    session: Session, selection: BulkSelection, *, show: int = 50, scheduled_for: datetime | None = None
) -> BulkPreview:
    """How many open recommendations a bulk decision would answer (the count it records), by target;
    aggregated in SQL, so a selection of thousands costs what one of ten does."""
    groups = bulk_groups(session, selection, scheduled_for=scheduled_for)
    rows = bulk_sample(session, selection, limit=show) if show else []
    labels = tenant_labels(session, [r.tenant_uuid for r in rows])
    verdicts = verdict_documents(session, [g.verdict for g in groups])
    targets: dict[str, int] = {}
    for g in groups:
        targets[g.target_version or ""] = targets.get(g.target_version or "", 0) + g.count
    co = sorted({str(n) for v in verdicts.values() for n in v.get("co_upgrades") or []})
    return BulkPreview(
        count=sum(g.count for g in groups),
        targets=dict(sorted(targets.items())),
        sample=[
            {
                "tenant": labels.get(r.tenant_uuid),
                "tenant_uuid": r.tenant_uuid,
                "current": r.current_version,
                "target": r.target_version,
                "risk": r.risk_level,
                "id": r.id,
            }
            for r in rows
        ],
        from_versions=sorted({g.current_version for g in groups}),
        co_upgrades=co,
        late=sum(g.late for g in groups),
    )


def bulk_check(
    session: Session,
    selection: BulkSelection,
    template: DecisionRequest,
    *,
    expected: str | None,
    late_accepted: bool,
) -> None:
    """What the bulk confirmation showed still holds: one target, the same count, late schedules
    acknowledged (FormError otherwise); run in the transaction that records the decisions."""
    preview = bulk_preview(session, selection, show=0, scheduled_for=template.scheduled_for)
    if preview.one_target is None and template.kind is not DecisionKind.IGNORE:
        raise FormError("target", "choose one target version: a bulk upgrade goes to one version")
    if str(preview.count) != (expected or ""):
        raise FormError(
            "expected",
            f"the selection changed since you confirmed it ({preview.count:,} now): review it again",
        )
    if preview.late and not late_accepted:
        raise FormError(
            "scheduled_for", "some tenants would be upgraded after their SLA deadline: confirm it"
        )

"""One read path on both stores: the SQL forms of tag selection and "past SLA" select exactly what
their Python definitions do, and the one lister pages through every row once in each order, with
cursors that belong to their order."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any, Final

import pytest

from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.session import transaction
from powerx_governance.decisions.queries import BulkSelection, select_for_bulk
from powerx_governance.domain import tags_match
from powerx_governance.inventory.queries import tagged_tenants
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.recommendations.model import past_sla
from powerx_governance.recommendations.queries import (
    CursorError,
    ListOrder,
    RecommendationFilter,
    critical_patches_open,
    critical_patches_past_sla,
    exposure,
    list_recommendations,
)
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.service import GovernanceService
from tests.conftest import NOW, ServiceFactory

Seeded = tuple[GovernanceService, list[dict[str, Any]]]
# "fin" and "finance%" are not "finance": a tag matches whole, never by prefix or pattern
TAGS: Final[tuple[list[str], ...]] = (
    [],
    ["finance"],
    ["finance", "eu"],
    ["eu"],
    ["retail"],
    ["fin"],
    ["finance%"],
)
STATES: Final = ("open", "decided", "ignored", "resolved")
PLUGIN: Final = "com.powerx.plugins.crm"
SELECTIONS: Final = [(), ("finance",), ("eu", "retail"), ("fin",), ("finance%",), ("nowhere",)]


def _tenant(i: int) -> dict[str, Any]:
    return {
        "tenant_uuid": f"t-{i:03d}",
        "tenant_key": f"k-{i:03d}",
        "name": None,
        "plan": "pro",
        "tags": TAGS[i % len(TAGS)],
        "core_version": "1.24.0",
        "host": None,
        "manifest_hash": "0" * 64,
        "scanned_at": NOW,
        "fetched_at": NOW,
        "dirty": False,
    }


def _recommendation(i: int) -> dict[str, Any]:
    deadline = [None, NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=1)][i % 4]
    return {
        "tenant_uuid": f"t-{i:03d}",
        "plugin_id": PLUGIN,
        "revision": 1,
        "state": STATES[i % 7 % 4],
        "fingerprint": f"{i:064d}",
        "verdict": "v" * 64,
        "current_version": "1.0.0",
        "target_version": "1.1.0",
        "latest_version": "1.1.0",
        "risk_level": "critical",
        "priority": i * 37 % 5 * 20,
        "action": "upgrade_now",
        "critical_patch": i % 5 != 0,
        "sla_deadline": deadline,
        "tenant_facts": {},
        "first_seen_at": NOW,
        "updated_at": NOW,
        "resolved_at": None,
        "scan_id": None,
    }


def _seed(service: GovernanceService, count: int = 60) -> list[dict[str, Any]]:
    recommendations = [_recommendation(i) for i in range(count)]
    verdict = {"fingerprint": "v" * 64, "created_at": NOW, "document": {"risk_level": "critical"}}
    with transaction(service.factory) as session:
        bulk_insert(session, TenantRow, [_tenant(i) for i in range(count)])
        bulk_insert(session, VerdictRow, [verdict])
        bulk_insert(session, RecommendationRow, recommendations)
    return recommendations


@pytest.fixture
def seeded(make_service: ServiceFactory) -> Seeded:
    service = make_service(POWERX_WORKER="0")
    return service, _seed(service)


def test_tag_selection_in_sql_is_tags_match(seeded: Seeded) -> None:
    service, recs = seeded
    carried = {f"t-{i:03d}": TAGS[i % len(TAGS)] for i in range(len(recs))}
    open_here = {r["tenant_uuid"] for r in recs if r["state"] == "open"}
    with service.factory() as session:
        for wanted in SELECTIONS:
            expected = {t for t, tags in carried.items() if tags_match(wanted, tags)}
            assert set(session.execute(tagged_tenants(session, wanted)).scalars()) == expected, wanted
            bulk = select_for_bulk(session, BulkSelection(plugin_id=PLUGIN, tenant_tags=wanted))
            assert {r.tenant_uuid for r in bulk} == expected & open_here, wanted


def test_past_sla_in_sql_is_the_model_definition(
    seeded: Seeded,
) -> None:
    service, recs = seeded
    late = [r for r in recs if r["critical_patch"] and past_sla(r["state"], r["sla_deadline"], NOW)]
    with service.factory() as session:
        found = critical_patches_past_sla(session, now=NOW)
        figures = exposure(session, tenant_uuid=None, now=NOW)
        assert figures.critical_open == critical_patches_open(session, tenant_uuid=None)
    assert len(found) == len(late) == figures.critical_past_sla > 0
    assert sum(p.past_sla for p in figures.top_plugins) == len(late)
    assert all(f.sla_deadline < NOW for f in found)


def _walk(service: GovernanceService, order: ListOrder, wanted: RecommendationFilter) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with service.factory() as session:
        for _ in itertools.count():
            page, cursor = list_recommendations(session, wanted, limit=7, cursor=cursor, order=order)
            items += page
            if cursor is None:
                return items
    raise AssertionError("unreachable")


@pytest.mark.parametrize("order", list(ListOrder))
def test_the_lister_pages_through_every_row_once_in_its_order(seeded: Seeded, order: ListOrder) -> None:
    service, recs = seeded
    priority = {r["tenant_uuid"]: r["priority"] for r in recs}
    for wanted in (RecommendationFilter(), RecommendationFilter(state="open", tenant_tags=("finance",))):
        walked = _walk(service, order, wanted)
        newest = order is ListOrder.PRIORITY_NEWEST
        keys = [(-priority[i["tenant_uuid"]], -i["id"] if newest else i["id"]) for i in walked]
        assert keys == sorted(keys)
        assert len({i["id"] for i in walked}) == len(walked)
    assert len(_walk(service, order, RecommendationFilter())) == len(recs)


def test_a_cursor_belongs_to_its_order(seeded: Seeded) -> None:
    service, _ = seeded
    with service.factory() as session:
        _, api_cursor = list_recommendations(session, RecommendationFilter(), limit=5, cursor=None)
        _, card_cursor = list_recommendations(
            session, RecommendationFilter(), limit=5, cursor=None, order=ListOrder.PRIORITY_NEWEST
        )
        assert api_cursor is not None
        assert card_cursor is not None
        with pytest.raises(CursorError):
            list_recommendations(
                session, RecommendationFilter(), limit=5, cursor=api_cursor, order=ListOrder.PRIORITY_NEWEST
            )
        with pytest.raises(CursorError):
            list_recommendations(session, RecommendationFilter(), limit=5, cursor=card_cursor)

"""The overview at fleet size (20,000 tenants) on SQLite and PostgreSQL: right figures, every page.

Rows are written straight into the store with the bulk writer (no scan), so the expected figures
are known independently of the console's queries. Timing is not asserted here: the figures are
in `bench/console_overview.py`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import httpx

from powerx_governance.auth.model import Role
from powerx_governance.console import queries
from powerx_governance.console.pages import CARD_ORDER
from powerx_governance.db.bulk import bulk_insert
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.recommendations.queries import RecommendationFilter, list_recommendations
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import NOW, LiveServer, ServiceFactory, issue_token
from tests.functional.console.support import sign_in

TENANTS: Final = 20_000
PLUGINS: Final = tuple(f"com.powerx.plugins.p{i}" for i in range(7))
RISKS: Final = ("critical", "high", "medium", "low", "none")
STATES: Final = ("open", "open", "open", "decided", "ignored", "resolved")


@dataclass(frozen=True)
class Seeded:
    recommendations: list[dict[str, Any]]


def _verdicts() -> list[dict[str, Any]]:
    return [
        {
            "fingerprint": risk.ljust(64, "0"),
            "created_at": NOW,
            "document": {
                "current_version": "1.0.0",
                "target_version": "1.1.0",
                "latest_version": "1.2.0",
                "update_type": "minor",
                "risk_level": risk,
                "action": "upgrade_now",
                "advisories": [],
                "reasons": [f"{risk} fixture"],
                "rule_ids": ["fixture"],
            },
        }
        for risk in RISKS
    ]


def _recommendation(n: int, tenant: str, plugin: str) -> dict[str, Any]:
    risk, state = RISKS[n % 5], STATES[n % 6]
    critical = risk == "critical"
    return {
        "tenant_uuid": tenant,
        "plugin_id": plugin,
        "revision": 1,
        "state": state,
        "fingerprint": f"{n:064d}",
        "verdict": risk.ljust(64, "0"),
        "current_version": "1.0.0",
        "target_version": "1.1.0",
        "latest_version": "1.2.0",
        "risk_level": risk,
        "priority": n * 7919 % 101,  # many ties: keyset paging must order by (priority, id)
        "action": "upgrade_now",
        "critical_patch": critical,
        "sla_deadline": NOW + timedelta(hours=-5 if n % 4 == 0 else 48) if critical else None,
        "tenant_facts": {"tenant_key": tenant, "core_version": "1.24.0", "channel": "stable"},
        "first_seen_at": NOW,
        "updated_at": NOW,
        "resolved_at": NOW if state == "resolved" else None,
        "scan_id": "scan-fixture",
    }


def _seed(service: GovernanceService) -> Seeded:
    tenants, installations, recommendations = [], [], []
    for i in range(TENANTS):
        uuid = f"tenant-{i:05d}"
        tenants.append(
            {"tenant_uuid": uuid, "tenant_key": f"key-{i:05d}", "name": f"Tenant {i:05d}", "plan": "pro",
             "tags": ["finance", "eu"] if i % 10 == 0 else ["retail"], "core_version": "1.24.0", "host": None,
             "manifest_hash": "0" * 64, "scanned_at": NOW, "fetched_at": NOW, "dirty": False}
        )  # fmt: skip
        for j in range(2):
            plugin = PLUGINS[(i + j) % len(PLUGINS)]
            installations.append(
                {"tenant_uuid": uuid, "plugin_id": plugin, "version": "1.0.0", "channel": "stable",
                 "state": "enabled", "auto_update": False, "pinned": False}
            )  # fmt: skip
            recommendations.append(_recommendation(2 * i + j, uuid, plugin))
    scan: dict[str, Any] = {"scan_id": "scan-fixture", "kind": "full", "fleet": True, "trigger": "api"}
    scan |= {"status": "succeeded", "tenant_filter": [], "attempt": 1, "errors": [], "timings": {}}
    scan |= {"requested_at": NOW, "started_at": NOW, "finished_at": NOW, "coverage_rate": 1.0}
    scan |= {"tenants_total": TENANTS, "tenants_scanned": TENANTS, "tenants_failed": 0}
    scan |= {"installations": len(installations), "findings": len(recommendations)}
    scan |= {"changes": len(recommendations)}
    with transaction(service.factory) as session:
        bulk_insert(session, TenantRow, tenants)
        bulk_insert(session, InstallationRow, installations)
        bulk_insert(session, VerdictRow, _verdicts())
        bulk_insert(session, RecommendationRow, recommendations)
        bulk_insert(session, ScanRow, [scan])
    return Seeded(recommendations)


def _walk(service: GovernanceService, wanted: RecommendationFilter, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    with service.factory() as session:
        while True:
            page, cursor = list_recommendations(session, wanted, limit=limit, cursor=cursor, order=CARD_ORDER)
            items += page
            if cursor is None:
                return items


def test_overview_at_20000_tenants(make_service: ServiceFactory) -> None:
    service = make_service(POWERX_WORKER="0")
    data = _seed(service)
    _check_queries(service, data)
    _check_pages(service)


def _check_queries(service: GovernanceService, data: Seeded) -> None:
    unresolved = [r for r in data.recommendations if r["state"] != "resolved"]
    with service.factory() as session:
        posture = queries.posture(session, tenant_uuid=None, now=NOW)
    assert (posture.tenants, posture.installations) == (TENANTS, 2 * TENANTS)
    assert posture.last_scan is not None
    assert posture.last_scan.coverage_rate == 1.0
    open_now = [r for r in unresolved if r["state"] == "open"]
    assert posture.exposure.open_by_risk == dict(Counter(r["risk_level"] for r in open_now))
    assert posture.exposure.critical_open == sum(r["critical_patch"] for r in unresolved)
    late = [r for r in unresolved if r["critical_patch"] and r["sla_deadline"] < NOW]
    assert posture.exposure.critical_past_sla == len(late) > 0
    exposure = Counter(r["plugin_id"] for r in unresolved)
    assert {p.plugin_id: p.tenants for p in posture.exposure.top_plugins} == dict(exposure)

    finance = {f"tenant-{i:05d}" for i in range(0, TENANTS, 10)}
    wanted = [r for r in data.recommendations if r["state"] == "open" and r["tenant_uuid"] in finance]
    walked = _walk(service, RecommendationFilter(state="open", tenant_tags=("finance",)), limit=500)
    assert len(walked) == len(wanted)
    assert {(i["tenant_uuid"], i["plugin_id"]) for i in walked} == {
        (r["tenant_uuid"], r["plugin_id"]) for r in wanted
    }
    priority = {(r["tenant_uuid"], r["plugin_id"]): r["priority"] for r in wanted}
    order = [(priority[i["tenant_uuid"], i["plugin_id"]], i["id"]) for i in walked]
    assert order == sorted(order, reverse=True)

    critical = _walk(
        service, RecommendationFilter(state="open", risk_level="critical", plugin_id=PLUGINS[3]), limit=250
    )
    assert len(critical) == sum(
        1 for r in data.recommendations
        if r["state"] == "open" and r["risk_level"] == "critical" and r["plugin_id"] == PLUGINS[3]
    )  # fmt: skip
    with service.factory() as session:
        one = queries.posture(session, tenant_uuid="tenant-00042", now=NOW)
    assert (one.tenants, one.installations) == (1, 2)


def _check_pages(service: GovernanceService) -> None:
    with LiveServer(service, background=False) as live, httpx.Client(base_url=live.base_url) as client:
        sign_in(client, issue_token(service, Role.OPERATOR))
        page = client.get("/console")
        assert page.status_code == 200
        assert re.search(r'data-figure="tenants">20,000<', page.text)
        assert re.search(r'data-figure="installations">40,000<', page.text)
        deep = client.get("/console", params={"tag": "finance", "risk": "critical"})
        assert deep.status_code == 200
        assert deep.text.count('<article class="card') == 25
        found = re.search(r'rel="next" href="([^"]+)"', deep.text)
        assert found is not None
        assert client.get(found.group(1).replace("&amp;", "&")).status_code == 200

"""The governance API over real HTTP: scans, recommendations, pushes, tenant isolation, errors.

Each backend gets one service (module scope) that scans the example fleet once through the API;
the read-only tests share it. Tests that change data get a database of their own. The CLI
engine's report for the same inputs is the oracle the stored recommendations are held to.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import jsonschema
import pytest

from powerx_governance.auth.model import Role
from powerx_governance.policy.loader import load_rules
from powerx_governance.recommendations.queries import get_recommendation
from powerx_governance.service import GovernanceService
from tests.conftest import (
    BACKENDS,
    NOW,
    REPO,
    RULES,
    Backend,
    LiveServer,
    ServiceFactory,
    built_services,
    issue_revoked_token,
    issue_token,
    postgres_getter,
    provisioned_database,
    store_tenant,
)
from tests.functional.service.support import (
    API,
    Inputs,
    as_finding,
    as_stored,
    every_page,
    key,
    metric,
    wait_for_scan,
)

SCHEMA: Final = json.loads((REPO / "docs/schemas/scan-report.v1.schema.json").read_text(encoding="utf-8"))
TENANT_A: Final = "sandbox-tenant-a"
TENANT_B: Final = "90072176-2ac5-5c15-a81e-9bece3eb7393"  # acme-retail
BROKEN_TENANT: Final = "0b9d6f0e-1c55-4f0a-8c1e-7a2f3e4d5c6b"  # zz-broken-tenant.yaml
CRM: Final = "com.powerx.plugins.crm"
MAX_BODY: Final = 8192
PROBLEM: Final = "application/problem+json"
PAGE: Final = 50
AUDIT: Final = "/internal/audit/version"


@dataclass(frozen=True)
class Fleet:
    """The example fleet scanned once through the API, on one backend."""

    backend: Backend
    live: LiveServer
    service: GovernanceService
    tokens: Mapping[str, str]
    trigger: httpx.Response
    scan: dict[str, Any]
    items: list[dict[str, Any]]  # every recommendation, as the operator pages through them
    pages: int

    def client(self, who: str | None = "operator") -> httpx.Client:
        return self.live.client(self.tokens[who] if who else None)

    def item(self, tenant: str, plugin: str) -> dict[str, Any]:
        return next(i for i in self.items if key(i) == (tenant, plugin))


def _tokens(service: GovernanceService) -> dict[str, str]:
    return {
        "service": issue_token(service, Role.SERVICE),
        "operator": issue_token(service, Role.OPERATOR),
        "tenant_admin": issue_token(service, Role.TENANT_ADMIN, TENANT_A),
        "viewer": issue_token(service, Role.VIEWER, TENANT_A),
        "tenant_admin_b": issue_token(service, Role.TENANT_ADMIN, TENANT_B),
        "viewer_b": issue_token(service, Role.VIEWER, TENANT_B),
        "revoked": issue_revoked_token(service, Role.OPERATOR),
    }


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CLI engine's report on the example fleet (as JSON: the same data) at the same evaluation time."""
    return Inputs(tmp_path_factory.mktemp("oracle")).oracle()


@pytest.fixture(scope="module", params=BACKENDS, ids=list(BACKENDS))
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    backend: Backend = request.param
    directory = tmp_path_factory.mktemp(f"fleet-{backend}")
    with (
        provisioned_database(backend, directory, postgres_getter(request)) as url,
        built_services(url, directory) as build,
    ):
        # the access matrix sends the revoked token dozens of times a minute, on purpose
        service = build(
            POWERX_MAX_BODY_BYTES=str(MAX_BODY),
            POWERX_AUTH_THROTTLE_ADDRESS="1000/minute",
            POWERX_AUTH_THROTTLE_TOKEN="1000/minute",
        )
        tokens = _tokens(service)
        with LiveServer(service) as live, live.client(tokens["operator"]) as client:
            trigger = client.post(f"{API}/scan", json={})
            assert trigger.status_code == 202, trigger.text
            scan = wait_for_scan(client, trigger.json()["scan_id"])
            items, pages = every_page(client, limit=PAGE)
            yield Fleet(backend, live, service, tokens, trigger, scan, items, pages)


@pytest.fixture
def operator(fleet: Fleet) -> Iterator[httpx.Client]:
    with fleet.client("operator") as client:
        yield client


# -- a scan through the API ---------------------------------------------------------------------


def test_a_triggered_scan_answers_202_with_its_id_and_location(fleet: Fleet) -> None:
    body = fleet.trigger.json()
    location = f"{API}/scans/{body['scan_id']}"
    assert fleet.trigger.headers["location"] == location
    assert body == {
        "scan_id": body["scan_id"],
        "status": "queued",
        "status_url": location,
        "report_url": f"{location}/report",
    }


def test_the_scan_reports_true_coverage(fleet: Fleet, oracle: dict[str, Any]) -> None:
    """100 manifests, one intentionally broken: 99 scanned; the rules' min_coverage decides the status."""
    min_coverage = load_rules(RULES).defaults.min_coverage
    scan = fleet.scan
    assert min_coverage == 0.99  # the shipped rules; 99/100 meets it exactly
    assert scan["status"] == ("succeeded" if min_coverage <= 99 / 100 else "incomplete")
    assert (scan["kind"], scan["trigger"], scan["attempt"], scan["retry_of"]) == ("full", "api", 1, None)
    assert scan["coverage"] == {
        "tenants_total": 100,
        "tenants_scanned": 99,
        "tenants_stale": 0,
        "tenants_failed": 1,
        "installations": oracle["coverage"]["installations"],
        "rate": 0.99,
    }
    assert scan["findings"] == scan["changes"] == len(oracle["findings"]) == len(fleet.items)
    [error] = scan["errors"]
    assert error["tenant_uuid"] == BROKEN_TENANT
    assert error["source"].endswith("zz-broken-tenant.yaml")
    assert "core_version" in error["error"]
    assert "'1.24.x'" in error["error"]
    assert _sourceless(scan["errors"]) == _sourceless(oracle["errors"])
    for moment in ("requested_at", "started_at", "finished_at"):
        assert datetime.fromisoformat(scan[moment]) == NOW


def _sourceless(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report errors without the file they came from (the oracle reads a JSON copy of the YAML)."""
    return [{k: v for k, v in e.items() if k != "source"} for e in errors]


def test_recommendations_are_exactly_the_findings_of_the_cli_engine(
    fleet: Fleet, oracle: dict[str, Any]
) -> None:
    stored = {key(i): as_finding(i) for i in fleet.items}
    expected = {key(f): as_stored(f) for f in oracle["findings"]}
    assert stored.keys() == expected.keys()
    assert [k for k in expected if stored[k] != expected[k]] == []
    assert {(i["state"], i["revision"], i["scan_id"]) for i in fleet.items} == {
        ("open", 1, fleet.scan["scan_id"])
    }


def test_the_listing_is_sorted_by_priority_and_pages_return_every_item_once(fleet: Fleet) -> None:
    items = fleet.items
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids)) == fleet.scan["findings"]
    assert fleet.pages == -(-len(items) // PAGE)
    assert [(-i["priority"], i["id"]) for i in items] == sorted((-i["priority"], i["id"]) for i in items)
    assert items[0]["priority"] > items[-1]["priority"]


def test_small_pages_of_one_tenant_cover_it_exactly_once(fleet: Fleet, operator: httpx.Client) -> None:
    paged, pages = every_page(operator, limit=3, tenant=TENANT_A)
    expected = [i for i in fleet.items if i["tenant_uuid"] == TENANT_A]
    assert [i["id"] for i in paged] == [i["id"] for i in expected]
    assert pages == -(-len(expected) // 3)
    assert len(expected) > 3


FILTERS: Final = {"tenant": "tenant_uuid", "plugin": "plugin_id", "risk": "risk_level", "action": "action"}


@pytest.mark.parametrize(
    "filters",
    [
        {"tenant": TENANT_A},
        {"plugin": CRM},
        {"risk": "critical"},
        {"risk": "none"},
        {"action": "upgrade_now"},
        {"action": "blocked"},
        {"state": "open"},
        {"plugin": CRM, "risk": "high"},
        {"tenant": TENANT_B, "action": "review"},
    ],
    ids=lambda f: "&".join(f"{k}={v}" for k, v in f.items()),
)
def test_filters_select_exactly_the_matching_recommendations(
    fleet: Fleet, operator: httpx.Client, filters: dict[str, str]
) -> None:
    fields = {**FILTERS, "state": "state"}
    expected = [i for i in fleet.items if all(i[fields[k]] == v for k, v in filters.items())]
    paged, _ = every_page(operator, limit=60, **filters)
    assert expected
    assert paged == expected


# -- tenant= takes a uuid or a key, as the CLI's --tenant does ------------------------------------

TENANT_A_KEY: Final = "sandbox-a"
TENANT_B_KEY: Final = "acme-retail"


@pytest.mark.parametrize("who", ["operator", "service", "tenant_admin", "viewer"])
def test_a_tenant_key_lists_what_its_uuid_lists(fleet: Fleet, who: str) -> None:
    with fleet.client(who) as client:
        by_key, _ = every_page(client, limit=40, tenant=TENANT_A_KEY)
        by_key_filtered, _ = every_page(client, limit=40, tenant=TENANT_A_KEY, plugin=CRM)
    assert by_key == [i for i in fleet.items if i["tenant_uuid"] == TENANT_A]
    assert by_key_filtered == [fleet.item(TENANT_A, CRM)]


@pytest.mark.parametrize("path", [f"{API}/decisions", AUDIT])
@pytest.mark.parametrize("who", ["operator", "tenant_admin"])
def test_decisions_and_audit_take_a_tenant_key_too(fleet: Fleet, who: str, path: str) -> None:
    with fleet.client(who) as client:
        by_uuid = client.get(path, params={"tenant": TENANT_A})
        by_key = client.get(path, params={"tenant": TENANT_A_KEY})
    assert by_uuid.status_code == by_key.status_code == 200, by_key.text
    assert by_key.json() == by_uuid.json()


@pytest.mark.parametrize("path", [f"{API}/recommendations", f"{API}/decisions", AUDIT])
def test_another_tenants_key_is_not_found_for_a_tenant_bound_caller(fleet: Fleet, path: str) -> None:
    with fleet.client("tenant_admin") as client:
        response = client.get(path, params={"tenant": TENANT_B_KEY})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize("path", [f"{API}/recommendations", f"{API}/decisions"])
def test_a_tenant_no_store_knows_is_not_found(fleet: Fleet, operator: httpx.Client, path: str) -> None:
    response = operator.get(path, params={"tenant": "no-such-tenant"})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert "no-such-tenant" in response.json()["detail"]


@pytest.mark.parametrize("path", [f"{API}/recommendations", f"{API}/decisions", AUDIT])
def test_a_tenant_name_with_nul_is_a_4xx_problem(operator: httpx.Client, path: str) -> None:
    response = operator.get(path, params={"tenant": "acme\x00retail"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM


def test_the_audit_trail_of_a_tenant_that_is_gone_stays_listable(operator: httpx.Client) -> None:
    """Audit records outlive their tenant (a smoke tenant's clean-up): an unknown name is taken as a uuid."""
    response = operator.get(AUDIT, params={"tenant": "0f0e0d0c-gone-tenant"})
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_a_tenant_key_that_names_two_tenants_asks_for_the_uuid(make_service: ServiceFactory) -> None:
    service = make_service()
    store_tenant(service, "11111111-aaaa-4aaa-8aaa-111111111111", tenant_key="twin")
    store_tenant(service, "22222222-bbbb-4bbb-8bbb-222222222222", tenant_key="twin")
    with LiveServer(service, background=False) as live, live.client(issue_token(service, Role.OPERATOR)) as c:
        ambiguous = c.get(f"{API}/recommendations", params={"tenant": "twin"})
        by_uuid = c.get(f"{API}/recommendations", params={"tenant": "22222222-bbbb-4bbb-8bbb-222222222222"})
    assert ambiguous.status_code == 422
    assert ambiguous.json()["errors"][0]["field"] == "tenant"
    assert "give the uuid" in ambiguous.json()["detail"]
    assert by_uuid.status_code == 200
    assert by_uuid.json() == {"items": [], "next_cursor": None}


# -- /docs works offline --------------------------------------------------------------------------


def test_the_api_docs_load_nothing_from_another_origin(fleet: Fleet) -> None:
    with fleet.client(None) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assets = {u for u in urls if u.startswith("/docs/assets/")}
        answers = {u: client.get(u) for u in assets}
        redoc = client.get("/redoc")
    assert "//" not in "".join(urls), urls  # no http(s):// nor protocol-relative URL
    assert not re.search(r"https?://", page.text)
    shipped = {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    assert {u.rsplit("/", 1)[1] for u in assets} == shipped
    assert {u: r.status_code for u, r in answers.items()} == dict.fromkeys(assets, 200)
    assert all(len(r.content) > 500 for r in answers.values())
    assert "/openapi.json" in urls
    assert redoc.status_code == 404  # FastAPI's ReDoc page loads from a CDN: not served


def test_no_recommendation_is_resolved_after_one_scan(operator: httpx.Client) -> None:
    assert every_page(operator, limit=20, state="resolved") == ([], 1)


def test_the_sandbox_crm_recommendation(fleet: Fleet, oracle: dict[str, Any]) -> None:
    item = fleet.item(TENANT_A, CRM)
    expected = next(f for f in oracle["findings"] if key(f) == (TENANT_A, CRM))
    assert (item["current_version"], item["target_version"]) == ("2.3.0", "2.4.0")
    assert (item["risk_level"], item["action"], item["critical_patch"]) == ("high", "upgrade_now", False)
    assert 0 <= item["priority"] <= 100
    assert item["priority"] == expected["priority"]
    assert [a["id"] for a in item["advisories"]] == ["PXSA-2026-0014"]
    assert any(entry.startswith("2.4.0: ") and "PXSA-2026-0014" in entry for entry in item["changelog"])
    with fleet.client("tenant_admin") as client:
        response = client.get(f"{API}/recommendations/{item['id']}")
    assert response.status_code == 200
    detail = response.json()
    assert {k: v for k, v in detail.items() if k != "history"} == item
    assert detail["history"] == [
        {
            "revision": 1,
            "change": "opened",
            "state": "open",
            "target_version": "2.4.0",
            "risk_level": "high",
            "priority": item["priority"],
            "action": "upgrade_now",
            "scan_id": fleet.scan["scan_id"],
            "created_at": "2026-11-30T00:00:00Z",
        }
    ]


def test_the_scan_report_is_a_design_report(
    fleet: Fleet, operator: httpx.Client, oracle: dict[str, Any]
) -> None:
    response = operator.get(fleet.trigger.json()["report_url"])
    assert response.status_code == 200
    report = response.json()
    jsonschema.validate(report, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert (report["schema"], report["scan_id"]) == ("powerx.scan-report/v1", fleet.scan["scan_id"])
    assert datetime.fromisoformat(report["generated_at"]) == NOW
    assert report["coverage"] == oracle["coverage"]
    assert report["errors"] == fleet.scan["errors"]
    assert _sourceless(report["errors"]) == _sourceless(oracle["errors"])
    findings = report["findings"]
    assert [f["priority"] for f in findings] == sorted((f["priority"] for f in findings), reverse=True)
    expected = {key(f): f for f in oracle["findings"]}
    assert {key(f) for f in findings} == expected.keys()
    for finding in findings:
        assert finding["state"] == "open"
        assert finding["recommendation_id"] == fleet.item(*key(finding))["id"]
        assert finding["policy_version"] == 1
        rest = {k: v for k, v in finding.items() if k not in ("state", "recommendation_id", "policy_version")}
        assert rest == expected[key(finding)]
        for moment in filter(None, [finding["sla_deadline"]]):
            datetime.fromisoformat(moment)


# -- who may see what ------------------------------------------------------------------------------

ROLES: Final = (
    "service",
    "operator",
    "tenant_admin",
    "viewer",
    "tenant_admin_b",
    "viewer_b",
    "anonymous",
    "revoked",
)
ADMITTED_THEN_REFUSED: Final = {"kind": "delta", "tenants": ["x"]}  # passes auth, then 422: nothing queued
STALE_DECISION_A: Final = {"recommendation_id": "{rec_a}", "revision": 99, "decision": "upgrade"}  # 409
STALE_DECISION_B: Final = {"recommendation_id": "{rec_b}", "revision": 99, "decision": "upgrade"}
STALE_REOPEN: Final = {"revision": 99}  # admitted callers get 409: nothing is reopened
EMPTY_BULK: Final = {
    "plugin_id": "com.powerx.plugins.nobody-runs-this",
    "decision": "upgrade",
}  # selects none
#: (method, path, body) → expected status for each of ROLES, in that order. Tenant roles without
#: a suffix are bound to tenant A, `_b` ones to tenant B. Mutating routes are called with a body
#: the route refuses (409/422) once the caller is admitted, so the table changes nothing.
MATRIX: Final[list[tuple[str, str, dict[str, Any] | None, tuple[int, ...]]]] = [
    ("POST", f"{API}/scan", ADMITTED_THEN_REFUSED, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/scans", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/scans/{{scan}}", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/scans/unknown-scan", None, (404, 404, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/alerts", None, (403, 200, 403, 403, 403, 403, 401, 401)),  # people on call only
    ("GET", f"{API}/scans/{{scan}}/shards", None, (404, 404, 403, 403, 403, 403, 401, 401)),  # not sharded
    ("GET", f"{API}/jobs/stats", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/jobs/dead", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    # admitted, a scan id is no job id (an existing dead letter is cleared in tests/functional/scale)
    ("DELETE", f"{API}/jobs/dead/{{scan}}", None, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/scans/{{scan}}/report", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    ("GET", f"{API}/recommendations", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    ("GET", f"{API}/recommendations?tenant={{tenant_a}}", None, (200, 200, 200, 200, 404, 404, 401, 401)),
    ("GET", f"{API}/recommendations?tenant={{tenant_b}}", None, (200, 200, 404, 404, 200, 200, 401, 401)),
    ("GET", f"{API}/recommendations/{{rec_a}}", None, (200, 200, 200, 200, 404, 404, 401, 401)),
    ("GET", f"{API}/recommendations/{{rec_b}}", None, (200, 200, 404, 404, 200, 200, 401, 401)),
    ("GET", f"{API}/recommendations/99999999", None, (404, 404, 404, 404, 404, 404, 401, 401)),
    ("POST", f"{API}/decision", STALE_DECISION_A, (409, 409, 409, 403, 404, 404, 401, 401)),
    ("POST", f"{API}/decision", STALE_DECISION_B, (409, 409, 404, 404, 409, 403, 401, 401)),
    ("POST", f"{API}/decisions/bulk", EMPTY_BULK, (200, 200, 403, 403, 403, 403, 401, 401)),
    (
        "POST",
        f"{API}/recommendations/{{rec_a}}/reopen",
        STALE_REOPEN,
        (409, 409, 409, 403, 404, 404, 401, 401),
    ),
    (
        "POST",
        f"{API}/recommendations/{{rec_b}}/reopen",
        STALE_REOPEN,
        (409, 409, 404, 404, 409, 403, 401, 401),
    ),
    ("GET", f"{API}/decisions", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    ("GET", f"{API}/decisions?tenant={{tenant_a}}", None, (200, 200, 200, 200, 404, 404, 401, 401)),
    ("GET", f"{API}/decisions?tenant={{tenant_b}}", None, (200, 200, 404, 404, 200, 200, 401, 401)),
    ("POST", f"{API}/webhooks/releases", {}, (422, 403, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/webhooks/advisories", {}, (422, 403, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/webhooks/manifests", {}, (422, 403, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/webhooks/releases", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/webhooks/advisories", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    (
        "DELETE",
        f"{API}/webhooks/advisories/{{advisory}}",
        {"reason": "matrix"},
        (404, 404, 403, 403, 403, 403, 401, 401),
    ),
    (
        "DELETE",
        f"{API}/webhooks/releases/{{plugin}}/{{release}}",
        {"reason": "matrix"},
        (404, 404, 403, 403, 403, 403, 401, 401),
    ),
    ("POST", AUDIT, {}, (422, 403, 403, 403, 403, 403, 401, 401)),
    ("GET", AUDIT, None, (200, 200, 200, 200, 200, 200, 401, 401)),
    ("GET", f"{AUDIT}?tenant={{tenant_a}}", None, (200, 200, 200, 200, 404, 404, 401, 401)),
    ("GET", f"{AUDIT}?tenant={{tenant_b}}", None, (200, 200, 404, 404, 200, 200, 401, 401)),
    ("GET", f"{API}/flags", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    ("PUT", f"{API}/flags/{{flag}}", {}, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("DELETE", f"{API}/flags/{{flag}}", None, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/policy/versions", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/policy/versions/{{version}}", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/policy/versions/99", None, (404, 404, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/policy/diff?from=1&to=1", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/policy/versions", {}, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/policy/rollback", {}, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/events/subscriptions", {}, (403, 422, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/events/subscriptions", None, (403, 200, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/events/subscriptions/{{scan}}", None, (403, 404, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/events/subscriptions/{{scan}}/pause", None, (403, 404, 403, 403, 403, 403, 401, 401)),
    ("POST", f"{API}/events/subscriptions/{{scan}}/resume", None, (403, 404, 403, 403, 403, 403, 401, 401)),
    (
        "POST",
        f"{API}/events/subscriptions/{{scan}}/replay",
        {"after": 0},
        (403, 404, 403, 403, 403, 403, 401, 401),
    ),
    ("DELETE", f"{API}/events/subscriptions/{{scan}}", None, (403, 404, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/events", None, (200, 200, 403, 403, 403, 403, 401, 401)),
    (
        "DELETE",
        f"{API}/smoke/tenants/{{smoke_tenant}}",
        {},
        (404, 404, 403, 403, 403, 403, 401, 401),
    ),
    ("DELETE", f"{API}/smoke/tenants/{{tenant_a}}", {}, (422, 422, 403, 403, 403, 403, 401, 401)),
    ("GET", "/healthz", None, (200,) * 8),
    ("GET", "/readyz", None, (200,) * 8),
    ("GET", "/metrics", None, (200,) * 8),
    ("GET", "/openapi.json", None, (200,) * 8),
    # groups, baselines, drift, inventory, exports (the baselines component; its own table is
    # tests/functional/baselines/test_isolation.py): here with no groups file, so no group exists
    ("GET", f"{API}/groups", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    (
        "POST",
        f"{API}/groups",
        {"id": "Not An Id!", "tenants": ["x"]},
        (422, 422, 403, 403, 403, 403, 401, 401),
    ),
    ("DELETE", f"{API}/groups/{{advisory}}", None, (404, 404, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/groups/{{advisory}}", None, (404, 404, 404, 404, 404, 404, 401, 401)),
    (
        "PUT",
        f"{API}/groups/{{advisory}}/baselines?plugin={{plugin}}",
        {"reason": ""},
        (422, 422, 403, 403, 403, 403, 401, 401),
    ),
    (
        "GET",
        f"{API}/groups/{{advisory}}/baselines/history?plugin={{plugin}}",
        None,
        (404, 404, 403, 403, 403, 403, 401, 401),
    ),
    ("POST", f"{API}/groups/evaluate?group={{advisory}}", None, (404, 404, 403, 403, 403, 403, 401, 401)),
    ("GET", f"{API}/drift", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    (
        "GET",
        f"{API}/baselines?tenant={{tenant_a}}&plugin={{plugin}}",
        None,
        (200, 200, 200, 200, 404, 404, 401, 401),
    ),
    ("GET", f"{API}/inventory/tenants?plugin={{plugin}}", None, (200, 200, 200, 200, 200, 200, 401, 401)),
    (
        "GET",
        f"{API}/inventory/distribution?plugin={{plugin}}",
        None,
        (200, 200, 200, 200, 200, 200, 401, 401),
    ),
    ("GET", f"{API}/inventory/advisories/{{advisory}}", None, (404, 404, 404, 404, 404, 404, 401, 401)),
    ("GET", f"{API}/exports/cyclonedx?tenant={{tenant_a}}", None, (200, 200, 200, 200, 404, 404, 401, 401)),
]


def _placeholders(fleet: Fleet) -> dict[str, Any]:
    return {
        "scan": fleet.scan["scan_id"],
        "rec_a": fleet.item(TENANT_A, CRM)["id"],
        "rec_b": next(i["id"] for i in fleet.items if i["tenant_uuid"] == TENANT_B),
        "tenant_a": TENANT_A,
        "tenant_b": TENANT_B,
        "flag": "no-such-flag",  # admitted callers get 422: nothing changes
        "version": 1,
        "advisory": "PXSA-NEVER-PUSHED",  # admitted callers get 404: nothing changes
        "plugin": CRM,
        "release": "9.9.9",
        "smoke_tenant": "powerx-smoke-never-made",
    }


def _body(fleet: Fleet, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """`body` with its "{placeholder}" values replaced by what they stand for."""
    if body is None:
        return None
    values = _placeholders(fleet)
    return {k: values[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v for k, v in body.items()}


@pytest.mark.parametrize(
    ("method", "path", "body", "statuses"), [pytest.param(*row, id=f"{row[0]} {row[1]}") for row in MATRIX]
)
def test_every_route_admits_exactly_the_roles_it_should(
    fleet: Fleet, method: str, path: str, body: dict[str, Any] | None, statuses: tuple[int, ...]
) -> None:
    url = path.format(**_placeholders(fleet))
    answers: dict[str, int] = {}
    for role, status in zip(ROLES, statuses, strict=True):
        with fleet.client(None if role == "anonymous" else role) as client:
            response = client.request(method, url, json=_body(fleet, body))
        answers[role] = response.status_code
        if response.status_code == status >= 400:
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["status"] == status
        if response.status_code == status == 401:
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert answers == dict(zip(ROLES, statuses, strict=True))


def test_the_role_table_covers_every_route_of_the_app(fleet: Fleet) -> None:
    """A route added without rows in MATRIX fails here: every route gets its isolation cases."""
    with fleet.client(None) as client:
        paths = client.get("/openapi.json").json()["paths"]
    served = {
        (m.upper(), re.sub(r"\{[^}]+\}", "{}", p)) for p, operations in paths.items() for m in operations
    }
    ids = {"scan", "rec_a", "rec_b", "flag", "version", "advisory", "plugin", "release", "smoke_tenant"}
    tested = {
        (method, re.sub(r"\{(\w+)\}", lambda m: "{}" if m[1] in ids else m[0], path.split("?")[0]))
        for method, path, _, _ in MATRIX
    } | {("GET", "/openapi.json")}
    assert served - tested == set()


@pytest.mark.parametrize(
    ("role", "tenant"),
    [("tenant_admin", TENANT_A), ("viewer", TENANT_A), ("tenant_admin_b", TENANT_B), ("viewer_b", TENANT_B)],
)
def test_tenant_bound_callers_get_only_their_tenant(fleet: Fleet, role: str, tenant: str) -> None:
    expected = [i for i in fleet.items if i["tenant_uuid"] == tenant]
    with fleet.client(role) as client:
        listed, _ = every_page(client, limit=4)
        report = client.get(fleet.trigger.json()["report_url"]).json()
    assert listed == expected
    assert expected
    assert {f["tenant_uuid"] for f in report["findings"]} == {tenant}
    assert [f["recommendation_id"] for f in report["findings"]] == [i["id"] for i in expected]
    assert report["errors"] == []  # the broken tenant's error is not theirs to see


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic b3BlcmF0b3I6c2VjcmV0", "Bearer", "Token pxg_x", "Bearer pxg_not-a-token"],
)
def test_requests_without_a_valid_token_get_401_with_a_challenge(
    fleet: Fleet, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=fleet.live.base_url, headers=headers) as client:
        response = client.get(f"{API}/recommendations")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["title"] == "Authentication required"


def test_a_revoked_token_gets_401_naming_the_invalid_token(fleet: Fleet) -> None:
    with fleet.client("revoked") as client:
        response = client.get(f"{API}/scans")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "revoked" in response.json()["detail"]


# -- problem details -------------------------------------------------------------------------------


def _post_raw(fleet: Fleet, path: str, content: bytes, who: str = "operator") -> httpx.Response:
    with fleet.client(who) as client:
        return client.post(f"{API}{path}", content=content, headers={"content-type": "application/json"})


def _fields(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code
    return [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"kind": "weekly"}', "kind"),
        (b'{"tenants": "acme"}', "tenants"),
        (b'{"tenants": [""]}', "tenants.0"),
        (b'{"kind": "delta", "tenants": ["acme"]}', "tenants"),
        (b"[1, 2]", "body"),
        (b"", "body"),
    ],
)
def test_a_bad_scan_request_gets_422_naming_the_field(fleet: Fleet, body: bytes, field: str) -> None:
    response = _post_raw(fleet, "/scan", body)
    assert response.status_code == 422
    assert field in _fields(response)
    assert field in response.json()["detail"]


def test_invalid_json_gets_422(fleet: Fleet) -> None:
    response = _post_raw(fleet, "/scan", b'{"kind": ')
    assert response.status_code == 422
    assert _fields(response)
    assert "JSON" in response.json()["detail"]


def test_invalid_json_is_reported_against_the_body(fleet: Fleet) -> None:
    response = _post_raw(fleet, "/scan", b'{"kind": ')
    assert _fields(response) == ["body"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/recommendations", {"risk": "extreme"}, "risk"),
        ("/recommendations", {"action": "panic"}, "action"),
        ("/recommendations", {"state": "closed"}, "state"),
        ("/recommendations", {"limit": "0"}, "limit"),
        ("/recommendations", {"limit": "501"}, "limit"),
        ("/recommendations/not-a-number", {}, "recommendation_id"),
        ("/scans", {"limit": "201"}, "limit"),
    ],
)
def test_a_bad_query_gets_422_naming_the_parameter(
    operator: httpx.Client, path: str, params: dict[str, str], field: str
) -> None:
    response = operator.get(f"{API}{path}", params=params)
    assert response.status_code == 422
    assert _fields(response) == [field]


def _settle(fleet: Fleet) -> None:
    """Let uvicorn finish logging a 500's traceback before pytest formats this test's own.

    Python 3.11 tracebacks parse source with `ast`, and two threads doing that at once can trip
    "AST constructor recursion depth mismatch" (a CPython 3.11 bug), which crashes pytest's report.
    The server's event loop logs the failed request before it answers the next ones.
    """
    with fleet.client(None) as client:
        for _ in range(2):
            assert client.get("/healthz").status_code == 200


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    ["!!!", "", "not base64 at all", _cursor({"priority": 1}), _cursor([None, 1]), _cursor([1, 2, 3])],
)
def test_a_bad_cursor_gets_422_naming_the_cursor(operator: httpx.Client, cursor: str) -> None:
    response = operator.get(f"{API}/recommendations", params={"cursor": cursor})
    assert response.status_code == 422
    assert _fields(response) == ["cursor"]


@pytest.mark.parametrize("numbers", ["[1e400, 1]", f"[1, {2**63}]"])
def test_a_forged_cursor_with_out_of_range_numbers_gets_422(fleet: Fleet, numbers: str) -> None:
    cursor = base64.urlsafe_b64encode(numbers.encode()).decode().rstrip("=")
    with fleet.client() as client:
        response = client.get(f"{API}/recommendations", params={"cursor": cursor})
    _settle(fleet)
    assert response.status_code == 422
    assert _fields(response) == ["cursor"]


def test_a_recommendation_over_http_is_what_the_store_reads(fleet: Fleet) -> None:
    """The detail route reads in a worker thread of its own: the same document (history included)
    as `get_recommendation` in a session, for every recommendation, and 404 for an unknown id."""
    with fleet.client() as client:
        answers = {i["id"]: client.get(f"{API}/recommendations/{i['id']}") for i in fleet.items}
        missing = client.get(f"{API}/recommendations/{max(answers) + 1000}")
    with fleet.service.factory() as session:
        expected = {rec_id: get_recommendation(session, rec_id) for rec_id in answers}
    assert answers
    assert all(answer.status_code == 200 for answer in answers.values())
    assert {rec_id: answer.json() for rec_id, answer in answers.items()} == expected
    assert missing.status_code == 404


def test_an_out_of_range_recommendation_id_gets_404(fleet: Fleet) -> None:
    with fleet.client() as client:
        response = client.get(f"{API}/recommendations/{2**63}")
    _settle(fleet)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/webhooks/releases", {}, "plugin_id"),
        ("/webhooks/releases", {"plugin_id": CRM, "release": {"version": "2.x"}}, "release.version"),
        (
            "/webhooks/releases",
            {"plugin_id": CRM, "release": {"version": "2.9.0", "channel": "x"}},
            "release.channel",
        ),
        ("/webhooks/advisories", {"id": "PXSA-X", "affected": "crm"}, "affected"),
        (
            "/webhooks/manifests",
            {"schema": "powerx.manifest/v1", "tenant_uuid": "t", "core_version": "1.x", "plugins": []},
            "core_version",
        ),
    ],
)
def test_a_bad_push_gets_422_naming_the_field(
    fleet: Fleet, path: str, body: dict[str, Any], field: str
) -> None:
    with fleet.client("service") as client:
        response = client.post(f"{API}{path}", json=body)
    assert response.status_code == 422, response.text
    assert _fields(response) == [field]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/webhooks/advisories", {"summary": "no id"}, "id"),
        ("/webhooks/manifests", {"schema": "powerx.manifest/v1", "core_version": "1.24.0"}, "tenant_uuid"),
    ],
)
def test_a_push_missing_a_required_field_names_it(
    fleet: Fleet, path: str, body: dict[str, Any], field: str
) -> None:
    with fleet.client("service") as client:
        response = client.post(f"{API}{path}", json=body)
    assert response.status_code == 422
    assert _fields(response) == [field]


def test_a_body_over_the_limit_gets_413(fleet: Fleet) -> None:
    refused = _post_raw(fleet, "/scan", b"{" + b" " * MAX_BODY + b"}")
    assert refused.status_code == 413
    assert refused.headers["content-type"] == PROBLEM
    assert str(MAX_BODY) in refused.json()["detail"]
    small = json.dumps(ADMITTED_THEN_REFUSED).encode()
    at_limit = _post_raw(fleet, "/scan", small + b" " * (MAX_BODY - len(small)))
    assert at_limit.status_code == 422  # read and validated: the limit is inclusive


def test_a_chunked_body_over_the_limit_gets_413(fleet: Fleet) -> None:
    chunks = iter([b'{"tenants": ["', b"a" * MAX_BODY, b'"]}'])
    with fleet.client() as client:
        response = client.post(f"{API}/scan", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


# -- operations ------------------------------------------------------------------------------------

# DESIGN §6's metrics under their Prometheus names (README: "Metrics and alerts").
DESIGN_METRICS: Final = (
    "version_scan_coverage_ratio",
    "version_scan_failure_total",
    "version_recommendation_push_latency_seconds",
    "version_recommendation_accept_ratio",
    "version_recommendation_ignore_total",
)


def test_health_and_readiness(fleet: Fleet) -> None:
    with fleet.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_metrics_carry_the_design_metrics_and_the_last_scan(fleet: Fleet) -> None:
    with fleet.client(None) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in DESIGN_METRICS:
        assert f"# TYPE {name} " in text, name
    assert metric(text, "version_scan_coverage_ratio") == 0.99
    assert metric(text, "version_scan_consecutive_failures") == 0
    assert metric(text, "version_recommendation_changes_total", change="opened") == len(fleet.items)
    assert metric(text, "version_scan_duration_seconds_count", kind="full") == 1


def test_openapi_describes_every_route(fleet: Fleet) -> None:
    with fleet.client(None) as client:
        paths = client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert routes >= {
        ("POST", f"{API}/scan"),
        ("GET", f"{API}/scans"),
        ("GET", f"{API}/scans/{{scan_id}}"),
        ("GET", f"{API}/scans/{{scan_id}}/report"),
        ("GET", f"{API}/alerts"),
        ("GET", f"{API}/recommendations"),
        ("GET", f"{API}/recommendations/{{recommendation_id}}"),
        ("POST", f"{API}/webhooks/releases"),
        ("POST", f"{API}/webhooks/advisories"),
        ("POST", f"{API}/webhooks/manifests"),
        ("POST", f"{API}/decision"),
        ("POST", f"{API}/decisions/bulk"),
        ("GET", f"{API}/decisions"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }


# -- pushes -----------------------------------------------------------------------------------------

CRITICAL_ADVISORY: Final = {
    "id": "PXSA-2026-9001",
    "aliases": ["CVE-2026-99001"],
    "summary": "Remote code execution through crafted import files",
    "published": "2026-11-29T12:00:00Z",
    "modified": "2026-11-29T12:00:00Z",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [
        {
            "package": {"ecosystem": "PowerX", "name": CRM},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.4.1"}]}],
        }
    ],
    "database_specific": {"severity": "CRITICAL"},
}
NEW_RELEASE: Final = {
    "version": "2.6.1",
    "channel": "stable",
    "released_at": (NOW - timedelta(days=5)).isoformat().replace("+00:00", "Z"),
    "min_core": "1.23.0",
    "max_core": "2.99.99",
    "changelog": "### Fixed\n- Quote PDFs cut off after 20 lines.",
    "release_notes_url": "https://docs.powerx.example/plugins/crm/releases/2.6.1",
}


State = dict[tuple[str, str], dict[str, Any]]


def _state(client: httpx.Client) -> State:
    return {key(i): i for i in every_page(client, limit=500)[0]}


def _without(finding: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in finding.items() if k not in fields}


def _matches_oracle(
    state: Mapping[tuple[str, str], dict[str, Any]], oracle: dict[str, Any], *, ignore: tuple[str, ...] = ()
) -> None:
    """Open recommendations are the full scan's findings (but `ignore`); every other one is resolved."""
    expected = {key(f): _without(as_stored(f), ignore) for f in oracle["findings"]}
    open_ = {k: _without(as_finding(v), ignore) for k, v in state.items() if v["state"] != "resolved"}
    assert open_.keys() == expected.keys()
    assert [k for k in expected if open_[k] != expected[k]] == []


def _push(client: httpx.Client, route: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/webhooks/{route}", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    delta = wait_for_scan(client, accepted["delta_scan_id"])
    assert (delta["kind"], delta["trigger"], delta["status"]) == ("delta", "push", "succeeded")
    return accepted


def _unchanged_except(
    before: Mapping[tuple[str, str], dict[str, Any]],
    after: Mapping[tuple[str, str], dict[str, Any]],
    touched: set[tuple[str, str]],
) -> None:
    untouched = [k for k in before if k not in touched]
    assert untouched
    assert [k for k in untouched if after[k] != before[k]] == []


def _advisory_escalates_crm(client: httpx.Client, inputs: Inputs, before: State) -> State:
    """A critical advisory for crm < 2.4.1: only crm installations are re-evaluated."""
    accepted = _push(client, "advisories", CRITICAL_ADVISORY)
    assert (accepted["advisory_id"], accepted["plugins"], accepted["warnings"]) == (
        CRITICAL_ADVISORY["id"],
        [CRM],
        [],
    )
    after = _state(client)
    inputs.add_advisory(CRITICAL_ADVISORY)
    _matches_oracle(after, inputs.oracle())
    _unchanged_except(before, after, {k for k in before if k[1] == CRM})
    sandbox = after[(TENANT_A, CRM)]
    assert (sandbox["target_version"], sandbox["risk_level"], sandbox["action"]) == (
        "2.4.1",
        "critical",
        "upgrade_now",
    )
    assert (sandbox["critical_patch"], sandbox["revision"]) == (True, 2)
    assert ("PXSA-2026-9001", 9.8, "critical") in {
        (a["id"], a["cvss"], a["severity"]) for a in sandbox["advisories"]
    }
    history = client.get(f"{API}/recommendations/{sandbox['id']}").json()["history"]
    assert [(h["revision"], h["change"], h["risk_level"]) for h in history] == [
        (1, "opened", "high"),
        (2, "escalated", "critical"),
    ]
    assert history[1]["scan_id"] == accepted["delta_scan_id"]
    return after


def _release_moves_crm_latest(client: httpx.Client, inputs: Inputs, before: State) -> State:
    """A new crm release: the latest version moves on, nothing else changes."""
    accepted = _push(client, "releases", {"plugin_id": CRM, "release": NEW_RELEASE})
    assert (accepted["plugin_id"], accepted["version"]) == (CRM, "2.6.1")
    after = _state(client)
    inputs.add_release(CRM, NEW_RELEASE)
    _matches_oracle(after, inputs.oracle())
    _unchanged_except(before, after, {k for k in before if k[1] == CRM})
    sandbox = after[(TENANT_A, CRM)]
    assert (sandbox["latest_version"], sandbox["revision"]) == ("2.6.1", 3)
    return after


def _sandbox_upgrades_crm(client: httpx.Client, inputs: Inputs, before: State, version: str) -> State:
    """The tenant directory pushes the sandbox manifest with crm at `version`."""
    manifest = inputs.manifest("sandbox-tenant-a")
    next(p for p in manifest["plugins"] if p["plugin_id"] == CRM)["version"] = version
    accepted = _push(client, "manifests", manifest)
    assert (accepted["tenant_uuid"], accepted["changed"]) == (TENANT_A, True)
    after = _state(client)
    inputs.put_manifest("sandbox-tenant-a", manifest)
    _matches_oracle(after, inputs.oracle())
    _unchanged_except(before, after, {(TENANT_A, CRM)})  # the tenant's other verdicts did not change
    return after


def _upgrades_calm_then_resolve_sandbox_crm(client: httpx.Client, inputs: Inputs, before: State) -> None:
    """To the security target: no risk left, only a minor update to review. To the latest: resolved."""
    patched = _sandbox_upgrades_crm(client, inputs, before, "2.4.1")[(TENANT_A, CRM)]
    assert (patched["current_version"], patched["risk_level"], patched["action"]) == (
        "2.4.1",
        "none",
        "review",
    )
    assert (patched["state"], patched["revision"], patched["latest_version"]) == ("open", 4, "2.6.1")
    after = _sandbox_upgrades_crm(client, inputs, _state(client), "2.6.1")
    resolved = after[(TENANT_A, CRM)]
    assert (resolved["state"], resolved["revision"]) == ("resolved", 5)
    assert resolved["resolved_at"] == "2026-11-30T00:00:00Z"
    history = client.get(f"{API}/recommendations/{resolved['id']}").json()["history"]
    assert [h["change"] for h in history] == ["opened", "escalated", "changed", "changed", "resolved"]
    assert every_page(client, limit=10, tenant=TENANT_A, state="resolved")[0] == [resolved]


def test_pushes_update_what_they_touch_without_a_full_scan(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Advisory, release and manifest pushes each run a delta scan that matches a full scan's result."""
    inputs = Inputs(tmp_path / "inputs")
    service = make_service(
        POWERX_TENANT_SOURCE=str(inputs.manifests), POWERX_CATALOG_SOURCE=str(inputs.catalog_file)
    )
    with LiveServer(service) as live, live.client(issue_token(service, Role.SERVICE)) as client:
        started = client.post(f"{API}/scan", json={})
        assert started.status_code == 202
        full = wait_for_scan(client, started.json()["scan_id"])
        state = _state(client)
        _matches_oracle(state, inputs.oracle())
        state = _advisory_escalates_crm(client, inputs, state)
        state = _release_moves_crm_latest(client, inputs, state)
        _upgrades_calm_then_resolve_sandbox_crm(client, inputs, state)
        scans = client.get(f"{API}/scans").json()["items"]
        metrics = client.get("/metrics").text
    assert [s["scan_id"] for s in scans if s["kind"] == "full"] == [full["scan_id"]]
    assert sorted((s["kind"], s["trigger"]) for s in scans) == [("delta", "push")] * 4 + [("full", "api")]
    # push latency is observed when the notifications the changes caused are delivered (console cards here)
    assert (metric(metrics, "version_recommendation_push_latency_seconds_count") or 0) > 0
    assert metric(metrics, "version_recommendation_changes_total", change="resolved") == 1


def test_a_delta_scan_keeps_the_co_upgrade_notes_of_a_full_scan(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    inputs = Inputs(tmp_path / "inputs", tenants=["acme-retail"])
    service = make_service(
        POWERX_TENANT_SOURCE=str(inputs.manifests), POWERX_CATALOG_SOURCE=str(inputs.catalog_file)
    )
    with LiveServer(service) as live, live.client(issue_token(service, Role.SERVICE)) as client:
        wait_for_scan(client, client.post(f"{API}/scan", json={}).json()["scan_id"])
        _push(client, "advisories", CRITICAL_ADVISORY)
        crm = _state(client)[(TENANT_B, CRM)]
    inputs.add_advisory(CRITICAL_ADVISORY)
    expected = next(f for f in inputs.oracle()["findings"] if key(f) == (TENANT_B, CRM))
    assert crm["risk_level"] == "critical"
    assert crm["co_upgrades"] == expected["co_upgrades"] == []

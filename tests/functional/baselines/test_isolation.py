"""Who may see and change what, for every route of the baselines component.

A tenant admin (or viewer) sees the groups its tenant belongs to, its own row of each, its own drift,
inventory and exports; another tenant's groups and rows do not exist for it (404). Writes are for
operators (and the internal service role); every other role gets 403.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory
from tests.functional.baselines.support import (
    ADVISORY,
    API,
    CRM,
    GROUP,
    SOLO,
    T1,
    T2,
    T3,
    scanned,
    tokens,
    write_group_fleet,
)

ROLES: Final = ("service", "operator", "admin_1", "viewer_1", "admin_3", "anonymous")
BAD_GROUP: Final = {"id": "Not An Id!", "tenants": [T1]}  # admitted callers get 422: nothing is made
#: (method, path, body) -> expected status for each of ROLES, in that order.
MATRIX: Final[list[tuple[str, str, dict[str, Any] | None, tuple[int, ...]]]] = [
    ("GET", f"{API}/groups", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/groups?tenant={T3}", None, (200, 200, 404, 404, 200, 401)),
    ("POST", f"{API}/groups", BAD_GROUP, (422, 422, 403, 403, 403, 401)),
    ("DELETE", f"{API}/groups/no-such-group", None, (404, 404, 403, 403, 403, 401)),
    ("DELETE", f"{API}/groups/{GROUP}", None, (409, 409, 403, 403, 403, 401)),  # a file group stays
    ("GET", f"{API}/groups/{GROUP}", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/groups/{SOLO}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/groups/no-such-group", None, (404, 404, 404, 404, 404, 401)),
    ("PUT", f"{API}/groups/{GROUP}/baselines?plugin={CRM}", {"reason": ""}, (422, 422, 403, 403, 403, 401)),
    ("PUT", f"{API}/groups/{SOLO}/baselines?plugin={CRM}", {"reason": ""}, (422, 422, 403, 403, 403, 401)),
    ("GET", f"{API}/groups/{GROUP}/baselines/history?plugin={CRM}", None, (200, 200, 403, 403, 403, 401)),
    ("POST", f"{API}/groups/evaluate?group=no-such-group", None, (404, 404, 403, 403, 403, 401)),
    ("GET", f"{API}/drift", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/drift?tenant={T3}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/drift?group={SOLO}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/baselines?tenant={T1}&plugin={CRM}", None, (200, 200, 200, 200, 404, 401)),
    ("GET", f"{API}/baselines?tenant={T3}&plugin={CRM}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/inventory/tenants?plugin={CRM}", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/inventory/tenants?plugin={CRM}&tenant={T3}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/inventory/tenants?plugin={CRM}&group={SOLO}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/inventory/distribution?plugin={CRM}", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/inventory/distribution?plugin={CRM}&tenant={T3}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/inventory/advisories/{ADVISORY}", None, (200, 200, 200, 200, 200, 401)),
    ("GET", f"{API}/inventory/advisories/{ADVISORY}?tenant={T3}", None, (200, 200, 404, 404, 200, 401)),
    ("GET", f"{API}/inventory/advisories/PXSA-NEVER", None, (404, 404, 404, 404, 404, 401)),
    ("GET", f"{API}/exports/cyclonedx", None, (422, 422, 200, 200, 200, 401)),  # fleet-wide: name a scope
    ("GET", f"{API}/exports/cyclonedx?tenant={T1}", None, (200, 200, 200, 200, 404, 401)),
    (
        "GET",
        f"{API}/exports/cyclonedx?group={SOLO}&format=cyclonedx-vex",
        None,
        (200, 200, 404, 404, 200, 401),
    ),
]


@dataclass
class Served:
    service: GovernanceService
    server: LiveServer
    tokens: dict[str, str]

    def get(self, role: str, path: str, **params: Any) -> Any:
        with self.server.client(self.tokens.get(role)) as client:
            answer = client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def served(make_service: ServiceFactory, tmp_path: Path) -> Iterator[Served]:
    service = scanned(make_service, write_group_fleet(tmp_path), FakeClock())
    with LiveServer(service, background=False) as server:
        yield Served(service, server, tokens(service))


def test_every_route_admits_exactly_the_roles_it_should(served: Served) -> None:
    """One service for the whole table (both backends): each row, each role."""
    for method, path, body, statuses in MATRIX:
        answers = {}
        for role in ROLES:
            with served.server.client(served.tokens.get(role)) as client:
                answers[role] = client.request(method, path, json=body).status_code
        assert answers == dict(zip(ROLES, statuses, strict=True)), f"{method} {path}"


def test_the_table_covers_every_route_of_the_component(served: Served) -> None:
    paths = served.get("operator", "/openapi.json")["paths"]
    ours = {
        (m.upper(), p)
        for p, ops in paths.items()
        for m in ops
        if p.startswith(
            (f"{API}/groups", f"{API}/drift", f"{API}/baselines", f"{API}/inventory", f"{API}/exports")
        )
    }
    templates = {
        f"{API}/groups/{{group_id}}": (
            f"{API}/groups/{GROUP}",
            f"{API}/groups/{SOLO}",
            f"{API}/groups/no-such-group",
        ),
        f"{API}/groups/{{group_id}}/baselines": (f"{API}/groups/{GROUP}/baselines",),
        f"{API}/groups/{{group_id}}/baselines/history": (f"{API}/groups/{GROUP}/baselines/history",),
        f"{API}/inventory/advisories/{{advisory_id}}": (f"{API}/inventory/advisories/{ADVISORY}",),
    }
    tested = {(m, p.split("?")[0]) for m, p, _, _ in MATRIX}
    for method, template in ours:
        concrete = templates.get(template, (template,))
        assert any((method, c) in tested for c in concrete), f"{method} {template} has no isolation rows"


def test_a_tenant_admin_sees_only_its_own_rows(served: Served) -> None:
    groups = served.get("admin_1", f"{API}/groups")["items"]
    assert [g["id"] for g in groups] == [GROUP]
    assert "tenants" not in groups[0]  # the other members are not named
    detail = served.get("admin_1", f"{API}/groups/{GROUP}")
    assert [m["tenant_uuid"] for m in detail["members"]] == [T1]
    crm = next(b for b in detail["baselines"] if b["plugin_id"] == CRM)
    assert crm["status"] == "conflict"
    members = {m for part in ("subgroups", "splits") for s in crm["conflict"][part] for m in s["members"]}
    assert members == {T1}
    assert T2 not in crm["reason"]
    assert T3 not in crm["reason"]
    assert list(detail["installed"]) == [T1]
    running = served.get("admin_1", f"{API}/inventory/tenants", plugin=CRM)
    assert [t["tenant_uuid"] for t in running["items"]] == [T1]
    assert served.get("admin_1", f"{API}/inventory/distribution", plugin=CRM)["items"] == [
        {"version": "1.1.0", "tenants": 1, "share": 1.0}
    ]
    affected = served.get("admin_3", f"{API}/inventory/advisories/CVE-2026-40001")
    assert (affected["advisory_id"], affected["tenants_total"]) == (ADVISORY, 0)
    sbom = served.get("admin_1", f"{API}/exports/cyclonedx", group=GROUP)
    assert [c["bom-ref"] for c in sbom["components"]] == [T1]
    links = served.get("admin_1", f"{API}/baselines", tenant=T1, plugin=CRM)["items"]
    assert [(link["group_id"], link["status"]) for link in links] == [(GROUP, "conflict")]


def test_fleet_callers_see_every_member_and_the_exports_validate(served: Served) -> None:
    running = served.get("operator", f"{API}/inventory/tenants", plugin=CRM, version=">=2.0.0")
    assert [(t["tenant_uuid"], t["version"]) for t in running["items"]] == [(T2, "2.0.0"), (T3, "3.0.0")]
    by_core = served.get(
        "operator", f"{API}/inventory/tenants", plugin=CRM, core="^1.20", group=GROUP, tag="platform"
    )
    assert [t["tenant_uuid"] for t in by_core["items"]] == [T1]
    affected = served.get("operator", f"{API}/inventory/advisories/{ADVISORY}")
    assert affected["tenants_total"] == 1
    assert affected["plugins"][0]["affected_versions"] == [{"version": "1.1.0", "tenants": 1}]
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    for kind in ("cyclonedx-sbom", "cyclonedx-vex"):
        document = served.get("operator", f"{API}/exports/cyclonedx", group=GROUP, format=kind)
        assert validator.validate_str(json.dumps(document)) is None

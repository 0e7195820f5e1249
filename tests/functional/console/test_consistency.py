"""One definition per number: every figure on the overview's tiles equals a count of the API's
recommendations (the same lister, scope and DESIGN §5.8 deadline), for an operator and a tenant admin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from powerx_governance.auth.model import Role
from tests.conftest import issue_token
from tests.functional.console.conftest import ConsoleServer
from tests.functional.console.support import SANDBOX, sign_in

_FIGURE = re.compile(r'data-(figure)="([\w-]+)"[^>]*>(?:<[^>]+>)*?\s*([\d,]+)')
API = "/internal/version/governance/recommendations"


def _tiles(html: str) -> dict[str, int]:
    return {name: int(value.replace(",", "")) for _, name, value in _FIGURE.findall(html)}


def _all_recommendations(client: httpx.Client, token: str) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get(API, params=params, headers={"Authorization": f"Bearer {token}"}).json()
        yield from page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return


def _expected(recs: list[dict[str, Any]], now: datetime) -> dict[str, int]:
    unresolved = [r for r in recs if r["state"] in ("open", "decided", "ignored")]
    late = [r for r in unresolved if r["sla_deadline"] and datetime.fromisoformat(r["sla_deadline"]) < now]
    expected = {
        "critical-awaiting": sum(1 for r in recs if r["critical_patch"] and r["state"] == "open"),
        "critical-open": sum(1 for r in unresolved if r["critical_patch"]),
        "past-sla": len(late),
        "critical-past-sla": sum(1 for r in late if r["critical_patch"]),
        "decided": sum(1 for r in recs if r["state"] == "decided"),
        "ignored": sum(1 for r in recs if r["state"] == "ignored"),
        "result-count": sum(1 for r in recs if r["state"] == "open"),
    }
    for level in ("critical", "high", "medium", "low", "none"):
        expected[f"risk-{level}"] = sum(1 for r in recs if r["state"] == "open" and r["risk_level"] == level)
    return expected


def _check(console: ConsoleServer, role: Role, tenant: str | None) -> dict[str, int]:
    token = issue_token(console.service, role, tenant)
    with httpx.Client(base_url=console.live.base_url, timeout=60) as client:
        assert sign_in(client, token).status_code == 303
        shown = _tiles(client.get("/console").text)
        recs = list(_all_recommendations(client, token))
    expected = _expected(recs, console.clock())
    assert {k: shown.get(k) for k in expected} == expected
    return expected


def test_tiles_equal_api_counts_as_time_passes(console_server: ConsoleServer) -> None:
    fleet = _check(console_server, Role.OPERATOR, None)
    assert fleet["past-sla"] == 0, "nothing is late on the day governance first sees it (DESIGN §5.8)"
    assert fleet["critical-awaiting"] > 0
    console_server.clock.advance(40 * 86400)  # past every critical and high SLA
    fleet = _check(console_server, Role.OPERATOR, None)
    assert fleet["past-sla"] > fleet["critical-past-sla"] > 0, (
        "late findings of every risk, not only critical"
    )
    own = _check(console_server, Role.TENANT_ADMIN, SANDBOX)
    assert 0 < own["result-count"] < fleet["result-count"]

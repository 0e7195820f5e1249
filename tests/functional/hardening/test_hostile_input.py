"""Findings 2 and 3: out-of-range numbers and dates, deep JSON and NUL bytes are a 4xx naming the field.

Each case answered 500 on at least one store before (OverflowError, RecursionError, PostgreSQL's
"integer out of range" or its refusal of NUL in text).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any, Final

import httpx
import pytest

from powerx_governance.audit.tables import AuditEventRow
from tests.functional.console.support import SANDBOX
from tests.functional.hardening.conftest import API, CRM, Target

AUDIT: Final = "/internal/audit/version"
OVERFLOWING: Final = "9999-12-31T23:59:59-14:00"  # a valid ISO time whose UTC is in year 10000
HUGE: Final = 2**63
BIG: Final = 2**31  # past PostgreSQL's integer columns


def _cursor(priority: int, rec_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([priority, rec_id]).encode()).decode().rstrip("=")


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def _audit_event(**extra: Any) -> dict[str, Any]:
    return {"source": "hardening", "operation": "probe", "resource_type": "test", "actor": "fuzzer", **extra}


@dataclass(frozen=True)
class Case:
    who: str
    method: str
    path: str
    status: int
    field: str | None
    params: dict[str, Any] = default(default_factory=dict)
    body: Any = None


CASES: Final = {
    "recommendation cursor past 2^63": Case(
        "operator", "GET", f"{API}/recommendations", 422, "cursor", {"cursor": _cursor(50, HUGE)}
    ),
    "audit cursor past 2^63": Case("operator", "GET", AUDIT, 422, "cursor", {"cursor": str(HUGE)}),
    "audit cursor of 5000 digits": Case("operator", "GET", AUDIT, 422, "cursor", {"cursor": "9" * 5000}),
    "policy version 2^63": Case("operator", "GET", f"{API}/policy/versions/{HUGE}", 422, "number"),
    "policy version 2^31": Case("operator", "GET", f"{API}/policy/versions/{BIG}", 422, "number"),
    "policy diff to 2^63": Case("operator", "GET", f"{API}/policy/diff", 422, "to", {"from": 1, "to": HUGE}),
    "policy diff from 2^31": Case(
        "operator", "GET", f"{API}/policy/diff", 422, "from", {"from": BIG, "to": 1}
    ),
    "rollback to 2^63": Case(
        "operator", "POST", f"{API}/policy/rollback", 422, "version", body={"version": HUGE}
    ),
    "rollback to 2^31": Case(
        "operator", "POST", f"{API}/policy/rollback", 422, "version", body={"version": BIG}
    ),
    "events after 2^63": Case("operator", "GET", f"{API}/events", 422, "after", {"after": HUGE}),
    "decision until overflows UTC": Case(
        "admin_a",
        "POST",
        f"{API}/decision",
        422,
        "until",
        body={
            "recommendation_id": 1,
            "revision": 1,
            "decision": "ignore",
            "reason": "x",
            "scope": "until",
            "until": OVERFLOWING,
        },
    ),
    "decision scheduled_for overflows UTC": Case(
        "admin_a",
        "POST",
        f"{API}/decision",
        422,
        "scheduled_for",
        body={"recommendation_id": 1, "revision": 1, "decision": "schedule", "scheduled_for": OVERFLOWING},
    ),
    "bulk until overflows UTC": Case(
        "operator",
        "POST",
        f"{API}/decisions/bulk",
        422,
        "until",
        body={"plugin_id": CRM, "decision": "ignore", "reason": "x", "scope": "until", "until": OVERFLOWING},
    ),
    "audit occurred_at overflows UTC": Case(
        "service", "POST", AUDIT, 422, "occurred_at", body=_audit_event(occurred_at=OVERFLOWING)
    ),
    "audit start overflows UTC": Case("operator", "GET", AUDIT, 422, "start", {"start": OVERFLOWING}),
    "audit end before year 1 in UTC": Case(
        "operator", "GET", AUDIT, 422, "end", {"end": "0001-01-01T00:00:00+14:00"}
    ),
    "audit meta 600 deep": Case("service", "POST", AUDIT, 422, "body", body=_audit_event(meta=_nested(600))),
    "audit meta 300 deep": Case("service", "POST", AUDIT, 422, "body", body=_audit_event(meta=_nested(300))),
    "webhook push 5000 deep": Case(
        "service", "POST", f"{API}/webhooks/releases", 422, "body", body=b'{"a":' * 5000 + b"1" + b"}" * 5000
    ),
    "release push with released_at overflowing UTC": Case(
        "service",
        "POST",
        f"{API}/webhooks/releases",
        422,
        "release.released_at",
        body={"plugin_id": CRM, "release": {"version": "9.9.9", "released_at": OVERFLOWING}},
    ),
    "manifest push with scanned_at overflowing UTC": Case(
        "service",
        "POST",
        f"{API}/webhooks/manifests",
        422,
        "scanned_at",
        body={
            "schema": "powerx.manifest/v1",
            "tenant_uuid": "t-1",
            "core_version": "1.24.0",
            "scanned_at": OVERFLOWING,
            "plugins": [],
        },
    ),
    "advisory push with modified before year 1 in UTC": Case(
        "service",
        "POST",
        f"{API}/webhooks/advisories",
        422,
        "modified",
        body={"id": "OSV-EDGE-1", "modified": "0001-01-01T00:00:00+14:00", "affected": []},
    ),
    "NUL in a recommendation filter": Case(
        "operator", "GET", f"{API}/recommendations", 422, "plugin", {"plugin": "crm\x00"}
    ),
    "NUL in an audit filter": Case("operator", "GET", AUDIT, 422, "operation", {"operation": "\x00"}),
    "NUL in a decisions filter": Case(
        "operator", "GET", f"{API}/decisions", 422, "tenant", {"tenant": "a\x00b"}
    ),
    "NUL in an events filter": Case(
        "operator", "GET", f"{API}/events", 422, "tenant_uuid", {"tenant_uuid": "\x00"}
    ),
    "NUL in a subscription reference": Case(
        "operator", "GET", f"{API}/events/subscriptions/a%00b", 422, "path"
    ),
    "NUL in a scan id": Case("operator", "GET", f"{API}/scans/a%00b", 422, "path"),
    "NUL in a JSON body": Case(
        "admin_a",
        "POST",
        f"{API}/decision",
        422,
        "reason",
        body={"recommendation_id": 1, "revision": 1, "decision": "ignore", "reason": "a\x00b"},
    ),
    "NUL in a nested JSON body": Case(
        "service", "POST", AUDIT, 422, "meta.note", body=_audit_event(meta={"note": "\x00"})
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_api_input_is_a_4xx_problem_naming_the_field(target: Target, name: str) -> None:
    case = CASES[name]
    with target.client(case.who) as client:
        if isinstance(case.body, bytes):
            headers = {"Content-Type": "application/json"}
            answer = client.request(
                case.method, case.path, params=case.params, content=case.body, headers=headers
            )
        else:
            answer = client.request(case.method, case.path, params=case.params, json=case.body)
    assert answer.status_code == case.status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert case.field in [e["field"] for e in problem["errors"]], problem


def test_an_audit_event_nested_deep_is_refused_so_every_page_still_reads(target: Target) -> None:
    with target.client("service") as service:
        refused = service.post(AUDIT, json=_audit_event(meta=_nested(260), resource_id="deep"))
    assert refused.status_code == 422, refused.text
    with target.service.factory() as session:
        assert session.query(AuditEventRow).filter_by(resource_id="deep").count() == 0
    with target.client("operator") as operator:
        page = operator.get(AUDIT, params={"limit": 500})
    assert page.status_code == 200, page.text


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/merge-patch+json"]
)
def test_deep_json_is_refused_whatever_json_content_type_it_claims(
    target: Target, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    deep = b'{"events": [' + b"[" * 3000 + b"]" * 3000 + b"]}"
    with target.client("service") as service:
        answer = service.post(AUDIT, content=deep, headers=headers)
    assert answer.status_code == 422, answer.text


def test_json_nested_within_the_limit_is_accepted(target: Target) -> None:
    with target.client("service") as service:
        answer = service.post(AUDIT, json=_audit_event(meta=_nested(20), resource_id="shallow"))
    assert answer.status_code == 201, answer.text
    with target.client("operator") as operator:
        assert operator.get(AUDIT, params={"resource_id": "shallow"}).json()["items"][0]["meta"] == _nested(
            20
        )


# -- the console ----------------------------------------------------------------------------------


def _post_card(
    target: Target, client: httpx.Client, rec_id: int | str, form: dict[str, str]
) -> httpx.Response:
    csrf = target.csrf(client, f"/console/recommendations/{target.rec(SANDBOX)}")
    return client.post(f"/console/recommendations/{rec_id}/decision", data={"csrf_token": csrf, **form})


@pytest.mark.parametrize("rec_id", [HUGE, BIG, "9" * 5000])
def test_console_ids_out_of_range_are_not_found(target: Target, rec_id: int | str) -> None:
    with target.console("admin_a") as client:
        assert client.get(f"/console/recommendations/{rec_id}").status_code == 404
        assert _post_card(target, client, rec_id, {"decision": "upgrade", "revision": "1"}).status_code == 404


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"decision": "upgrade", "revision": "²"}, "revision"),
        ({"decision": "upgrade", "revision": "1" * 5000}, "revision"),
        ({"decision": "upgrade", "revision": str(HUGE)}, "revision"),
        (
            {
                "decision": "schedule",
                "revision": "1",
                "scheduled_for": "9999-12-31T23:00",
                "tz": "America/Adak",
            },
            "scheduled_for",
        ),
        (
            {
                "decision": "ignore",
                "revision": "1",
                "reason": "r",
                "scope": "until",
                "until": "9999-12-31",
                "tz": "America/Adak",
            },
            "until",
        ),
        ({"decision": "ignore", "revision": "1", "reason": "a\x00b"}, "reason"),
    ],
)
def test_console_decision_forms_that_cannot_be_read_are_shown_on_the_card(
    target: Target, form: dict[str, str], field: str
) -> None:
    with target.console("admin_a") as client:
        answer = _post_card(target, client, target.rec(SANDBOX), form)
        if answer.status_code == 422:  # refused at the edge (e.g. a NUL byte): a page naming the field
            assert field in answer.text, answer.text[:2000]
            return
        # post/redirect/get: the refusal is shown once on the card the form came from, in words
        assert answer.status_code == 303, answer.text[:2000]
        shown = client.get(answer.headers["location"])
    assert shown.status_code < 500, shown.text[:2000]
    assert 'id="decision-error"' in shown.text, shown.text[:3000]
    assert "Nothing was recorded." in shown.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/console", {"plugin": "\x00"}),
        ("/console/tenants", {"q": "\x00"}),
        ("/console", {"cursor": _cursor(50, HUGE)}),
        ("/console/adoption", {"weeks": "9" * 5000}),
        ("/console/adoption", {"tenant": "\x00"}),
        ("/console/tenants/a%00b", {}),
        ("/console/scans/a%00b", {}),
    ],
)
def test_console_filters_with_hostile_values_are_refused_not_failed(
    target: Target, path: str, params: dict[str, str]
) -> None:
    with target.console("operator") as client:
        answer = client.get(path, params=params)
    assert 400 <= answer.status_code < 500, answer.text[:2000]

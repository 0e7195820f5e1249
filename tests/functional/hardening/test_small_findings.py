"""Finding 5: subscription URLs checked at creation and masked, static headers, logged token ids,
literal `%` and `_` in the tenant search, and an OpenAPI document that declares what the service answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import pytest
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.observability.logging import JsonFormatter, mask_url
from tests.conftest import LiveServer, ServiceFactory, issue_token
from tests.functional.console.support import ACME, SANDBOX
from tests.functional.events.support import allow_loopback
from tests.functional.hardening.conftest import API, Target

SUBSCRIPTIONS: Final = f"{API}/events/subscriptions"
PROBLEM: Final = "application/problem+json"


def test_a_subscription_to_an_allowed_name_that_resolves_to_loopback_is_refused_at_creation(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    from powerx_governance.auth.model import Role  # noqa: PLC0415

    service = make_service(POWERX_WORKER="0")
    service = allow_loopback(service, tmp_path, "localhost", "127.0.0.2")  # the name, not the address it has
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as client:
        refused = client.post(SUBSCRIPTIONS, json={"name": "sneaky", "url": "http://localhost:9/hook"})
        allowed = client.post(
            SUBSCRIPTIONS,
            json={"name": "with-secrets", "url": "http://ops:hunter2@127.0.0.2:9/hook?token=s3cret&kind=x"},
        )
        listed = client.get(SUBSCRIPTIONS).json()["items"]
        shown = client.get(f"{SUBSCRIPTIONS}/with-secrets").json()
        paused = client.post(f"{SUBSCRIPTIONS}/with-secrets/pause")
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "url"
    assert "non-public address" in refused.json()["detail"]
    assert allowed.status_code == 201, allowed.text
    assert paused.status_code == 200
    for view in (allowed.json(), listed[0], shown, paused.json()):
        assert view["url"] == "http://ops:***@127.0.0.2:9/hook?token=***&kind=x"
    with service.factory() as session:
        trail = json.dumps([[e.changes, e.meta] for e in session.execute(select(AuditEventRow)).scalars()])
    assert "hunter2" not in trail
    assert "s3cret" not in trail
    assert "ops:***@127.0.0.2" in trail


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.example.com/x", "https://hooks.example.com/x"),
        ("https://user@hooks.example.com/x", "https://***@hooks.example.com/x"),
        (
            "https://a:b@hooks.example.com:8443/x?access_token=t&x=1",
            "https://a:***@hooks.example.com:8443/x?access_token=***&x=1",
        ),
        ("https://hooks.example.com/x?sig=abc&api_key=k", "https://hooks.example.com/x?sig=***&api_key=***"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_console_static_files_carry_csp_and_nosniff(target: Target) -> None:
    with target.client(None) as client:
        asset = client.get("/console/static/console.js")
    assert asset.status_code == 200
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert asset.headers["content-security-policy"].startswith("default-src 'self'")


def test_a_refused_attempt_logs_the_token_id(target: Target, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="powerx.auth")
    with target.client("admin_a") as admin:
        assert admin.get(f"{API}/recommendations", params={"tenant": ACME}).status_code == 404
    with target.service.factory() as session:
        token_id = session.execute(
            select(ApiTokenRow.id).where(
                ApiTokenRow.tenant_uuid == SANDBOX, ApiTokenRow.role == "tenant_admin"
            )
        ).scalar_one()
    [record] = [r for r in caplog.records if r.getMessage() == "cross-tenant access refused"]
    logged = json.loads(JsonFormatter().format(record))
    assert logged["token_id"] == token_id
    assert logged["requested_tenant"] == ACME


def test_the_tenant_search_takes_percent_and_underscore_literally(target: Target) -> None:
    with target.console("operator") as client:
        everything = client.get("/console/tenants", params={"q": "%"})
        prefix_then_percent = client.get("/console/tenants", params={"q": "sandbox%"})
        underscore = client.get("/console/tenants", params={"q": "sandbox_"})
    for answer in (everything, prefix_then_percent, underscore):
        assert answer.status_code == 200, answer.headers.get("location")
        assert "/console/tenants/" not in answer.text  # no tenant matched


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "delete")
    ]


def test_openapi_declares_problem_answers_on_every_operation(target: Target) -> None:
    with target.client(None) as client:
        document = client.get("/openapi.json").json()
    internal = [(m, p, op) for m, p, op in _operations(document) if p.startswith("/internal/")]
    assert len(internal) >= 30
    for method, path, operation in internal:
        responses = operation["responses"]
        for status in ("401", "403", "422", "429"):
            assert PROBLEM in responses[status]["content"], (method, path, status)
        if method in ("post", "put"):
            assert PROBLEM in responses["413"]["content"], (method, path)
    declared = {(m, p): set(op["responses"]) for m, p, op in internal}
    assert {"404", "409", "503"} <= declared[("post", f"{API}/decision")]
    assert "404" in declared[("get", f"{API}/policy/versions/{{number}}")]
    assert "409" in declared[("post", "/internal/audit/version")]
    assert "503" in {s for m, p, op in _operations(document) if p == "/readyz" for s in op["responses"]}

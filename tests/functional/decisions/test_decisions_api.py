"""Decisions over real HTTP on SQLite and PostgreSQL: case A-1, 409/404/403/422, bulk, follow-ups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token

BASE = "/internal/version/governance"
SANDBOX = "sandbox-tenant-a"
CRM = "com.powerx.plugins.crm"


def _scanned(make_service: ServiceFactory, clock: FakeClock | None = None) -> GovernanceService:
    service = make_service(clock=clock or FakeClock(), POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending()
    return service


def _recommendation(client: httpx.Client, tenant: str, plugin: str) -> dict[str, Any]:
    page = client.get(f"{BASE}/recommendations", params={"tenant": tenant, "plugin": plugin}).json()
    [item] = page["items"]
    return item  # type: ignore[no-any-return]


def _audit(service: GovernanceService, **where: str) -> list[AuditEventRow]:
    with service.factory() as session:
        stmt = select(AuditEventRow).order_by(AuditEventRow.seq)
        for column, value in where.items():
            stmt = stmt.where(getattr(AuditEventRow, column) == value)
        return list(session.execute(stmt).scalars())


def test_case_a1_card_ignore_and_audit(make_service: ServiceFactory) -> None:
    service = _scanned(make_service)
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    with LiveServer(service, background=False) as live, live.client(admin) as client:
        card = _recommendation(client, SANDBOX, CRM)
        assert (card["current_version"], card["target_version"]) == ("2.3.0", "2.4.0")
        assert card["changelog"]
        assert card["priority"] > 0
        answer = client.post(
            f"{BASE}/decision",
            json={
                "recommendation_id": card["id"],
                "revision": card["revision"],
                "decision": "ignore",
                "reason": "CRM is read-only in the sandbox until the Q1 migration",
                "scope": "target",
            },
        )
        assert answer.status_code == 201, answer.text
        decision = answer.json()
        assert (decision["decision"], decision["state"], decision["actor"]) == (
            "ignore",
            "active",
            f"tenant_admin-{SANDBOX}",
        )
        assert client.get(f"{BASE}/recommendations/{card['id']}").json()["state"] == "ignored"
        open_items = client.get(f"{BASE}/recommendations", params={"state": "open", "plugin": CRM}).json()[
            "items"
        ]
        assert card["id"] not in [i["id"] for i in open_items]
    [event] = _audit(service, operation="decision.ignore", resource_id=str(card["id"]))
    assert event.tenant_uuid == SANDBOX
    assert event.meta["recommender"] == "system"
    assert event.meta["recommendation"]["current_version"] == "2.3.0"
    assert event.meta["recommendation"]["target_version"] == "2.4.0"
    assert event.changes["after"]["reason"] == "CRM is read-only in the sandbox until the Q1 migration"
    assert event.changes["before"]["state"] == "open"


def test_stale_revision_idempotency_and_refusals(make_service: ServiceFactory) -> None:
    service = _scanned(make_service)
    admin, viewer = (
        issue_token(service, Role.TENANT_ADMIN, SANDBOX),
        issue_token(service, Role.VIEWER, SANDBOX),
    )
    other = issue_token(service, Role.TENANT_ADMIN, "acme-retail")
    with LiveServer(service, background=False) as live, live.client(admin) as client:
        card = _recommendation(client, SANDBOX, CRM)
        body = {"recommendation_id": card["id"], "revision": card["revision"], "decision": "upgrade"}
        stale = client.post(f"{BASE}/decision", json={**body, "revision": card["revision"] + 1})
        assert stale.status_code == 409
        assert stale.json()["errors"][0]["field"] == "revision"
        no_reason = client.post(f"{BASE}/decision", json={**body, "decision": "ignore"})
        assert (no_reason.status_code, no_reason.json()["errors"][0]["field"]) == (422, "reason")
        first = client.post(f"{BASE}/decision", json=body, headers={"Idempotency-Key": "k-1"})
        again = client.post(f"{BASE}/decision", json=body, headers={"Idempotency-Key": "k-1"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["id"] == again.json()["id"]
        with live.client(viewer) as as_viewer:
            assert as_viewer.post(f"{BASE}/decision", json=body).status_code == 403
        with live.client(other) as as_other:
            assert as_other.post(f"{BASE}/decision", json=body).status_code == 404
    with service.factory() as session:
        assert len(list(session.execute(select(DecisionRow)).scalars())) == 1


def test_bulk_decision_one_record_and_audit_event_per_tenant(make_service: ServiceFactory) -> None:
    service = _scanned(make_service)
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as client:
        targets = client.get(
            f"{BASE}/recommendations", params={"plugin": CRM, "state": "open", "limit": 500}
        ).json()
        assert targets["items"], "the example fleet has open CRM recommendations"
        when = (service.clock() + timedelta(days=3)).isoformat()
        answer = client.post(
            f"{BASE}/decisions/bulk", json={"plugin_id": CRM, "decision": "schedule", "scheduled_for": when}
        )
        assert answer.status_code == 200, answer.text
        made = answer.json()
    assert made["count"] == len(targets["items"])
    assert {d["tenant_uuid"] for d in made["decisions"]} == {i["tenant_uuid"] for i in targets["items"]}
    events = _audit(service, operation="decision.schedule")
    assert len(events) == made["count"]
    assert {e.meta["batch_id"] for e in events} == {made["batch_id"]}


def test_ignore_expires_and_missed_schedule_is_a_breach_once(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = _scanned(make_service, clock)
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as client:
        items = client.get(f"{BASE}/recommendations", params={"state": "open", "limit": 2}).json()["items"]
        ignored, scheduled = items
        until = (clock() + timedelta(hours=1)).isoformat()
        assert (
            client.post(
                f"{BASE}/decision",
                json={
                    "recommendation_id": ignored["id"],
                    "revision": ignored["revision"],
                    "decision": "ignore",
                    "reason": "vendor hotfix pending",
                    "scope": "until",
                    "until": until,
                    "approver": "ciso@example.invalid",
                },
            ).status_code
            == 201
        )
        assert (
            client.post(
                f"{BASE}/decision",
                json={
                    "recommendation_id": scheduled["id"],
                    "revision": scheduled["revision"],
                    "decision": "schedule",
                    "scheduled_for": (clock() + timedelta(minutes=30)).isoformat(),
                },
            ).status_code
            == 201
        )
        clock.advance(2 * 3600)
        service.schedule_tick()
        service.run_pending()
        service.schedule_tick()  # a second tick must not record the breach again
        service.run_pending()
        assert client.get(f"{BASE}/recommendations/{ignored['id']}").json()["state"] == "open"
    assert len(_audit(service, operation="decision.expired")) == 1
    breaches = _audit(service, operation="sla.breach")
    assert [b.meta["kind"] for b in breaches].count("schedule_missed") == 1
    metrics = service.metrics.render().decode()
    assert 'version_sla_breaches_total{kind="schedule_missed"} 1.0' in metrics


def test_critical_advisory_breaks_an_ignore_and_the_upgrade_is_fulfilled(
    make_service: ServiceFactory,
) -> None:
    service = _scanned(make_service)
    operator, pusher = issue_token(service, Role.OPERATOR), issue_token(service, Role.SERVICE)
    with LiveServer(service, background=False) as live, live.client(operator) as client:
        card = next(
            i
            for i in client.get(f"{BASE}/recommendations", params={"state": "open", "limit": 500}).json()[
                "items"
            ]
            if i["risk_level"] in ("none", "low", "medium") and i["target_version"]
        )
        assert (
            client.post(
                f"{BASE}/decision",
                json={
                    "recommendation_id": card["id"],
                    "revision": card["revision"],
                    "decision": "ignore",
                    "reason": "accepted risk",
                    "scope": "until",
                    "until": (service.clock() + timedelta(days=30)).isoformat(),
                },
            ).status_code
            == 201
        )
        advisory = {
            "id": "PXSA-TEST-BREAK",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": card["plugin_id"]},
                    "ranges": [
                        {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": card["target_version"]}]}
                    ],
                }
            ],
        }
        with live.client(pusher) as as_service:
            assert as_service.post(f"{BASE}/webhooks/advisories", json=advisory).status_code == 202
        service.run_pending()
        after = client.get(f"{BASE}/recommendations/{card['id']}").json()
        assert (after["state"], after["risk_level"]) == ("open", "critical")
        decisions = client.get(f"{BASE}/decisions", params={"recommendation_id": card["id"]}).json()["items"]
        assert [d["state"] for d in decisions] == ["broken"]
    [broken] = _audit(service, operation="decision.broken")
    assert broken.actor == "system"
    assert broken.meta["new_risk_level"] == "critical"

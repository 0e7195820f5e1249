"""Feature flags over real HTTP on SQLite and PostgreSQL: governance off/on, plain upgrade policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

from powerx_governance.auth.model import Role
from powerx_governance.feature_flags import Flag
from powerx_governance.notifications.service import DELIVER_BATCH_TASK, DELIVER_TASK
from powerx_governance.policy.shaping import PLAIN_REASON
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runner import SCAN_TASK
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token
from tests.functional.console.support import sign_in
from tests.functional.operations.support import (
    BASE,
    CRM,
    SANDBOX,
    audit,
    queued_jobs,
    recommendation,
    scanned,
)
from tests.functional.service.support import every_page

GOVERNANCE = f"{BASE}/flags/{Flag.GOVERNANCE.value}"
UPGRADE_POLICY = f"{BASE}/flags/{Flag.UPGRADE_POLICY.value}"


def _flags(client: httpx.Client) -> dict[str, dict[str, object]]:
    return {f["name"]: f for f in client.get(f"{BASE}/flags").json()["items"]}


def test_governance_off_pauses_everything_and_on_resumes_without_loss(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = scanned(make_service, clock, deliver=False)  # notifications queued, not yet sent
    waiting = queued_jobs(service)
    assert waiting
    assert set(waiting) <= {DELIVER_TASK, DELIVER_BATCH_TASK}
    operator = issue_token(service, Role.OPERATOR)
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    with (
        LiveServer(service, background=False) as live,
        live.client(operator) as ops,
        live.client(admin) as tenant,
    ):
        card = recommendation(tenant, SANDBOX, CRM)
        off = ops.put(GOVERNANCE, json={"enabled": False, "reason": "maintenance window"})
        assert off.status_code == 200, off.text
        assert (off.json()["enabled"], off.json()["source"]) == (False, "operator")
        assert _flags(tenant)[Flag.GOVERNANCE.value]["enabled"] is False  # anyone signed in may read it

        # the scheduler is idle, queued work waits
        assert service.schedule_tick() is None
        clock.advance(3600)
        assert service.schedule_tick() is None
        service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
        assert service.run_pending() == 0
        assert queued_jobs(service) == waiting | {SCAN_TASK: 1}

        # the API says so clearly; reads go on
        refused = ops.post(f"{BASE}/scan", json={})
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["flag"] == Flag.GOVERNANCE.value
        assert "governance is off" in refused.json()["detail"]
        decision = {
            "recommendation_id": card["id"],
            "revision": card["revision"],
            "decision": "schedule",
            "scheduled_for": (clock() + timedelta(days=2)).isoformat(),
        }
        assert tenant.post(f"{BASE}/decision", json=decision).status_code == 503
        assert recommendation(tenant, SANDBOX, CRM)["state"] == "open"

        # the console shows a banner
        with httpx.Client(base_url=live.base_url, follow_redirects=True) as browser:
            sign_in(browser, admin)
            page = browser.get("/console")
            assert 'id="governance-off"' in page.text
            assert "Plugin version governance is off" in page.text

        # on again: everything that waited runs, nothing lost
        on = ops.put(GOVERNANCE, json={"enabled": True, "reason": "window over"})
        assert on.json()["enabled"] is True
        ran = service.run_pending(limit=10_000)
        assert ran == sum(waiting.values()) + 1, queued_jobs(service)
        assert queued_jobs(service) == {}
        assert service.schedule_tick() is not None
        assert tenant.post(f"{BASE}/decision", json=decision).status_code == 201
        with httpx.Client(base_url=live.base_url, follow_redirects=True) as browser:
            sign_in(browser, admin)
            assert 'id="governance-off"' not in browser.get("/console").text

    changed = audit(service, "flag.changed")
    assert [(e.resource_id, e.changes["after"]["enabled"], e.meta["reason"]) for e in changed] == [
        (Flag.GOVERNANCE.value, False, "maintenance window"),
        (Flag.GOVERNANCE.value, True, "window over"),
    ]
    assert {e.actor for e in changed} == {f"{Role.OPERATOR.value}-fleet"}


def test_only_operators_change_flags(make_service: ServiceFactory) -> None:
    service = make_service(POWERX_WORKER="0")
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    with LiveServer(service, background=False) as live, live.client(admin) as client:
        assert client.put(GOVERNANCE, json={"enabled": False}).status_code == 403
        assert client.put(f"{BASE}/flags/no-such-flag", json={"enabled": False}).status_code in (403, 422)
    assert service.enabled(Flag.GOVERNANCE)
    assert audit(service, "flag.changed") == []


def test_upgrade_policy_off_gives_plain_recommendations_marked_as_such(make_service: ServiceFactory) -> None:
    service = scanned(make_service)
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as ops:
        governed = recommendation(ops, SANDBOX, CRM)
        assert governed["policy_mode"] == "governed"
        assert governed["sla_deadline"] is not None
        off = ops.put(UPGRADE_POLICY, json={"enabled": False, "reason": "compare with plain"})
        assert off.json()["scan_id"]  # switching the policy re-evaluates the fleet
        service.run_pending(limit=10_000)
        items = every_page(ops, limit=200)[0]
        assert items
        assert all(i["policy_mode"] == "plain" for i in items)
        assert all(PLAIN_REASON in i["reasons"] for i in items)
        assert all(i["sla_deadline"] is None and i["enforcement"] == "advisory" for i in items)
        assert all(i["target_version"] in (None, i["latest_version"]) for i in items)
        plain = recommendation(ops, SANDBOX, CRM)
        assert plain["target_version"] == plain["latest_version"] != governed["target_version"]
        worst = max(a["cvss"] or 0 for a in plain["advisories"])
        assert plain["priority"] == round(worst * 10)
        assert plain["risk_level"] == governed["risk_level"]  # risk still comes from the advisories
        with httpx.Client(base_url=live.base_url, follow_redirects=True) as browser:
            sign_in(browser, operator)
            card = browser.get(f"/console/recommendations/{plain['id']}").text
            assert 'data-figure="policy-mode"' in card
            assert 'id="upgrade-policy-off"' in card

        reset = ops.delete(UPGRADE_POLICY)
        assert (reset.json()["enabled"], reset.json()["source"]) == (True, "default")
        service.run_pending(limit=10_000)
        again = recommendation(ops, SANDBOX, CRM)
        assert (again["policy_mode"], again["target_version"]) == ("governed", governed["target_version"])
    assert [e.operation for e in audit(service, "flag.reset")] == ["flag.reset"]


def test_flags_come_from_the_environment_or_the_settings_file(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("flags:\n  plugin-upgrade-policy: off\n", encoding="utf-8")
    service = make_service(
        POWERX_WORKER="0",
        POWERX_FLAG_PLUGIN_VERSION_GOVERNANCE="off",
        POWERX_SETTINGS_FILE=str(settings_file),
    )
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as ops:
        flags = _flags(ops)
        assert (flags[Flag.GOVERNANCE.value]["enabled"], flags[Flag.GOVERNANCE.value]["source"]) == (
            False,
            "environment",
        )
        assert (flags[Flag.UPGRADE_POLICY.value]["enabled"], flags[Flag.UPGRADE_POLICY.value]["source"]) == (
            False,
            "settings_file",
        )
        assert service.schedule_tick() is None
        assert ops.put(GOVERNANCE, json={"enabled": True}).json()["source"] == "operator"
        assert service.schedule_tick() is not None

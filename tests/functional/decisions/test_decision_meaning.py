"""Decisions keep their meaning (SQLite and PostgreSQL, over HTTP, real subscriber).

An upgrade or schedule decision is fulfilled when the installation reaches the decided target
or a later release without the advisories the target fixes; only new risk on the decided target
supersedes it, and then the admin is told. Flag and policy changes leave it standing. An expired
ignore reopens its finding with a notification and a `plugin.version.alert` (reopened).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from powerx_governance.events.model import EventType
from powerx_governance.feature_flags import Flag
from tests.conftest import ServiceFactory
from tests.functional.decisions.support import (
    BASE,
    CRM,
    SANDBOX,
    SHORTER_SLA,
    Governed,
    audit,
    governed,
    high_advisory,
    notifications,
)
from tests.functional.service.support import metric

UPGRADE_POLICY = f"{BASE}/flags/{Flag.UPGRADE_POLICY.value}"


def _decide(fleet: Governed, card: dict[str, Any], decision: str, **fields: Any) -> dict[str, Any]:
    body = {"recommendation_id": card["id"], "revision": card["revision"], "decision": decision, **fields}
    answer = fleet.ops.post(f"{BASE}/decision", json=body)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def _reopened(fleet: Governed, decision_id: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """The finding notifications and delivered alerts announcing that this decision's end reopened it."""
    notices = [n for n in notifications(fleet.service, "finding") if n.data.get("decision_id") == decision_id]
    alerts = [
        e
        for e in fleet.sink.events()
        if e["type"] == EventType.ALERT.value
        and (e["data"].get("decision") or {}).get("decision_id") == decision_id
    ]
    return notices, alerts


def _crm_upgrade(fleet: Governed) -> tuple[dict[str, Any], dict[str, Any]]:
    card = fleet.recommendation(SANDBOX, CRM)
    assert (card["current_version"], card["target_version"]) == ("2.3.0", "2.4.0")
    return card, _decide(fleet, card, "upgrade")


def test_upgrade_to_exactly_the_decided_target_is_fulfilled_and_counted(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card, decision = _crm_upgrade(fleet)
        fleet.set_version(SANDBOX, CRM, "2.4.0")
        fleet.settle()
        fleet.settle()  # the accept rate is computed at each tick
        [after] = fleet.decisions(card["id"])
        assert (after["state"], after["end_reason"]) == (
            "fulfilled",
            "the installation reached 2.4.0 (decided target 2.4.0)",
        )
        assert fleet.recommendation(SANDBOX, CRM)["state"] != "decided"
        assert metric(fleet.service.metrics.render().decode(), "version_recommendation_accept_ratio") == 1.0
        assert fleet.ops.get(f"{BASE}/recommendations/{card['id']}").json()["current_version"] == "2.4.0"
    [fulfilled] = audit(fleet.service, "decision.fulfilled")
    assert fulfilled.resource_id == str(decision["id"])
    assert audit(fleet.service, "decision.superseded") == []


def test_a_later_release_without_the_advisories_fulfils_a_schedule(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card = fleet.recommendation(SANDBOX, CRM)
        when = (fleet.clock() + timedelta(days=3)).isoformat()
        _decide(fleet, card, "schedule", scheduled_for=when)
        fleet.set_version(SANDBOX, CRM, "2.5.0")  # past the target, not yet the latest (2.6.0)
        fleet.settle()
        [after] = fleet.decisions(card["id"])
        assert (after["state"], after["end_reason"]) == (
            "fulfilled",
            "the installation reached 2.5.0 (decided target 2.4.0)",
        )
        fleet.settle(hours=24 * 4)  # past the scheduled time: fulfilled, so no missed schedule
    assert [b.meta["kind"] for b in audit(fleet.service, "sla.breach")].count("schedule_missed") == 0


def test_policy_mode_and_version_changes_keep_a_decision_whose_target_still_clears(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card, _ = _crm_upgrade(fleet)
        assert fleet.ops.put(UPGRADE_POLICY, json={"enabled": False, "reason": "plain"}).status_code == 200
        fleet.settle()
        plain = fleet.recommendation(SANDBOX, CRM)
        assert (plain["target_version"], plain["state"]) == (plain["latest_version"], "decided")
        assert fleet.ops.post(f"{BASE}/policy/versions", json={"content": SHORTER_SLA}).status_code == 201
        fleet.settle()
        assert fleet.ops.post(f"{BASE}/policy/rollback", json={"version": 1}).status_code == 200
        fleet.settle()
        assert fleet.ops.delete(UPGRADE_POLICY).status_code == 200
        fleet.settle()
        [standing] = fleet.decisions(card["id"])
        assert (standing["state"], standing["target_version"]) == ("active", "2.4.0")
        assert fleet.recommendation(SANDBOX, CRM)["state"] == "decided"
        fleet.set_version(SANDBOX, CRM, "2.4.0")
        fleet.settle()
        assert fleet.decisions(card["id"])[0]["state"] == "fulfilled"
    assert audit(fleet.service, "decision.superseded") == []


def test_new_risk_on_the_decided_target_supersedes_it_and_tells_the_admin(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card, decision = _crm_upgrade(fleet)
        fleet.push_advisory(high_advisory("PXSA-TEST-NEWRISK", CRM, "2.4.0", "2.5.0"))
        fleet.service.run_pending(limit=100_000)  # the delta scan the push queued, and the deliveries
        after = fleet.recommendation(SANDBOX, CRM)
        assert (after["state"], after["target_version"]) == ("open", "2.5.0")
        [ended] = fleet.decisions(card["id"])
        assert ended["state"] == "superseded"
        assert "PXSA-TEST-NEWRISK affects the decided target 2.4.0" in ended["end_reason"]
        notices, alerts = _reopened(fleet, decision["id"])
        fleet.settle()  # a later tick and scan tell nothing again
        again = _reopened(fleet, decision["id"])
        assert (len(again[0]), len(again[1])) == (len(notices), len(alerts))
    [event] = audit(fleet.service, "decision.superseded")
    assert event.meta["new_advisories"] == ["PXSA-TEST-NEWRISK"]
    assert event.meta["new_target_version"] == "2.5.0"
    [notice] = notices
    assert (notice.change, notice.data["decision_state"]) == ("reopened", "superseded")
    [alert] = alerts
    assert (alert["data"]["change"], alert["data"]["previous_state"]) == ("reopened", "decided")
    assert alert["data"]["decision"]["state"] == "superseded"
    assert alert["data"]["target_version"] == "2.5.0"


def test_an_expired_ignore_reopens_with_a_notification_and_an_alert_event(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card = fleet.recommendation(SANDBOX, CRM)
        until = (fleet.clock() + timedelta(hours=1)).isoformat()
        decision = _decide(fleet, card, "ignore", reason="vendor hotfix pending", scope="until", until=until)
        fleet.settle(hours=2)
        fleet.settle(hours=2)  # a second tick finds nothing more to expire
        assert fleet.recommendation(SANDBOX, CRM)["state"] == "open"
        notices, alerts = _reopened(fleet, decision["id"])
    assert len(audit(fleet.service, "decision.expired")) == 1
    [notice] = notices
    assert (notice.change, notice.data["decision_state"]) == ("reopened", "expired")
    assert notice.data["reason"].startswith("the ignore expired at")
    [alert] = alerts
    assert (alert["data"]["change"], alert["data"]["previous_state"]) == ("reopened", "ignored")
    assert alert["data"]["decision"]["state"] == "expired"


def test_an_ignore_of_one_target_survives_policy_switches_and_ends_when_the_data_moves_it(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    with governed(make_service, tmp_path) as fleet:
        card = fleet.recommendation(SANDBOX, CRM)
        decision = _decide(fleet, card, "ignore", reason="2.4.0 breaks our export job", scope="target")
        for enabled in (False, True):
            answer = fleet.ops.put(UPGRADE_POLICY, json={"enabled": enabled, "reason": "compare"})
            assert answer.status_code == 200
            fleet.settle()
        assert fleet.ops.post(f"{BASE}/policy/versions", json={"content": SHORTER_SLA}).status_code == 201
        fleet.settle()
        assert fleet.decisions(card["id"])[0]["state"] == "active"
        assert fleet.recommendation(SANDBOX, CRM)["state"] == "ignored"
        yanked = {
            "version": "2.4.0",
            "channel": "stable",
            "released_at": "2026-09-15T06:00:00Z",
            "yanked": True,
        }
        answer = fleet.pusher.post(f"{BASE}/webhooks/releases", json={"plugin_id": CRM, "release": yanked})
        assert answer.status_code == 202, answer.text
        fleet.service.run_pending(limit=100_000)
        moved = fleet.recommendation(SANDBOX, CRM)
        assert (moved["state"], moved["target_version"]) == ("open", "2.4.1")
        [ended] = fleet.decisions(card["id"])
        assert (ended["state"], ended["end_reason"]) == ("superseded", "the target moved from 2.4.0 to 2.4.1")
        notices, alerts = _reopened(fleet, decision["id"])
    assert len(notices) == len(alerts) == 1

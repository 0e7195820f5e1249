"""Decisions, SLA breaches, broken ignores and alerts: written in the caller's transaction, sent once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from powerx_governance.db.session import transaction
from powerx_governance.kernel import ComponentError
from powerx_governance.notifications.service import (
    console_cards,
    notify_alert,
    notify_decision,
    notify_ignore_broken,
    notify_sla_breach,
)
from powerx_governance.recommendations.tables import RecommendationRow
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import write_fleet
from tests.functional.notifications.sinks import Mailbox, body_text
from tests.functional.notifications.support import drain, install, notification_env, routes_file, scan

ALERT_ROUTE = "im://wecom/powerx-governance-oncall"


def test_events_reach_their_recipients_once(
    make_service: ServiceFactory, tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    inbox, smtp_port = mailbox
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    routes = routes_file(
        tmp_path,
        recipients={
            "admins": {
                "channel": "email",
                "to": ["admins+{tenant_key}@tenants.powerx.test"],
                "digest": "none",
            },
            "oncall": {"channel": "email", "to": ["oncall@powerx.test"], "events": ["alert"]},
            "console": {"channel": "console", "immediate": [], "digest": "none"},
        },
        routes={"default": ["admins", "console"], ALERT_ROUTE: ["oncall", "console"]},
    )
    service = install(service, notification_env(routes, smtp_port=smtp_port))
    scan(service)  # one finding, risk none: below this admin's immediate filter, no digest
    drain(service, clock)
    assert inbox.all() == []
    now = clock()
    with transaction(service.factory) as session:
        rec = session.execute(select(RecommendationRow.id)).scalar_one()
        assert notify_decision(
            session,
            service.notifications,
            decision_id=7,
            recommendation_id=rec,
            decision="schedule",
            actor="li.wei@tenants.powerx.test",
            now=now,
            reason="maintenance window",
            scheduled_for=now + timedelta(days=2),
        )
        assert notify_decision(  # a second decision in the same transaction: a message of its own
            session,
            service.notifications,
            decision_id=9,
            recommendation_id=rec,
            decision="upgrade",
            actor="ops@powerx.test",
            now=now,
        )
        assert notify_sla_breach(
            session,
            service.notifications,
            recommendation_id=rec,
            breach="schedule_missed",
            breach_key="schedule:7",
            now=now,
            scheduled_for=now + timedelta(days=2),
            decision_id=7,
        )
        assert notify_ignore_broken(
            session,
            service.notifications,
            decision_id=8,
            recommendation_id=rec,
            reason="a new advisory made it critical",
            now=now,
        )
        assert notify_alert(
            session,
            service.notifications,
            "scan_failures",
            "3 consecutive scans failed",
            ALERT_ROUTE,
            now,
            key="s1",
        )
    with transaction(service.factory) as session:  # a retried caller: the same keys again
        assert not notify_decision(
            session,
            service.notifications,
            decision_id=7,
            recommendation_id=rec,
            decision="schedule",
            actor="x",
            now=now,
        )
        assert not notify_alert(
            session, service.notifications, "scan_failures", "again", ALERT_ROUTE, now, key="s1"
        )
    drain(service, clock)

    admin = {str(m["Subject"]).strip(): m for m in inbox.to("admins+tenant-000@tenants.powerx.test")}
    assert sorted(admin) == sorted(
        [
            "[PowerX] li.wei@tenants.powerx.test decided to schedule Test Plugin 000 (Tenant 000)",
            "[PowerX] ops@powerx.test decided to upgrade Test Plugin 000 (Tenant 000)",
            "[PowerX] SLA breached: Test Plugin 000 in Tenant 000",
            "[PowerX] Ignored finding is now none: Test Plugin 000 (Tenant 000)",
        ]
    )
    decision = body_text(
        admin["[PowerX] li.wei@tenants.powerx.test decided to schedule Test Plugin 000 (Tenant 000)"], "plain"
    )
    assert "Reason: maintenance window" in decision
    assert "Scheduled for: 2026-12-02 00:00 UTC" in decision
    (alert,) = inbox.to("oncall@powerx.test")
    assert (
        str(alert["Subject"]).strip() == "[PowerX governance alert] scan_failures: 3 consecutive scans failed"
    )
    with transaction(service.factory) as session:
        fleet_cards = console_cards(session, tenant_uuid=None)
        tenant_cards = console_cards(session, tenant_uuid=fleet.tenants[0]["tenant_uuid"])
    assert [c["title"] for c in fleet_cards] == ["Alert (high): scan_failures"]
    assert sorted(c["kind"] for c in tenant_cards) == ["decision", "decision", "ignore_broken", "sla_breach"]


def test_a_component_whose_collaborator_is_missing_fails_at_start(make_service: ServiceFactory) -> None:
    """Before, notification code silently did nothing on a session without its runtime; now a
    component that needs the notifications cannot be built without them."""
    service = make_service(clock=FakeClock())
    without = tuple(c for c in service.installed.components if c.name != "notifications")
    with pytest.raises(ComponentError, match=r"'decisions' needs a NotificationRuntime"):
        service.reconfigured({}, components=without)


def test_an_unknown_recommendation_is_an_error(make_service: ServiceFactory) -> None:
    service = make_service(clock=FakeClock())
    service = install(service, notification_env(None))
    with transaction(service.factory) as session, pytest.raises(LookupError):
        notify_decision(
            session,
            service.notifications,
            decision_id=1,
            recommendation_id=999,
            decision="upgrade",
            actor="a",
            now=service.clock(),
        )

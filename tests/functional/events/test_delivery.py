"""Signed CloudEvents reach a real subscriber on loopback in order, and a subscriber back from downtime
catches up by replay with nothing missing or duplicated (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from powerx_governance.decisions.model import DecisionKind
from powerx_governance.events.model import EventType, SubscriptionStatus
from tests.conftest import ServiceFactory
from tests.functional.events.support import (
    allow_loopback,
    drain,
    event_count,
    fleet_service,
    logged,
    open_recommendations,
    replay,
    show,
    subscribe,
    subscriber,
    take_decision,
)
from tests.functional.notifications.fleet import critical_advisory
from tests.functional.notifications.support import drain as drain_notifications
from tests.functional.notifications.support import scan

ALERT, DECISION, BREACH = EventType.ALERT.value, EventType.DECISION.value, EventType.SLA_BREACH.value


def test_a_subscriber_receives_signed_alerts_decisions_and_breaches_in_order(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path)
    with subscriber() as receiver:
        sub_id, secret = subscribe(service, receiver.url)
        scan(service)  # 2 tenants x 2 plugins: four recommendations opened
        first = open_recommendations(service)[0]
        take_decision(service, first, DecisionKind.SCHEDULE, scheduled_for=clock() + timedelta(minutes=30))
        clock.advance(3600)
        service.schedule_tick()  # the schedule was missed: one SLA breach (and a steady rescan)
        drain(service, clock)

        got = receiver.events()
        receiver.verify(secret)
    assert [e["type"] for e in got] == [ALERT] * 4 + [DECISION, BREACH]
    assert [int(e["sequence"]) for e in got] == [row.seq for row in logged(service)]
    assert len({e["id"] for e in got}) == 6
    assert all(r.headers["content-type"] == "application/cloudevents+json" for r in receiver.accepted())
    assert len(receiver.requests) == 6  # one request per event, none repeated
    alert = got[0]
    assert alert["specversion"] == "1.0"
    assert alert["source"] == "/powerx/version-governance"
    assert alert["subject"] == f"{alert['data']['tenant_uuid']}/{alert['data']['plugin_id']}"
    assert alert["tenantuuid"] == alert["data"]["tenant_uuid"]
    assert alert["time"].endswith("Z")
    assert {k: alert["data"][k] for k in ("change", "current_version", "target_version", "action")} == {
        "change": "opened",
        "current_version": "1.0.0",
        "target_version": "1.0.1",
        "action": "schedule",
    }
    decision = got[4]["data"]
    assert (decision["decision"], decision["recommendation_id"], decision["target_version"]) == (
        "schedule",
        first.id,
        "1.0.1",
    )
    assert decision["scheduled_for"] is not None
    assert decision["actor"] == "ops@powerx.test"
    breach = got[5]["data"]
    assert (breach["breach"], breach["recommendation_id"], breach["decision_id"]) == (
        "schedule_missed",
        first.id,
        decision["decision_id"],
    )
    state = show(service, sub_id)
    assert (state["status"], state["cursor"], state["lag"], state["failures"]) == (
        "active",
        int(got[-1]["sequence"]),
        0,
        0,
    )


def test_a_subscriber_down_for_a_while_catches_up_by_replay_exactly_once(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, fleet = fleet_service(make_service, tmp_path, tenants=3, plugins=2)
    with subscriber() as receiver:
        sub_id, secret = subscribe(service, receiver.url, batch_size=4, max_attempts=3)
        scan(service)  # six alerts, delivered in two batches
        drain(service, clock)
        assert len(receiver.events()) == 6

        receiver.stop()  # down: connections refused
        recs = open_recommendations(service)
        take_decision(service, recs[0], DecisionKind.UPGRADE)
        take_decision(service, recs[1], DecisionKind.IGNORE, reason="vendor hotfix pending")
        fleet.write_catalog(advisories=[critical_advisory("PXSA-2026-0001", fleet.plugin_ids[0])])
        scan(service)  # the advisory escalates plugin 0 everywhere
        drain(service, clock)
        state = show(service, sub_id)
        assert (state["status"], state["failures"]) == ("suspended", 3)
        assert "ConnectError" in state["last_error"]
        assert state["lag"] > 0

        take_decision(service, open_recommendations(service)[0], DecisionKind.UPGRADE)  # while suspended
        drain(service, clock)

        receiver.start()  # back, on the same port
        last_seen = int(receiver.events()[-1]["sequence"])
        replay(service, sub_id, last_seen)
        drain(service, clock)
        receiver.verify(secret)

    got = receiver.events()
    expected = [row.seq for row in logged(service)]
    assert [int(e["sequence"]) for e in got] == expected  # every event once, in order
    assert len({e["id"] for e in got}) == len(expected) == event_count(service)
    types = [e["type"] for e in got[6:]]
    assert types.count(DECISION) == 3
    assert types.count(ALERT) >= 3
    assert all(r.headers["content-type"] == "application/cloudevents-batch+json" for r in receiver.accepted())
    assert all(len(r.events) <= 4 for r in receiver.accepted())
    assert show(service, sub_id)["status"] == "active"
    assert show(service, sub_id)["lag"] == 0
    metrics = service.metrics.render().decode()
    assert f"version_events_delivered_total {float(len(expected))}" in metrics
    assert "version_event_delivery_failures_total 3.0" in metrics


def test_a_503_is_retried_after_backoff_or_retry_after_then_suspends(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path, tenants=1, plugins=1)
    with subscriber() as receiver:
        sub_id, _ = subscribe(service, receiver.url, max_attempts=4)
        receiver.status, receiver.retry_after = 503, "120"
        scan(service)
        service.run_pending()
        assert len(receiver.requests) == 1
        state = show(service, sub_id)
        assert (state["status"], state["failures"], state["last_error"]) == (
            "active",
            1,
            "HTTP 503 Service Unavailable",
        )
        clock.advance(119)
        service.run_pending()
        assert len(receiver.requests) == 1  # Retry-After: 120 is honoured
        clock.advance(2)
        service.run_pending()
        assert len(receiver.requests) == 2
        drain(service, clock)
        assert len(receiver.requests) == 4
        assert show(service, sub_id)["status"] == SubscriptionStatus.SUSPENDED.value
        drain(service, clock)
        assert len(receiver.requests) == 4  # suspended: no more attempts
        ids = {r.headers["webhook-id"] for r in receiver.requests}
        assert len(ids) == 1  # every attempt of the event carries its id


def test_filters_deliver_only_matching_events_and_the_cursor_passes_the_rest(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, fleet = fleet_service(make_service, tmp_path)
    wanted = fleet.tenants[0]["tenant_uuid"]
    with subscriber() as receiver:
        sub_id, _ = subscribe(service, receiver.url, types=(EventType.DECISION,), tenants=(wanted,))
        scan(service)
        for rec in open_recommendations(service):
            take_decision(service, rec, DecisionKind.UPGRADE)
        drain(service, clock)
    got = receiver.events()
    assert [(e["type"], e["tenantuuid"]) for e in got] == [(DECISION, wanted)] * 2
    state = show(service, sub_id)
    assert (state["cursor"], state["lag"]) == (logged(service)[-1].seq, 0)


def test_nothing_is_recorded_without_a_subscription(make_service: ServiceFactory, tmp_path: Path) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path)
    scan(service)
    take_decision(service, open_recommendations(service)[0], DecisionKind.UPGRADE)
    drain_notifications(service, clock)
    assert event_count(service) == 0


def test_two_workers_never_deliver_one_subscription_at_once(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path, tenants=3, plugins=2)
    other = make_service(clock=clock)  # a second instance on the same store: another worker
    other = allow_loopback(other, tmp_path)
    with subscriber(delay=0.03) as receiver:
        subscribe(service, receiver.url)
        scan(service)
        for rec in open_recommendations(service):  # six more transactions, each queueing a delivery job
            take_decision(service, rec, DecisionKind.UPGRADE)
        workers = [threading.Thread(target=s.run_pending, kwargs={"limit": 1000}) for s in (service, other)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        drain(service, clock)
    got = [int(e["sequence"]) for e in receiver.events()]
    assert got == [row.seq for row in logged(service)]
    assert len(got) == 12
    assert receiver.most_in_flight == 1

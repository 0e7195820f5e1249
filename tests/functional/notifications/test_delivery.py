"""Delivery guarantees against real receivers: dedupe, escalation, flaky sinks, dead letters.

A hand-made fleet (every tenant runs the same plugins at 1.0.0, 1.0.1 available) keeps the
counts exact; the HTTP sink deduplicates by Idempotency-Key the way a careful receiver does.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import func, select

from powerx_governance.db.session import transaction
from powerx_governance.jobs.tables import JobRow
from powerx_governance.notifications.service import dead_letters, insert_events
from powerx_governance.notifications.tables import NotificationDeliveryRow, NotificationEventRow
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import critical_advisory, write_fleet
from tests.functional.notifications.sinks import HttpSink, SinkBehaviour, http_sink
from tests.functional.notifications.support import (
    drain,
    install,
    notification_env,
    routes_file,
    scan,
    status_counts,
)

EVERY_LEVEL: Final = ["critical", "high", "medium", "low", "none"]
NOTIFY_PATH: Final = "/internal/notify/version"


def test_a_rescan_sends_nothing_new_and_an_escalation_sends_again(
    make_service: ServiceFactory, tmp_path: Path, sink: tuple[HttpSink, str]
) -> None:
    receiver, sink_url = sink
    fleet = write_fleet(tmp_path / "fleet", tenants=2, plugins=2)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    routes = routes_file(
        tmp_path,
        recipients={"admins": {"channel": "notify_service", "immediate": EVERY_LEVEL, "digest": "none"}},
        routes={"default": ["admins"]},
    )
    service = install(service, notification_env(routes, notify_url=sink_url))

    scan(service)
    drain(service, clock)
    first = receiver.on(NOTIFY_PATH)
    assert len(first) == 2  # one message per tenant, each with both findings
    assert sorted(len(r.body["findings"]) for r in first) == [2, 2]
    assert {f["change"] for r in first for f in r.body["findings"]} == {"opened"}

    scan(service)  # nothing changed
    fleet.write_catalog(extra_release=True)
    scan(service)  # changed (a newer release), but not more urgent
    drain(service, clock)
    assert len(receiver.on(NOTIFY_PATH)) == 2
    assert status_counts(service) == {"delivered": 2}

    escalating = fleet.plugin_ids[0]
    fleet.write_catalog(extra_release=True, advisories=[critical_advisory("PXSA-TEST-0001", escalating)])
    scan(service)
    drain(service, clock)
    escalations = [r.body for r in receiver.on(NOTIFY_PATH) if r not in first]
    assert len(escalations) == 2
    for body in escalations:
        assert [(f["plugin_id"], f["change"], f["risk_level"]) for f in body["findings"]] == [
            (escalating, "escalated", "critical")
        ]
        assert body["findings"][0]["advisories"] == ["PXSA-TEST-0001"]

    scan(service)  # the same escalated state again: still nothing new
    drain(service, clock)
    assert len(receiver.on(NOTIFY_PATH)) == 4
    assert len(receiver.requests) == 4


def test_a_sink_failing_30_percent_gets_every_message_exactly_once(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path / "fleet", tenants=30, plugins=1)
    fleet.write_catalog(advisories=[critical_advisory("PXSA-TEST-0002", fleet.plugin_ids[0])])
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    flaky = SinkBehaviour(fail_share=0.3, lost_ack_share=0.5, seed=20261130)
    with http_sink(flaky) as (receiver, sink_url):
        routes = routes_file(
            tmp_path,
            recipients={
                "admins": {"channel": "notify_service", "immediate": ["critical"], "digest": "none"},
                "oncall": {
                    "channel": "slack",
                    "url": f"{sink_url}/slack",
                    "immediate": ["critical"],
                    "digest": "none",
                },
            },
            routes={"default": ["admins", "oncall"]},
            max_attempts=12,
        )
        service = install(service, notification_env(routes, notify_url=sink_url))
        scan(service)
        drain(service, clock)
    with transaction(service.factory) as session:
        keys = set(session.execute(select(NotificationDeliveryRow.idempotency_key)).scalars())
    assert len(keys) == 60  # 30 tenants x 2 recipients
    assert set(receiver.accepted) == keys  # none missing, none extra, each key accepted once
    assert len(receiver.on(NOTIFY_PATH)) == 30
    assert len(receiver.on("/slack")) == 30
    assert len({r.body["tenant_uuid"] for r in receiver.on(NOTIFY_PATH)}) == 30
    assert status_counts(service) == {"delivered": 60}
    seen = receiver.keys_seen()
    assert receiver.refused > 0, "the sink never refused: the test proves nothing"
    assert any(count > 1 for count in seen.values()), "no lost acknowledgement was retried"


def test_a_sink_that_always_fails_leaves_a_dead_letter_after_n_attempts_honouring_retry_after(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    with http_sink(SinkBehaviour(always_status=503, retry_after="120")) as (receiver, sink_url):
        routes = routes_file(
            tmp_path,
            recipients={"oncall": {"channel": "slack", "url": f"{sink_url}/slack", "immediate": EVERY_LEVEL}},
            routes={"default": ["oncall"]},
            max_attempts=3,
        )
        service = install(service, notification_env(routes))
        scan(service)
        drain(service, clock)
    assert len(receiver.requests) == 3
    assert receiver.accepted == {}
    with transaction(service.factory) as session:
        dead = dead_letters(session)
        runs = list(
            session.execute(
                select(JobRow.run_after).where(JobRow.task == "notify_deliver").order_by(JobRow.run_after)
            ).scalars()
        )
    assert len(dead) == 1
    assert (dead[0]["attempts"], dead[0]["channel"]) == (3, "slack")
    assert "HTTP 503" in dead[0]["last_error"]
    assert [(b - a).total_seconds() >= 120 for a, b in itertools.pairwise(runs)] == [True, True]
    assert status_counts(service) == {"dead": 1}


def test_a_permanent_refusal_is_dead_at_once(make_service: ServiceFactory, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    with http_sink(SinkBehaviour(always_status=404)) as (receiver, sink_url):
        routes = routes_file(
            tmp_path,
            recipients={"oncall": {"channel": "wecom", "url": f"{sink_url}/gone", "immediate": EVERY_LEVEL}},
            routes={"default": ["oncall"]},
            max_attempts=5,
        )
        service = install(service, notification_env(routes))
        scan(service)
        drain(service, clock)
    assert len(receiver.requests) == 1
    with transaction(service.factory) as session:
        dead = dead_letters(session)
    assert [(d["attempts"], d["last_error"]) for d in dead] == [(1, "wecom: HTTP 404 Not Found")]


def _event(key: str, event_id: str, now: datetime) -> dict[str, object]:
    return {
        "id": event_id,
        "dedupe_key": key,
        "kind": "alert",
        "tenant_uuid": None,
        "recommendation_id": None,
        "change": None,
        "risk_level": "high",
        "route": None,
        "data": {},
        "triggered_at": now,
        "created_at": now,
    }


def test_an_event_another_transaction_wrote_first_is_skipped_not_fatal(make_service: ServiceFactory) -> None:
    service = make_service(clock=FakeClock())
    now = service.clock()
    with transaction(service.factory) as session:  # the concurrent writer, committed first
        assert insert_events(session, [_event("alert:race", "e-1", now)]) == {"e-1"}
    with transaction(service.factory) as session:
        inserted = insert_events(
            session, [_event("alert:race", "e-2", now), _event("alert:other", "e-3", now)]
        )
        assert inserted == {"e-3"}
        assert session.execute(select(func.count()).select_from(NotificationEventRow)).scalar_one() == 2

"""Fatigue control: a burst of 5,000 findings becomes one digest per tenant and recipient."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from powerx_governance.db.session import transaction
from powerx_governance.notifications.tables import NotificationEventRow
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import write_fleet
from tests.functional.notifications.sinks import HttpSink, Mailbox, body_text
from tests.functional.notifications.support import (
    digest_tick,
    drain,
    install,
    notification_env,
    routes_file,
    scan,
    status_counts,
)

TENANTS = 50
PLUGINS = 100


def test_a_burst_of_5000_findings_yields_one_digest_per_tenant_and_recipient(
    make_service: ServiceFactory,
    tmp_path: Path,
    mailbox: tuple[Mailbox, int],
    sink: tuple[HttpSink, str],
) -> None:
    inbox, smtp_port = mailbox
    receiver, sink_url = sink
    fleet = write_fleet(tmp_path / "fleet", tenants=TENANTS, plugins=PLUGINS)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    routes = routes_file(
        tmp_path,
        recipients={
            "admins-email": {
                "channel": "email",
                "to": ["admins+{tenant_key}@tenants.powerx.test"],
                "immediate": ["critical"],
                "digest": "hourly",
            },
            "team-slack": {
                "channel": "slack",
                "url": f"{sink_url}/slack",
                "immediate": ["critical"],
                "digest": "hourly",
            },
        },
        routes={"default": ["admins-email", "team-slack"]},
    )
    service = install(service, notification_env(routes, smtp_port=smtp_port))
    scan(service)
    with transaction(service.factory) as session:
        events = session.execute(select(func.count()).select_from(NotificationEventRow)).scalar_one()
    assert events == TENANTS * PLUGINS
    assert status_counts(service) == {}  # nothing is sent at once: none of them is critical

    clock.advance(3600)
    digest_tick(service)
    drain(service, clock)

    emails = inbox.all()
    assert len(emails) == TENANTS  # not 5,000
    assert Counter(str(e["To"]) for e in emails) == {
        f"admins+{t['tenant_key']}@tenants.powerx.test": 1 for t in fleet.tenants
    }
    for email in emails:
        assert f"{PLUGINS} plugin findings" in " ".join(str(email["Subject"]).split())
        assert f"… and {PLUGINS - 50} more" in body_text(email, "plain")
    assert len(receiver.accepted) == TENANTS
    assert status_counts(service) == {"delivered": 2 * TENANTS}

    histogram = service.metrics.recommendation_push_latency_seconds
    counts = [s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count")]
    assert counts == [0]  # digests wait on purpose: they are not push latency

    digest_tick(service)  # nothing is due any more
    drain(service, clock)
    assert len(inbox.all()) == TENANTS

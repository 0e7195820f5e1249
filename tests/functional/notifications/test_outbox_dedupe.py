"""A large announcement skips every dedupe key already announced (and every repeat within it),
whether none of its keys can be stored yet (on SQLite: one range lookup) or some are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.db.bulk import FEW
from powerx_governance.db.session import transaction
from powerx_governance.domain import Severity
from powerx_governance.notifications.model import EventKind
from powerx_governance.notifications.outbox import NewEvent, record_events
from powerx_governance.notifications.tables import (
    NotificationDeliveryRow,
    NotificationEntryRow,
    NotificationEventRow,
)
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.notifications.fleet import write_fleet
from tests.functional.notifications.support import install, notification_env, routes_file

ROUTE = "im://wecom/powerx-governance-oncall"


def _alerts(prefix: str, numbers: range) -> list[NewEvent]:
    clock = FakeClock()
    return [
        NewEvent(
            f"alert:{prefix}:{n:04d}", EventKind.ALERT, Severity.HIGH, clock(), route=ROUTE, data={"n": n}
        )
        for n in numbers
    ]


def _stored(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        rows = session.execute(select(NotificationEventRow.dedupe_key, NotificationEventRow.data))
        return {key: data["n"] for key, data in rows}


def _console_service(make_service: ServiceFactory, tmp_path: Path) -> tuple[GovernanceService, datetime]:
    """A one-tenant service whose alerts (default and `ROUTE`) go to one console recipient; now."""
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    routes = routes_file(
        tmp_path,
        recipients={"console": {"channel": "console", "events": ["alert"]}},
        routes={"default": ["console"], ROUTE: ["console"]},
    )
    return install(service, notification_env(routes)), clock()


def test_a_large_announcement_skips_exactly_the_keys_already_stored(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, now = _console_service(make_service, tmp_path)
    with transaction(service.factory) as session:
        # nothing stored yet between the first and the last key: every event is new
        assert record_events(session, service.notifications, _alerts("a", range(100, 200)), now) == 100
    with transaction(service.factory) as session:
        # keys 100-199 stored, in the middle of this announcement's range; 300 repeats 250's key
        repeat = NewEvent("alert:a:0250", EventKind.ALERT, Severity.HIGH, now, route=ROUTE, data={"n": -1})
        again = [*_alerts("a", range(300)), repeat]
        assert record_events(session, service.notifications, again, now) == 200
    with transaction(service.factory) as session:
        # stored keys only outside this announcement's range ("alert:a:…" < "alert:b:…")
        assert record_events(session, service.notifications, _alerts("b", range(80)), now) == 80
    stored = _stored(service.factory)
    assert len(stored) == 380
    assert stored["alert:a:0250"] == 250  # the first occurrence wins
    assert sorted(stored) == [f"alert:a:{n:04d}" for n in range(300)] + [
        f"alert:b:{n:04d}" for n in range(80)
    ]
    with service.factory() as session:
        assert session.scalar(select(func.count()).select_from(NotificationEventRow)) == 380


def test_events_said_unstored_still_skip_a_key_an_earlier_call_wrote(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """`unstored` spares the lookup, never the guarantee: the unique key skips a repeated one."""
    service, now = _console_service(make_service, tmp_path)
    with transaction(service.factory) as session:
        assert record_events(session, service.notifications, _alerts("a", range(100)), now) == 100
        again = _alerts("a", range(90, 190))  # 90-99: written by the call before, in this transaction
        assert record_events(session, service.notifications, again, now, unstored=True) == 90
    assert sorted(_stored(service.factory)) == [f"alert:a:{n:04d}" for n in range(190)]
    with service.factory() as session:
        assert session.scalar(select(func.count()).select_from(NotificationEntryRow)) == 190


def _data(n: int) -> dict[str, object]:
    if n % 2:
        return {"n": n, "text": "Überprüfung — 检查", "nested": {"list": [n, None, True]}}
    # plain members, repeated between events; True and 1 are equal but not written alike
    return {"plugin_id": f"p{n % 3}", "flag": True if n % 4 else 1, "target_version": None}


def test_many_events_are_written_as_a_few_are(make_service: ServiceFactory, tmp_path: Path) -> None:
    """More than `FEW` events go to the driver as rows built here (PostgreSQL: as COPY text lines);
    the same events written a few at a time go through SQLAlchemy statements: both store the same
    values, special characters of COPY text included."""
    service, now = _console_service(make_service, tmp_path)

    def events(prefix: str) -> list[NewEvent]:
        return [
            NewEvent(
                f"{prefix}:{n:04d}" + ("\t\\N\n\r\\" if n % 5 == 0 else ""),  # COPY text escapes these
                EventKind.ALERT,
                Severity.CRITICAL if n % 3 else Severity.HIGH,
                now - timedelta(minutes=n % 7),
                tenant_uuid=None if n % 4 else f"tenant\t{n % 8}\\",
                recommendation_id=None if n % 2 else n,
                route=ROUTE,
                data=_data(n),
            )
            for n in range(3 * FEW)
        ]

    with transaction(service.factory) as session:
        assert record_events(session, service.notifications, events("many"), now) == 3 * FEW
        few = events("few")
        for start in range(0, len(few), FEW // 2):
            assert (
                record_events(session, service.notifications, few[start : start + FEW // 2], now) == FEW // 2
            )
    with service.factory.kw["bind"].connect() as connection:
        query = text(
            """SELECT e.dedupe_key, e.kind, e.tenant_uuid, e.recommendation_id, e.change, e.risk_level,
            e.route, e.data, e.triggered_at, e.created_at, n.recipient_id, n.tenant_uuid, n.mode, n.due_at,
            n.delivery_id IS NULL FROM notification_events e JOIN notification_entries n ON n.event_id = e.id
            ORDER BY e.dedupe_key"""
        )
        rows = [tuple(r) for r in connection.execute(query)]
        raw_data = "SELECT CAST(data AS TEXT) FROM notification_events ORDER BY dedupe_key"
        texts = [r[0] for r in connection.execute(text(raw_data))]
    written = {prefix: [r[1:] for r in rows if r[0].startswith(prefix)] for prefix in ("many", "few")}
    assert len(written["many"]) == 3 * FEW
    assert written["many"] == written["few"]
    assert texts[: 3 * FEW] == texts[3 * FEW :]  # the stored JSON text too, byte for byte


def test_entries_share_a_message_per_recipient_tenant_and_kind_and_nothing_else(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A large announcement's entries: findings share one message per recipient and tenant, each alert
    has its own, a digest entry none; each entry says its own recipient, tenant, mode and due time,
    however many events before it had the same (the entry after the event id is made once per such
    slot and kept), and events sharing a data document each store it."""
    fleet = write_fleet(tmp_path / "fleet", tenants=1, plugins=1)
    clock = FakeClock()
    service = make_service(clock=clock, **fleet.env())
    routes = routes_file(
        tmp_path,
        recipients={
            "team": {"channel": "console", "events": ["finding", "alert"], "digest": "hourly"},
            "ops": {
                "channel": "console",
                "events": ["finding"],
                "immediate": ["critical", "high"],
                "digest": "none",
            },
        },
        routes={"default": ["team", "ops"]},
    )
    service, now = install(service, notification_env(routes)), clock()
    shared = {"plugin_id": "p", "revision": 1}
    risks = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM)
    events = [
        NewEvent(
            f"event:{n:04d}",
            EventKind.ALERT if n % 7 == 0 else EventKind.FINDING,
            risks[n % 3],
            now,
            tenant_uuid=f"tenant-{n % 2}",
            recommendation_id=n,
            data=shared if n % 5 else {"n": n},
        )
        for n in range(3 * FEW)
    ]
    with transaction(service.factory) as session:
        assert record_events(session, service.notifications, events, now) == len(events)
    entry, stored, delivery = NotificationEntryRow, NotificationEventRow, NotificationDeliveryRow
    query = (
        select(
            *(stored.dedupe_key, entry.recipient_id, entry.tenant_uuid, entry.mode, entry.due_at),
            *(entry.delivery_id, delivery.recipient_id, delivery.tenant_uuid, delivery.kind, stored.data),
        )
        .join(stored, stored.id == entry.event_id)
        .outerjoin(delivery, delivery.id == entry.delivery_id)
    )
    with service.factory() as session:
        entries = {(r[0], r[1]): r[2:] for r in session.execute(query)}
    expected = {}
    for n, event in enumerate(events):
        for recipient in ("team", "ops"):
            if recipient == "ops" and event.kind is EventKind.ALERT:
                continue
            immediate = event.kind is EventKind.ALERT or event.risk in (
                (Severity.CRITICAL,) if recipient == "team" else (Severity.CRITICAL, Severity.HIGH)
            )
            if not immediate and recipient == "ops":
                continue  # ops takes no digest of what it does not want at once
            expected[(event.dedupe_key, recipient)] = (n, event, immediate)
    assert entries.keys() == expected.keys()
    messages: dict[tuple[str, str | None], set[str]] = {}
    alerts: list[str] = []
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    for (key, recipient), (tenant, mode, due, delivery, *sent_to, data) in entries.items():
        n, event, immediate = expected[(key, recipient)]
        assert tenant == event.tenant_uuid
        assert mode == ("immediate" if immediate else "digest")
        assert _utc(due) == (now if immediate else next_hour)
        assert data == event.data
        if not immediate:
            assert delivery is None
            continue
        assert sent_to == [recipient, tenant, event.kind.value]
        if event.kind is EventKind.ALERT:
            alerts.append(delivery)
        else:
            messages.setdefault((recipient, tenant), set()).add(delivery)
    assert all(len(ids) == 1 for ids in messages.values())
    assert len(messages) == 4  # two recipients, two tenants
    assert len(set(alerts)) == len(alerts) == sum(1 for e in events if e.kind is EventKind.ALERT)
    assert not set(alerts) & set().union(*messages.values())


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

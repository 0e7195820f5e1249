"""Subscriptions and the pull feed over real HTTP: operators manage, others are refused, all audited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.decisions.model import DecisionKind
from powerx_governance.events.model import EventType
from powerx_governance.service import GovernanceService
from tests.conftest import LiveServer, ServiceFactory, issue_token
from tests.functional.events.support import (
    allow_loopback,
    drain,
    fleet_service,
    logged,
    open_recommendations,
    show,
    subscribe,
    subscriber,
    take_decision,
)
from tests.functional.notifications.support import scan

SUBSCRIPTIONS = "/internal/version/governance/events/subscriptions"
FEED = "/internal/version/governance/events"


def _audit(service: GovernanceService) -> list[AuditEventRow]:
    with service.factory() as session:
        stmt = select(AuditEventRow).where(AuditEventRow.resource_type == "event_subscription")
        return list(session.execute(stmt.order_by(AuditEventRow.seq)).scalars())


def _post(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(path, json=body or {})


def test_operators_manage_subscriptions_and_every_change_is_audited(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path)
    operator = issue_token(service, Role.OPERATOR)
    with (
        subscriber() as receiver,
        LiveServer(service, background=False) as live,
        live.client(operator) as client,
    ):
        created = client.post(
            SUBSCRIPTIONS,
            json={
                "name": "cmdb",
                "url": receiver.url,
                "types": ["plugin.version.decision"],
                "batch_size": 10,
            },
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("whsec_")
        sub = created.json()["id"]
        assert created.json()["status"] == "active"

        scan(service)
        take_decision(service, open_recommendations(service)[0], DecisionKind.UPGRADE)
        drain(service, clock)
        shown = client.get(f"{SUBSCRIPTIONS}/cmdb").json()
        assert (shown["id"], shown["cursor"], shown["lag"], shown["failures"]) == (
            sub,
            logged(service)[-1].seq,
            0,
            0,
        )
        assert receiver.events()[0]["type"] == "plugin.version.decision"

        assert _post(client, f"{SUBSCRIPTIONS}/{sub}/pause").json()["status"] == "paused"
        assert _post(client, f"{SUBSCRIPTIONS}/{sub}/resume").json()["status"] == "active"
        replayed = _post(client, f"{SUBSCRIPTIONS}/{sub}/replay", {"after": 0})
        assert (replayed.status_code, replayed.json()["cursor"]) == (200, 0)
        drain(service, clock)
        assert [e["type"] for e in receiver.events()] == ["plugin.version.decision"] * 2  # replayed once more
        listed = client.get(SUBSCRIPTIONS)
        assert [i["name"] for i in listed.json()["items"]] == ["cmdb"]
        assert client.delete(f"{SUBSCRIPTIONS}/{sub}").status_code == 204
        assert client.get(f"{SUBSCRIPTIONS}/{sub}").status_code == 404
        everything_shown = created.text.replace(secret, "") + json.dumps(shown) + listed.text + replayed.text
    assert secret not in everything_shown
    audited = _audit(service)
    assert [a.operation for a in audited] == [
        f"events.subscription.{action}" for action in ("created", "paused", "resumed", "replayed", "deleted")
    ]
    assert {a.actor for a in audited} == {"operator-fleet"}
    assert audited[3].changes["after"] == {"status": "active", "cursor": 0}
    assert all(secret not in json.dumps([a.changes, a.meta]) for a in audited)


@pytest.mark.parametrize("role", [Role.SERVICE, Role.TENANT_ADMIN, Role.VIEWER])
def test_only_operators_manage_subscriptions(
    make_service: ServiceFactory, tmp_path: Path, role: Role
) -> None:
    service, _, fleet = fleet_service(make_service, tmp_path, tenants=1, plugins=1)
    token = issue_token(service, role, None if role is Role.SERVICE else fleet.tenants[0]["tenant_uuid"])
    subscribe(service, "http://127.0.0.1:9/hook", name="existing")
    with LiveServer(service, background=False) as live, live.client(token) as client:
        refused = [
            client.post(SUBSCRIPTIONS, json={"name": "x", "url": "http://127.0.0.1:9/hook"}),
            client.get(SUBSCRIPTIONS),
            client.get(f"{SUBSCRIPTIONS}/existing"),
            client.post(f"{SUBSCRIPTIONS}/existing/pause"),
            client.post(f"{SUBSCRIPTIONS}/existing/replay", json={"after": 0}),
            client.delete(f"{SUBSCRIPTIONS}/existing"),
        ]
        feed = client.get(FEED)
        with live.client() as nobody:
            anonymous = nobody.get(SUBSCRIPTIONS)
    assert [r.status_code for r in refused] == [403] * 6
    assert feed.status_code == (200 if role is Role.SERVICE else 403)  # the feed: service tokens too
    assert anonymous.status_code == 401
    assert _audit(service)[-1].operation == "events.subscription.created"  # nothing else happened


def test_bad_requests_name_the_field(make_service: ServiceFactory, tmp_path: Path) -> None:
    service, _, _ = fleet_service(make_service, tmp_path, tenants=1, plugins=1)
    operator = issue_token(service, Role.OPERATOR)
    subscribe(service, "http://127.0.0.1:9/hook", name="taken")
    with LiveServer(service, background=False) as live, live.client(operator) as client:
        duplicate = client.post(SUBSCRIPTIONS, json={"name": "taken", "url": "http://127.0.0.1:9/x"})
        off_list = client.post(SUBSCRIPTIONS, json={"name": "evil", "url": "http://hooks.attacker.test/x"})
        bad_secret = client.post(
            SUBSCRIPTIONS, json={"name": "s", "url": "http://127.0.0.1:9/x", "secret": "hunter2"}
        )
        bad_type = client.post(
            SUBSCRIPTIONS, json={"name": "t", "url": "http://127.0.0.1:9/x", "types": ["plugin.version.nope"]}
        )
        too_far = client.post(f"{SUBSCRIPTIONS}/taken/replay", json={"after": 10})
        unknown = client.post(f"{SUBSCRIPTIONS}/nobody/resume")
    assert (duplicate.status_code, duplicate.json()["errors"][0]["field"]) == (409, "name")
    assert (off_list.status_code, off_list.json()["errors"][0]["field"]) == (422, "url")
    assert "not on webhooks.allow_hosts" in off_list.json()["detail"]
    assert (bad_secret.status_code, bad_secret.json()["errors"][0]["field"]) == (422, "secret")
    assert bad_type.status_code == 422
    assert (too_far.status_code, too_far.json()["errors"][0]["field"]) == (422, "after")
    assert unknown.status_code == 404
    assert "hunter2" not in bad_secret.text


def test_an_allowed_name_resolving_to_loopback_is_refused_at_send_and_suspends(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path, tenants=1, plugins=1)
    service = allow_loopback(service, tmp_path, "localhost", "127.0.0.1")  # creation checks the address too
    with subscriber() as receiver:
        sub, _ = subscribe(service, receiver.url.replace("127.0.0.1", "localhost"))
        service = allow_loopback(
            service, tmp_path, "localhost"
        )  # now the name is allowed, its loopback address not
        scan(service)
        drain(service, clock)
    state = show(service, sub)
    assert (state["status"], state["failures"]) == ("suspended", 1)
    assert "non-public address" in state["last_error"]
    assert receiver.requests == []
    assert _audit(service)[-1].operation == "events.subscription.suspended"


def test_the_pull_feed_pages_through_the_log_with_cursors(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, _, fleet = fleet_service(make_service, tmp_path, tenants=3, plugins=2)
    subscribe(
        service, "http://127.0.0.1:9/hook", name="puller", types=(EventType.DECISION,)
    )  # a subscription exists
    scan(service)
    for rec in open_recommendations(service)[:3]:
        take_decision(service, rec, DecisionKind.UPGRADE)
    reader = issue_token(service, Role.SERVICE)
    with LiveServer(service, background=False) as live, live.client(reader) as client:
        seen: list[dict[str, Any]] = []
        after = 0
        for _ in range(10):
            page = client.get(FEED, params={"after": after, "limit": 4}).json()
            seen += page["events"]
            if not page["events"]:
                break
            after = page["next_cursor"]
        decisions = client.get(FEED, params={"type": "plugin.version.decision"}).json()
        tenant = fleet.tenants[0]["tenant_uuid"]
        of_tenant = client.get(FEED, params={"tenant_uuid": tenant, "limit": 1000}).json()
    assert [int(e["sequence"]) for e in seen] == [row.seq for row in logged(service)]
    assert len(seen) == 9
    assert all(e["specversion"] == "1.0" for e in seen)
    assert [e["type"] for e in decisions["events"]] == ["plugin.version.decision"] * 3
    assert decisions["next_cursor"] == logged(service)[-1].seq  # past the alerts it skipped
    assert {e["tenantuuid"] for e in of_tenant["events"]} == {tenant}
    assert after == logged(service)[-1].seq

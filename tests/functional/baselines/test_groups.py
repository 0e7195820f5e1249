"""Groups, baselines and drift through the real service (SQLite and PostgreSQL).

Three tenants on three PowerX core lines run the same CRM: no release admits all three cores, so the
derived baseline is a conflict naming the members and the min_core/max_core that split them. An
operator's explicit baseline resolves it (audited). A manifest push that downgrades one member's base
plugin makes it drift: within that one delta scan the drift item exists, the group's route gets the
notification at a loopback sink, and a `plugin.version.drift` CloudEvent reaches a loopback subscriber.
Upgrading again resolves the drift and emits the resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from powerx_governance.scans.model import ScanKind
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory
from tests.functional.baselines.support import (
    API,
    BASE,
    CRM,
    GROUP,
    T1,
    T2,
    T3,
    after_scans_tick,
    manifest,
    scanned,
    tokens,
    write_group_fleet,
)
from tests.functional.events.support import Subscriber, subscribe, subscriber
from tests.functional.notifications.sinks import HttpSink, http_sink


def _baseline(detail: dict[str, Any], plugin: str) -> dict[str, Any]:
    found: dict[str, Any] = next(b for b in detail["baselines"] if b["plugin_id"] == plugin)
    return found


def _delta_scans(service: GovernanceService) -> int:
    with service.factory() as session:
        stmt = select(func.count()).select_from(ScanRow).where(ScanRow.kind == ScanKind.DELTA.value)
        return int(session.execute(stmt).scalar_one())


def _push(client: httpx.Client, document: dict[str, Any]) -> None:
    pushed = client.post(f"{API}/webhooks/manifests", json=document)
    assert pushed.status_code == 202, pushed.text


def _conflict_is_named(operator: httpx.Client) -> None:
    """The derived CRM baseline is a conflict naming the members and what splits them."""
    detail = operator.get(f"{API}/groups/{GROUP}").json()
    assert [m["tenant_uuid"] for m in detail["members"]] == sorted([T1, T2, T3])
    crm = _baseline(detail, CRM)
    assert detail["baselines"][0]["plugin_id"] == CRM  # conflicts first
    assert (crm["mode"], crm["status"], crm["baseline"]) == ("derived", "conflict", None)
    subgroups = {s["version"]: s["members"] for s in crm["conflict"]["subgroups"]}
    assert subgroups == {"3.0.0": [T3], "2.0.0": [T2], "1.1.0": [T1]}
    splits = {(s["version"], s["constraint"]): s["members"] for s in crm["conflict"]["splits"]}
    assert splits[("3.0.0", "needs core >= 3.0.0 (min_core), members run core 1.24.0")] == [T1]
    assert splits[("3.0.0", "needs core >= 3.0.0 (min_core), members run core 2.1.0")] == [T2]
    assert splits[("1.1.0", "allows core <= 1.99.99 (max_core), members run core 3.0.0")] == [T3]
    base = _baseline(detail, BASE)
    assert (base["mode"], base["status"], base["baseline"]) == ("derived", "set", "1.0.1")
    assert detail["drift"] == []


def _explicit_baseline_resolves_it(operator: httpx.Client) -> None:
    """An operator accepts the spread with an explicit constraint: resolved, audited, versioned."""
    body = {"version": ">=1.0.0 <4.0.0", "reason": "accept the spread until the core 3 rollout"}
    answer = operator.put(f"{API}/groups/{GROUP}/baselines", params={"plugin": CRM}, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["revision"] == 1
    chosen = answer.json()["baseline"]
    assert (chosen["mode"], chosen["status"], chosen["baseline"]) == (
        "explicit",
        "set",
        ">=1.0.0 <4.0.0",
    )
    assert (chosen["conflict"], chosen["revision"]) == (None, 1)
    assert chosen["reason"].endswith("(revision 1): accept the spread until the core 3 rollout")
    audit = operator.get(
        "/internal/audit/version",
        params={"resource_type": "group_baseline", "operation": "baseline.set"},
    ).json()["items"]
    assert [(a["resource_id"], a["changes"]["after"]["spec"]) for a in audit] == [
        (f"{GROUP}/{CRM}", ">=1.0.0 <4.0.0")
    ]
    history = operator.get(f"{API}/groups/{GROUP}/baselines/history", params={"plugin": CRM}).json()
    assert [(h["revision"], h["spec"]) for h in history["items"]] == [(1, ">=1.0.0 <4.0.0")]
    assert operator.get(f"{API}/drift").json()["items"] == []


def _push_makes_drift(
    service: GovernanceService,
    operator: httpx.Client,
    pusher: httpx.Client,
    sink: HttpSink,
    receiver: Subscriber,
) -> None:
    """A manifest push downgrades a member's base plugin: drift, notification, event in one delta scan."""
    _push(pusher, manifest(T2, base="1.0.0"))
    service.run_pending(limit=1000)
    assert _delta_scans(service) == 1
    [item] = operator.get(f"{API}/drift").json()["items"]
    assert (item["tenant_uuid"], item["plugin_id"], item["status"]) == (T2, BASE, "behind")
    assert (item["installed_version"], item["baseline"], item["state"]) == ("1.0.0", "1.0.1", "open")
    assert item["reason"] == "runs 1.0.0, below the group's derived baseline 1.0.1"
    [message] = sink.on("/slack")
    assert "drifted from the baselines of group platform" in str(message.body)
    opened = [e for e in receiver.events() if e["type"] == "plugin.version.drift"]
    assert [(e["subject"], e["data"]["change"], e["data"]["status"]) for e in opened] == [
        (f"{GROUP}/{T2}/{BASE}", "opened", "behind")
    ]
    assert opened[0]["tenantuuid"] == T2


def _upgrade_resolves_drift(
    service: GovernanceService,
    operator: httpx.Client,
    pusher: httpx.Client,
    sink: HttpSink,
    receiver: Subscriber,
) -> None:
    """The member upgrades again: the drift is resolved, and the resolution is an event."""
    _push(pusher, manifest(T2, base="1.0.1"))
    service.run_pending(limit=1000)
    assert _delta_scans(service) == 2
    assert operator.get(f"{API}/drift").json()["items"] == []
    [resolved] = operator.get(f"{API}/drift", params={"state": "resolved"}).json()["items"]
    assert (resolved["tenant_uuid"], resolved["resolved_at"] is not None) == (T2, True)
    changes = [e["data"]["change"] for e in receiver.events() if e["type"] == "plugin.version.drift"]
    assert changes == ["opened", "resolved"]
    assert len(sink.on("/slack")) == 1  # a resolution is not re-announced to people


def test_conflict_explicit_baseline_drift_and_its_resolution(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    clock = FakeClock()
    fleet = write_group_fleet(tmp_path)
    with http_sink() as (sink, sink_url), subscriber() as receiver:
        service = scanned(make_service, fleet, clock, sink_url)
        subscribe(service, receiver.url)
        keys = tokens(service)
        with (
            LiveServer(service, background=False) as server,
            server.client(keys["operator"]) as operator,
            server.client(keys["service"]) as pusher,
        ):
            _conflict_is_named(operator)
            _explicit_baseline_resolves_it(operator)
            _push_makes_drift(service, operator, pusher, sink, receiver)
            _upgrade_resolves_drift(service, operator, pusher, sink, receiver)


def test_a_push_that_changes_no_finding_is_caught_after_the_scan(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A member drops a plugin the group's explicit baseline names: no finding changes (no change hook
    runs), so the after-scan re-evaluation finds the `missing` drift, and a new subscriber hears of it."""
    clock = FakeClock()
    service = scanned(make_service, write_group_fleet(tmp_path), clock)
    keys = tokens(service)
    with (
        subscriber() as receiver,
        LiveServer(service, background=False) as server,
        server.client(keys["operator"]) as operator,
        server.client(keys["service"]) as pusher,
    ):
        subscribe(service, receiver.url)
        body = {"version": "1.0.1", "reason": "every platform tenant runs base 1.0.1"}
        answer = operator.put(f"{API}/groups/{GROUP}/baselines", params={"plugin": BASE}, json=body)
        assert answer.status_code == 200, answer.text
        assert operator.get(f"{API}/drift").json()["items"] == []
        without_base = manifest(T3)
        without_base["plugins"] = [p for p in without_base["plugins"] if p["plugin_id"] != BASE]
        _push(pusher, without_base)
        service.run_pending(limit=1000)
        assert operator.get(f"{API}/drift").json()["items"] == []  # no finding changed: no hook ran
        after_scans_tick(service)
        [item] = operator.get(f"{API}/drift").json()["items"]
        assert (item["tenant_uuid"], item["plugin_id"], item["status"]) == (T3, BASE, "missing")
        assert item["reason"] == f"does not run {BASE}; the group's explicit baseline is 1.0.1"
        service.run_pending(limit=1000)
        events = [e for e in receiver.events() if e["type"] == "plugin.version.drift"]
        assert [(e["data"]["status"], e["data"]["change"]) for e in events] == [("missing", "opened")]

"""Exactly once, whatever happens in between (SQLite and PostgreSQL, over HTTP, real subscriber).

An SLA breach is one breach per (recommendation, kind, deadline): flag switches, policy versions
and their rollbacks, re-scans, manifest and advisory pushes in any order never record, announce
or emit a second one. A property test drives random interleavings of those through the real
service; the examples are bounded and derandomised, so every run tries the same sequences.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from powerx_governance.events.model import EventType
from powerx_governance.feature_flags import Flag
from tests.conftest import Backend, ServiceFactory, built_services, postgres_getter, provisioned_database
from tests.functional.decisions.support import (
    BASE,
    HR,
    KEYSTONE,
    SHORTER_SLA,
    Governed,
    audit,
    governed,
    high_advisory,
    notifications,
    repeated_breaches,
    repeated_findings,
)

UPGRADE_POLICY: Final = f"{BASE}/flags/{Flag.UPGRADE_POLICY.value}"
PAST_CRITICAL_SLA: Final = 24 * 8  # hours: past every critical-patch SLA of the shipped rules
HR_VERSIONS: Final = ("4.6.0", "4.6.2", "4.6.1")  # critical, fixed (resolves), critical again


class Step(StrEnum):
    FLAG = "flag"  # switch plugin-upgrade-policy (queues a full re-scan)
    POLICY = "policy"  # a shorter SLA as a new policy version, then rollbacks back and forth
    RESCAN = "rescan"
    MANIFEST = "manifest"  # keystone-motors changes its HR version, pushed by the tenant directory
    ADVISORY = "advisory"  # a new advisory on HR's target pushed, then withdrawn, then pushed again
    DAYS = "days"  # ten days pass


def _flag(fleet: Governed, count: int) -> None:
    answer = fleet.ops.put(UPGRADE_POLICY, json={"enabled": count % 2 == 0, "reason": f"switch {count}"})
    assert answer.status_code == 200, answer.text


def _policy(fleet: Governed, count: int) -> None:
    if count == 1:
        answer = fleet.ops.post(f"{BASE}/policy/versions", json={"content": SHORTER_SLA, "note": "6h"})
        assert answer.status_code == 201, answer.text
        return
    back_to = 1 if count % 2 == 0 else 2
    answer = fleet.ops.post(f"{BASE}/policy/rollback", json={"version": back_to, "reason": f"roll {count}"})
    assert answer.status_code == 200, answer.text


def _rescan(fleet: Governed, count: int) -> None:
    assert fleet.ops.post(f"{BASE}/scan", json={}).status_code in (200, 202)


def _manifest(fleet: Governed, count: int) -> None:
    manifest = fleet.inputs.manifest("keystone-motors")
    for plugin in manifest["plugins"]:
        if plugin["plugin_id"] == HR:
            plugin["version"] = HR_VERSIONS[(count - 1) % len(HR_VERSIONS)]
    answer = fleet.pusher.post(f"{BASE}/webhooks/manifests", json=manifest)
    assert answer.status_code == 202, answer.text


def _advisory(fleet: Governed, count: int) -> None:
    advisory = high_advisory("PXSA-TEST-ONCE", HR, "4.6.0", "4.6.2")
    advisory["published"] = "2026-12-01T00:00:00Z"  # later than the fix: the deadline moves with it
    if count % 2 == 0:
        advisory["withdrawn"] = "2026-12-02T00:00:00Z"  # the deadline moves back
    fleet.push_advisory(advisory)


_APPLY: Final[dict[Step, Callable[[Governed, int], None]]] = {
    Step.FLAG: _flag,
    Step.POLICY: _policy,
    Step.RESCAN: _rescan,
    Step.MANIFEST: _manifest,
    Step.ADVISORY: _advisory,
    Step.DAYS: lambda fleet, count: None,
}


def _drive(fleet: Governed, steps: list[Step]) -> None:
    fleet.settle(hours=PAST_CRITICAL_SLA)  # deadlines count from first sight (DESIGN §5.8): let them pass
    assert audit(fleet.service, "sla.breach"), "the fleet starts with breaches"
    counts: dict[Step, int] = dict.fromkeys(Step, 0)
    for step in steps:
        counts[step] += 1
        _APPLY[step](fleet, counts[step])
        fleet.settle(hours=240 if step is Step.DAYS else 1)
    fleet.ops.delete(UPGRADE_POLICY)  # back to the governed policy, one more check
    fleet.settle(hours=240)


def _assert_once(fleet: Governed) -> None:
    repeated = repeated_breaches(fleet.service, fleet.sink)
    assert repeated == {"audit": [], "notification": [], "cloudevent": [], "delivered": []}
    assert repeated_findings(fleet.service) == []
    breaches = audit(fleet.service, "sla.breach")
    assert len(notifications(fleet.service, "sla_breach")) == len(breaches)
    delivered = [e for e in fleet.sink.events() if e["type"] == EventType.SLA_BREACH.value]
    assert len(delivered) == len(breaches)  # the log itself is pruned after POWERX_EVENT_RETENTION


STEPS: Final = st.lists(st.sampled_from(list(Step)), min_size=3, max_size=8)


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example costs seconds; print it as is
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
def test_no_second_breach_for_the_same_deadline_whatever_happens_between(
    backend: Backend, request: pytest.FixtureRequest, steps: list[Step]
) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        provisioned_database(backend, Path(directory), postgres_getter(request)) as url,
        built_services(url, Path(directory)) as build,
        governed(build, Path(directory)) as fleet,
    ):
        _drive(fleet, steps)
        _assert_once(fleet)


def test_flag_off_and_on_sends_no_breach_again(make_service: ServiceFactory, tmp_path: Path) -> None:
    """The issue's case: switching plugin-upgrade-policy off and on re-sent every breach."""
    with governed(make_service, tmp_path) as fleet:
        fleet.settle(hours=PAST_CRITICAL_SLA)
        first = len(audit(fleet.service, "sla.breach"))
        assert first > 0
        hr = fleet.recommendation(KEYSTONE, HR)
        for count in (1, 2, 3, 4):
            _flag(fleet, count)
            fleet.settle(hours=24)
        assert len(audit(fleet.service, "sla.breach")) == first
        assert fleet.recommendation(KEYSTONE, HR)["sla_deadline"] == hr["sla_deadline"]
        _assert_once(fleet)


def test_no_breach_on_the_day_governance_first_sees_a_tenant(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """DESIGN §5.8: fixes released long ago are not overdue on first sight; the clock runs from then."""
    with governed(make_service, tmp_path) as fleet:
        hours_later = 1.0
        fleet.settle(hours=hours_later)
        assert audit(fleet.service, "sla.breach") == []
        critical = [
            i
            for i in fleet.ops.get(f"{BASE}/recommendations", params={"limit": 500}).json()["items"]
            if i["critical_patch"]
        ]
        assert critical
        first_sight = fleet.clock() - timedelta(hours=hours_later)
        for item in critical:
            assert datetime.fromisoformat(item["sla_deadline"]) > first_sight
        fleet.settle(hours=PAST_CRITICAL_SLA)
        assert len(audit(fleet.service, "sla.breach")) >= len(critical)

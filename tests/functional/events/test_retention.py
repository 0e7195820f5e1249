"""The event log keeps events for POWERX_EVENT_RETENTION; older ones are pruned by the scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerx_governance.decisions.model import DecisionKind
from powerx_governance.events import jobs as event_jobs
from powerx_governance.scans.model import ScanKind, ScanTrigger
from tests.conftest import ServiceFactory
from tests.functional.events.support import (
    event_count,
    fleet_service,
    logged,
    open_recommendations,
    subscribe,
    take_decision,
)

DAY = 24 * 3600.0


def test_events_older_than_the_retention_are_pruned(make_service: ServiceFactory, tmp_path: Path) -> None:
    service, clock, _ = fleet_service(make_service, tmp_path, POWERX_WORKER="0")
    service = service.reconfigured({event_jobs.RETENTION_ENV: "7d"})
    subscribe(service, "http://127.0.0.1:9/events")
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(tasks=frozenset({"scan"}))
    first = event_count(service)
    assert first == 4  # two tenants, two plugins each: four recommendations opened

    clock.advance(6 * DAY)
    take_decision(service, open_recommendations(service)[0], DecisionKind.UPGRADE)
    service.schedule_tick()
    assert event_count(service) == first + 1  # nothing is older than seven days yet

    clock.advance(2 * DAY)  # the scan's events are eight days old, the decision's two
    service.schedule_tick()
    [kept] = logged(service)
    assert kept.type == "plugin.version.decision"


@pytest.mark.parametrize("value", ["30m", "soon"])
def test_a_retention_that_is_too_short_or_unreadable_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=event_jobs.RETENTION_ENV):
        event_jobs.retention_of({event_jobs.RETENTION_ENV: value})

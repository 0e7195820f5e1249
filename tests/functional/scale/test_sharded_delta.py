"""Large delta scans are cut into shards like full scans, on both queue backends.

A sharded delta writes exactly what one unsharded delta job writes for the same change (advisories
for plugins most tenants run, and a few manifest pushes): the same recommendations, revisions,
notification events, entries, cards and deliveries, CloudEvents and audit records. A push that
arrives while a sharded delta runs is not lost: the next delta evaluates it, and the store ends as
an unsharded run of the same pushes leaves it. A small delta stays one job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from sqlalchemy import func, select, text

from powerx_governance.catalog import pushes
from powerx_governance.catalog.tables import PluginRow
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.events.model import SubscriptionStatus
from powerx_governance.events.tables import SubscriptionRow
from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.shard_tables import ScanPlanRow
from powerx_governance.scans.shards import shard_progress
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import (
    Backend,
    FakeClock,
    ServiceFactory,
    built_services,
    postgres_getter,
    provisioned_database,
)

BASE: Final = "com.powerx.plugins.base"  # run by 99 of the 100 example tenants
WORKFLOW: Final = "com.powerx.plugins.workflow"  # run by 57
CRITICAL: Final = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
SHARDED: Final = {"POWERX_SCAN_SHARD_SIZE": "7", "POWERX_SCAN_DELTA_SHARD_FROM": "20"}
UNSHARDED: Final = {"POWERX_SCAN_SHARD_SIZE": "0"}
COUNTED: Final = (
    "recommendations",
    "recommendation_revisions",
    "notification_events",
    "notification_entries",
    "notification_console_cards",
    "notification_deliveries",
    "events",
    "audit_events",
)


def _advisory(advisory_id: str, plugin_id: str, fixed: str) -> Advisory:
    record = {
        "id": advisory_id,
        "summary": f"Remote code execution in {plugin_id}",
        "published": "2026-11-29T12:00:00Z",
        "modified": "2026-11-29T12:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": plugin_id},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}],
            }
        ],
    }
    return msgspec.convert(record, Advisory)


def _push_advisory(service: GovernanceService, advisory: Advisory) -> str:
    with transaction(service.factory) as session:
        pushes.push_advisory(session, advisory, actor="vendor-ci", now=service.clock())
        return service.request_delta(session, "vendor-ci")


def _push_manifests(service: GovernanceService, change: Callable[[Any], Any], tenants: list[str]) -> str:
    """Push changed manifests of `tenants` (as the tenant directory would)."""
    with transaction(service.factory) as session:
        manifests = [change(m) for m in inventory_store.load_manifests(session, tenants)]
        inventory_store.upsert_manifests(session, manifests, service.clock())
        return service.request_delta(session, "tenant-directory")


def _drop_last_plugin(manifest: Any) -> Any:
    return msgspec.structs.replace(manifest, plugins=manifest.plugins[:-1])


def _tenants(service: GovernanceService) -> list[str]:
    with service.factory() as session:
        return sorted(session.execute(select(TenantRow.tenant_uuid)).scalars())


def _counts(service: GovernanceService) -> dict[str, int]:
    with service.factory() as session:
        return {t: session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED}  # noqa: S608 - names above


def _recommendations(service: GovernanceService) -> set[tuple[Any, ...]]:
    with service.factory() as session:
        rows = session.execute(
            text(
                "SELECT tenant_uuid, plugin_id, state, action, target_version, risk_level"
                " FROM recommendations"
            )
        )
        return {tuple(r) for r in rows}


def _dirty(service: GovernanceService) -> tuple[int, int]:
    with service.factory() as session:
        tenants = session.execute(select(func.count()).where(TenantRow.dirty)).scalar_one()
        plugins = session.execute(select(func.count()).where(PluginRow.dirty)).scalar_one()
    return tenants, plugins


def _subscribe(service: GovernanceService) -> None:
    """A paused subscription: CloudEvents are recorded (and counted), none is sent."""
    now = service.clock()
    with transaction(service.factory) as session:
        session.add(
            SubscriptionRow(
                id="00000000-0000-4000-8000-000000000001",
                name="counted",
                url="https://events.example.invalid/hook",
                secret="x" * 43,
                types=[],
                tenants=[],
                batch_size=1,
                status=SubscriptionStatus.PAUSED.value,
                cursor=0,
                failures=0,
                max_attempts=5,
                created_by="test",
                created_at=now,
                updated_at=now,
            )
        )


def _run(service: GovernanceService, clock: FakeClock) -> None:
    """Run every job, letting postponed ones (a delta waiting for a sharded scan) come due: on the
    local queue by the service clock, on procrastinate by the database's (a short real wait)."""
    for _ in range(120):
        service.run_pending(limit=10_000)
        with service.factory() as session:
            running = (ScanStatus.QUEUED.value, ScanStatus.RUNNING.value)
            waiting = session.execute(select(func.count()).where(ScanRow.status.in_(running))).scalar_one()
        if not waiting:
            return
        clock.advance(5)
        time.sleep(0.25)
    pytest.fail("scans still waiting after 120 rounds")


@contextmanager
def _second_store(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServiceFactory]:
    var = tmp_path / "reference"
    var.mkdir()
    with (
        provisioned_database(backend, var, postgres_getter(request)) as url,
        built_services(url, var) as build,
    ):
        yield build


def _queue_env(backend: str) -> dict[str, str]:
    """Shards on the local jobs table (SQLite) or on procrastinate (PostgreSQL)."""
    if backend == "postgresql":
        return {**SHARDED, "POWERX_QUEUE_BACKEND": "procrastinate", "POWERX_WORKER": "0"}
    return SHARDED


def _ready(build: ServiceFactory, clock: FakeClock, env: dict[str, str]) -> GovernanceService:
    service = build(clock=clock, **env)
    _subscribe(service)
    service.request_scan(ScanKind.FULL, ScanTrigger.API)
    _run(service, clock)
    return service


def _change(service: GovernanceService) -> list[str]:
    tenants = _tenants(service)
    return [
        _push_advisory(service, _advisory("PXSA-2026-7001", BASE, "1.6.0")),
        _push_advisory(service, _advisory("PXSA-2026-7002", WORKFLOW, "3.4.0")),
        _push_manifests(service, _drop_last_plugin, tenants[10:13]),
    ]


def test_a_large_delta_is_sharded_and_writes_what_one_delta_job_writes(
    make_service: ServiceFactory, backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock, reference_clock = FakeClock(), FakeClock()
    sharded = _ready(make_service, clock, _queue_env(backend))
    with _second_store(backend, tmp_path, request) as build:
        reference = _ready(build, reference_clock, UNSHARDED)
        assert _recommendations(sharded) == _recommendations(reference)
        before, reference_before = _counts(sharded), _counts(reference)
        scans = set(_change(sharded))
        _change(reference)
        _run(sharded, clock)
        _run(reference, reference_clock)
        (scan_id,) = scans  # the pushes coalesced onto one delta scan
        with sharded.factory() as session:
            row = session.get_one(ScanRow, scan_id)
            progress = shard_progress(session, scan_id)
            with reference.factory() as ref:
                expected = ref.execute(
                    select(ScanRow).where(ScanRow.kind == ScanKind.DELTA.value)
                ).scalar_one()
        assert row.status == expected.status == ScanStatus.SUCCEEDED.value
        assert (row.tenants_total, row.tenants_scanned, row.installations, row.findings, row.changes) == (
            expected.tenants_total,
            expected.tenants_scanned,
            expected.installations,
            expected.findings,
            expected.changes,
        )
        assert row.changes > 60  # the advisories reached most of the fleet
        assert progress is not None
        assert progress["shards"] == progress["by_status"]["done"] > 10
        assert _recommendations(sharded) == _recommendations(reference)
        grown = {t: n - before[t] for t, n in _counts(sharded).items()}
        assert grown == {t: n - reference_before[t] for t, n in _counts(reference).items()}
        assert grown["events"] > 0
        assert grown["notification_events"] > 0
        assert _dirty(sharded) == _dirty(reference) == (0, 0)


def test_a_push_during_a_sharded_delta_is_not_lost(
    make_service: ServiceFactory, backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Local queue, one job at a time: the push lands after the plan and some shards, before the rest."""
    clock, reference_clock = FakeClock(), FakeClock()
    sharded = _ready(make_service, clock, SHARDED)
    with _second_store(backend, tmp_path, request) as build:
        reference = _ready(build, reference_clock, UNSHARDED)
        first = _change(sharded)[0]
        assert sharded.run_pending(limit=1) == 1  # the coordinator
        assert sharded.run_pending(limit=2) == 2  # two shards of many
        tenants = _tenants(sharded)
        late = [tenants[0], tenants[-1]]  # one in a shard that ran, one in a shard still to run
        pushed = [
            _push_advisory(sharded, _advisory("PXSA-2026-7003", BASE, "1.6.1")),  # a plugin the plan took
            _push_manifests(sharded, _drop_last_plugin, late),
        ]
        assert first not in pushed  # a running delta takes no more pushes: the next one does
        _run(sharded, clock)
        _change(reference)
        _run(reference, reference_clock)
        _push_advisory(reference, _advisory("PXSA-2026-7003", BASE, "1.6.1"))
        _push_manifests(reference, _drop_last_plugin, late)
        _run(reference, reference_clock)
        with sharded.factory() as session:
            statuses = session.execute(select(ScanRow.status).where(ScanRow.scan_id.in_([first, *pushed])))
            assert set(statuses.scalars()) == {ScanStatus.SUCCEEDED.value}
        assert _recommendations(sharded) == _recommendations(reference)
        assert _dirty(sharded) == (0, 0)


def test_a_push_between_the_plan_and_its_shards_on_procrastinate_is_not_lost(
    make_service: ServiceFactory, backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend != "postgresql":
        pytest.skip("procrastinate runs on PostgreSQL")
    clock, reference_clock = FakeClock(), FakeClock()
    sharded = _ready(make_service, clock, _queue_env(backend))
    with _second_store(backend, tmp_path, request) as build:
        reference = _ready(build, reference_clock, UNSHARDED)
        first = _change(sharded)[0]
        sharded.run_pending(tasks=frozenset({"scan"}))  # the coordinator only
        with sharded.factory() as session:
            assert session.get(ScanPlanRow, first) is not None
        assert _dirty(sharded)[1] == 0  # the plan took the plugins' marks
        _push_advisory(sharded, _advisory("PXSA-2026-7003", BASE, "1.6.1"))
        assert _dirty(sharded)[1] == 1  # marked again, for the next delta
        _run(sharded, clock)
        _change(reference)
        _run(reference, reference_clock)
        _push_advisory(reference, _advisory("PXSA-2026-7003", BASE, "1.6.1"))
        _run(reference, reference_clock)
        assert _recommendations(sharded) == _recommendations(reference)
        assert _dirty(sharded) == (0, 0)


def test_a_small_delta_stays_one_job(make_service: ServiceFactory) -> None:
    clock = FakeClock()
    service = _ready(make_service, clock, {**SHARDED, "POWERX_SCAN_DELTA_SHARD_FROM": "1000"})
    scan_id = _push_manifests(service, _drop_last_plugin, _tenants(service)[:2])
    clock.advance(1)
    _run(service, clock)
    with service.factory() as session:
        assert session.get_one(ScanRow, scan_id).status == ScanStatus.SUCCEEDED.value
        assert shard_progress(session, scan_id) is None
    assert _dirty(service) == (0, 0)


def test_a_given_up_delta_shard_hands_its_plugins_marks_back(make_service: ServiceFactory) -> None:
    """A shard that fails for good: its tenants are not scanned, and every mark it held is dirty again."""
    clock = FakeClock()
    service = _ready(make_service, clock, SHARDED)
    scan_id = _change(service)[0]
    assert service.run_pending(limit=1) == 1  # the coordinator
    with transaction(service.factory) as session:  # as if three workers had died running shard 0
        session.execute(text("UPDATE scan_shards SET attempts = 3 WHERE shard = 0"))
    service.run_pending(limit=10_000)
    with service.factory() as session:
        progress = shard_progress(session, scan_id)
        row = session.get_one(ScanRow, scan_id)
    assert progress is not None
    assert progress["by_status"]["given_up"] == 1
    assert row.status == ScanStatus.INCOMPLETE.value
    assert _dirty(service)[1] == 2  # base and workflow, for the retry
    clock.advance(timedelta(minutes=2).total_seconds())
    _run(service, clock)
    assert _dirty(service) == (0, 0)

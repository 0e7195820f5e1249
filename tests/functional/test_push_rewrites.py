"""A push's delta rewrites stored recommendations from what each kind of finding shares (`_Rewrites`):
what it stores is what the store's columns say, and what a full rescan would store.

After each push (changed, escalated, decided, resolved, reopened recommendations), every open
recommendation's digest is the one computed afresh from its stored columns, every tenant's kept sums
are the ones summed afresh from its rows, decided recommendations keep their state, and a full scan
afterwards finds nothing to change. Real service on a SQLite file or a PostgreSQL schema.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import msgspec
from sqlalchemy import select, update

from powerx_governance.catalog import pushes
from powerx_governance.catalog_records import Advisory
from powerx_governance.db.session import transaction
from powerx_governance.recommendations import store
from powerx_governance.recommendations.digests import FleetFindings
from powerx_governance.recommendations.store import (
    kept_fleet_findings,
    kept_tenant_findings,
    stored_open_findings,
    tenant_findings_from_rows,
)
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.service.support import Inputs

BASE: Final = "com.powerx.plugins.base"  # run by 99 of the 100 example tenants, some of them clean
CRITICAL: Final = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
LOW: Final = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"


def every_change() -> tuple[Advisory, ...]:
    """Pushes that change, resolve, reopen and escalate findings of the base plugin, in this order."""
    return (
        _advisory("PXSA-TEST-LOW", LOW),  # opens the clean installations' findings, changes the others
        _advisory("PXSA-TEST-LOW", LOW, withdrawn="2026-11-30T00:00:00Z"),  # resolves the opened ones
        _advisory("PXSA-TEST-CRIT", CRITICAL),  # reopens them, escalates the others
    )


def _advisory(advisory_id: str, score: str, *, withdrawn: str | None = None) -> Advisory:
    record: dict[str, Any] = {
        "id": advisory_id,
        "published": "2026-11-29T12:00:00Z",
        "modified": withdrawn or "2026-11-29T12:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": score}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": BASE},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "999.0.0"}]}],
            }
        ],
    }
    if withdrawn:
        record["withdrawn"] = withdrawn
    return msgspec.convert(record, Advisory)


def _push(service: GovernanceService, clock: FakeClock, advisory: Advisory) -> ScanRow:
    clock.advance(3600)
    with transaction(service.factory) as session:
        pushes.push_advisory(session, advisory, actor="vendor-ci", now=clock())
        scan_id = service.request_delta(session, "vendor-ci")
    service.run_pending()
    with service.factory() as session:
        return session.get_one(ScanRow, scan_id)


def _assert_stored_as_its_columns_say(service: GovernanceService) -> None:
    with service.factory() as session:
        stored: dict[int, str | None] = dict(
            session.execute(
                select(RecommendationRow.id, RecommendationRow.report_digest).where(
                    RecommendationRow.state != "resolved"
                )
            ).all()
        )
        afresh = {rec_id: found.digest for _, _, rec_id, found in stored_open_findings(session)}
        assert afresh == stored
        from_rows = tenant_findings_from_rows(session)
        assert kept_tenant_findings(session, None) == from_rows
        fleet = FleetFindings()
        for tenant in from_rows.values():
            fleet.add(tenant)
        assert kept_fleet_findings(session, None) == fleet  # what the scan's audit record digests
        some = sorted(from_rows)[::3]
        fleet = FleetFindings()
        for uuid in some:
            fleet.add(from_rows[uuid])
        assert kept_fleet_findings(session, some) == fleet  # a tenant-filtered scan's


def _changes(service: GovernanceService) -> Counter[str]:
    with service.factory() as session:
        return Counter(session.execute(select(RecommendationRevisionRow.change)).scalars())


def test_a_pushs_rewrites_store_what_their_columns_say_and_what_a_full_scan_finds(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_WORKER="0", **Inputs(tmp_path / "inputs").sources)
    service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    with transaction(service.factory) as session:
        decided = list(
            session.execute(
                select(RecommendationRow.id).where(RecommendationRow.plugin_id == BASE).limit(3)
            ).scalars()
        )
        session.execute(
            update(RecommendationRow).where(RecommendationRow.id.in_(decided)).values(state="decided")
        )

    for advisory in every_change():
        delta = _push(service, clock, advisory)
        assert (delta.kind, delta.status) == ("delta", "succeeded")
        assert delta.changes > 0
        _assert_stored_as_its_columns_say(service)

    changes = _changes(service)
    assert all(changes[kind] > 0 for kind in ("changed", "escalated", "resolved", "reopened"))
    with service.factory() as session:
        states = set(
            session.execute(
                select(RecommendationRow.state).where(RecommendationRow.id.in_(decided))
            ).scalars()
        )
    assert states == {"decided"}  # rewritten, their decision's owner judges whether the change ends it

    clock.advance(60)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    with service.factory() as session:
        full = session.get_one(ScanRow, scan_id)
    assert (full.status, full.changes) == ("succeeded", 0)


@contextmanager
def _garbage_kept() -> Iterator[list[object]]:
    """What Python's cycle collector finds unreachable meanwhile (kept for the caller to look at)."""
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[object] = []
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()


def test_a_pushs_write_is_freed_as_it_ends_not_by_a_later_collection(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Nothing a write planned is held in a reference cycle: left to a full collection, a push's
    20,000 tenants' sums, rows and caches grew the process with every push."""
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_WORKER="0", **Inputs(tmp_path / "inputs").sources)
    service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    with _garbage_kept() as garbage:
        delta = _push(service, clock, _advisory("PXSA-TEST-CRIT", CRITICAL))
    assert delta.changes > 0
    writes = (store._Writer, store._Rewrites, store._Sums, store._Plan)
    assert [type(o).__name__ for o in garbage if isinstance(o, writes)] == []

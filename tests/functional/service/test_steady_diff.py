"""The full scan's diff against the store: a steady fleet writes nothing, and a changed advisory
touches exactly the recommendations of the plugin it names, keeping their first-seen time.

Real service on a SQLite file or a PostgreSQL schema, the example fleet as file sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from powerx_governance.inventory import store as inventory_store
from powerx_governance.inventory.loader import ManifestResult
from powerx_governance.inventory.tables import InstallationRow, TenantRow
from powerx_governance.recommendations.store import _changed_tenants, _Fingerprints, persist_findings
from powerx_governance.recommendations.tables import RecommendationRevisionRow, RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runtime import evaluation_engine
from powerx_governance.scans.scanner import scan
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory
from tests.functional.service.support import Inputs

Snapshot = dict[tuple[str, str], tuple[Any, ...]]


def _served_inputs(
    make_service: ServiceFactory, tmp_path: Path
) -> tuple[Inputs, FakeClock, GovernanceService]:
    """The example fleet as file sources, a fake clock, and a service (no worker) scanning them."""
    inputs = Inputs(tmp_path / "inputs")
    clock = FakeClock()
    service = make_service(
        clock=clock,
        POWERX_WORKER="0",
        **inputs.sources,
    )
    return inputs, clock, service


def _full_scan(service: GovernanceService, clock: FakeClock) -> ScanRow:
    clock.advance(60)
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="test")
    service.run_pending()
    with service.factory() as session:
        return session.get_one(ScanRow, scan_id)


def _snapshot(service: GovernanceService) -> Snapshot:
    with service.factory() as session:
        rows = session.execute(
            select(
                RecommendationRow.tenant_uuid,
                RecommendationRow.plugin_id,
                RecommendationRow.id,
                RecommendationRow.revision,
                RecommendationRow.state,
                RecommendationRow.fingerprint,
                RecommendationRow.first_seen_at,
                RecommendationRow.updated_at,
            )
        ).all()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def _dirty(service: GovernanceService) -> dict[str, bool]:
    with service.factory() as session:
        return dict(session.execute(select(TenantRow.tenant_uuid, TenantRow.dirty)).all())


def _revisions(service: GovernanceService) -> int:
    with service.factory() as session:
        return int(session.scalar(select(func.count()).select_from(RecommendationRevisionRow)) or 0)


def test_a_steady_scan_writes_nothing_and_a_changed_advisory_touches_only_its_plugin(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    inputs, clock, service = _served_inputs(make_service, tmp_path)
    first = _full_scan(service, clock)
    assert first.changes > 0
    before, revisions = _snapshot(service), _revisions(service)
    assert _dirty(service)
    assert not any(_dirty(service).values())

    steady = _full_scan(service, clock)
    assert (steady.status, steady.changes) == ("succeeded", 0)
    assert _snapshot(service) == before
    assert _revisions(service) == revisions
    assert not any(_dirty(service).values())

    plugin = "com.powerx.plugins.base"
    with service.factory() as session:
        query = select(InstallationRow.tenant_uuid).where(InstallationRow.plugin_id == plugin)
        running = {(tenant, plugin) for tenant in session.execute(query).scalars()}
    assert any(key in before for key in running), "some already have a recommendation for it"
    assert any(key not in before for key in running), "and some were clean"
    inputs.add_advisory(
        {
            "id": "PXSA-TEST-0001",
            "published": "2026-01-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": plugin},
                    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "999.0.0"}]}],
                }
            ],
        }
    )
    changed = _full_scan(service, clock)
    after = _snapshot(service)
    moved = {key for key in after if after[key] != before.get(key)}
    assert moved == running  # every installation of the plugin, and nothing else
    assert changed.changes == len(running)
    for key in moved - before.keys():
        assert after[key][1:3] == (1, "open")
    for key in moved & before.keys():
        (rec_id, revision, _, fingerprint, first_seen, _) = before[key]
        assert after[key][0] == rec_id
        assert after[key][1] == revision + 1
        assert after[key][3] != fingerprint
        assert after[key][4] == first_seen  # still open: its SLA clock keeps running from first sight
    assert _revisions(service) == revisions + len(running)


def _latest_revisions(service: GovernanceService) -> dict[int, tuple[Any, ...]]:
    """recommendation id -> (state, priority, risk, action, target) of its newest revision."""
    r = RecommendationRevisionRow
    with service.factory() as session:
        newest = (
            select(r.recommendation_id, func.max(r.revision).label("revision"))
            .group_by(r.recommendation_id)
            .subquery()
        )
        rows = session.execute(
            select(r.recommendation_id, r.state, r.priority, r.risk_level, r.action, r.target_version).join(
                newest,
                (r.recommendation_id == newest.c.recommendation_id) & (r.revision == newest.c.revision),
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}


def test_a_changed_recommendation_stores_what_its_revision_says_whether_its_priority_moved_or_not(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Updates leave out the indexed columns (state, priority) whose value stays: rows whose priority
    moved and rows whose priority stayed, written in one scan, each end as their newest revision."""
    inputs, clock, service = _served_inputs(make_service, tmp_path)
    _full_scan(service, clock)
    plugin = "com.powerx.plugins.base"
    for serial, vector in enumerate(  # a medium advisory, then a critical one
        ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 1
    ):
        before = _snapshot(service)
        with service.factory() as session:
            priorities = dict(
                session.execute(
                    select(RecommendationRow.id, RecommendationRow.priority).where(
                        RecommendationRow.plugin_id == plugin
                    )
                ).all()
            )
        inputs.add_advisory(
            {
                "id": f"PXSA-TEST-010{serial}",
                "published": "2026-01-01T00:00:00Z",
                "severity": [{"type": "CVSS_V3", "score": vector}],
                "affected": [
                    {
                        "package": {"ecosystem": "PowerX", "name": plugin},
                        "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "999.0.0"}]}],
                    }
                ],
            }
        )
        assert _full_scan(service, clock).changes > 0
        after = _snapshot(service)
        with service.factory() as session:
            stored = {
                row[0]: tuple(row[1:])
                for row in session.execute(
                    select(
                        RecommendationRow.id,
                        RecommendationRow.state,
                        RecommendationRow.priority,
                        RecommendationRow.risk_level,
                        RecommendationRow.action,
                        RecommendationRow.target_version,
                    )
                )
            }
        moved = [after[key][0] for key in after if key in before and after[key] != before[key]]
        assert moved
        latest = _latest_revisions(service)
        assert all(stored[rec_id] == latest[rec_id] for rec_id in moved)
        stayed = [rec_id for rec_id in moved if stored[rec_id][1] == priorities[rec_id]]
        changed = [rec_id for rec_id in moved if stored[rec_id][1] != priorities[rec_id]]
        if serial == 1:  # a medium advisory: some priorities move, the others stay (fingerprints move)
            assert stayed
            assert changed


def test_the_steady_diff_sums_a_tenants_findings_whatever_their_order(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """Findings re-made from the stored fleet diff as unchanged, in scan order or interleaved across
    tenants; with one tenant's finding left out, both orders make the same change for it alone."""
    _, clock, service = _served_inputs(make_service, tmp_path)
    _full_scan(service, clock)
    runtime, policy = service.runtime, service.runtime.policy()
    outcomes = []
    with service.factory() as session:
        manifests = inventory_store.load_manifests(session)
        engine = evaluation_engine(session, runtime, policy, clock())
        findings = scan(engine, [ManifestResult("store", m, None) for m in manifests]).findings
        tenants = [m.tenant_uuid for m in manifests]
        assert len({f.tenant.tenant_uuid for f in findings}) > 2
        dropped = findings[:1] + findings[2:]  # the first tenant's second finding left out
        for made in (findings, findings[::2] + findings[1::2]):  # every tenant matches its kept sums
            kept = _changed_tenants(session, made, tenants, _Fingerprints(), policy.version)
            assert kept == ([], [], len(findings))
        for made in (findings, findings[::2] + findings[1::2], dropped, dropped[::2] + dropped[1::2]):
            done = persist_findings(
                session, made, scope=tenants, scan_id=None, now=clock(), policy_version=policy.version
            )
            outcomes.append(
                (done.unchanged, sorted((c.tenant_uuid, c.plugin_id, c.change) for c in done.changes))
            )
            session.rollback()
    assert outcomes[0] == outcomes[1] == (len(findings), [])
    assert outcomes[2] == outcomes[3]
    assert [key[0] for key in outcomes[2][1]] == [findings[1].tenant.tenant_uuid]

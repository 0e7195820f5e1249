"""Manifest quality fallback against a real HTTP tenant directory, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from powerx_governance.auth.model import Role
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token
from tests.functional.operations.support import BASE
from tests.functional.sources.fake_directory import PLUGIN, FakePowerX, manifest, tenant_uuid

TENANTS = 10
BROKEN = tenant_uuid(3)


def _scan(service: GovernanceService, client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(limit=10_000)
    return client.get(f"{BASE}/scans/{scan_id}").json(), client.get(f"{BASE}/scans/{scan_id}/report").json()


def _finding(report: dict[str, Any], tenant: str) -> dict[str, Any]:
    [found] = [f for f in report["findings"] if f["tenant_uuid"] == tenant]
    return dict(found)


def test_a_broken_manifest_falls_back_to_the_last_good_one_until_it_is_too_old(
    make_service: ServiceFactory,
) -> None:
    clock = FakeClock()
    with FakePowerX(TENANTS) as fake:
        service = make_service(
            clock=clock,
            POWERX_WORKER="0",
            POWERX_TENANT_SOURCE=fake.base_url,
            POWERX_CATALOG_SOURCE=fake.base_url,
        )
        with (
            LiveServer(service, background=False) as live,
            live.client(issue_token(service, Role.OPERATOR)) as ops,
        ):
            first, _ = _scan(service, ops)
            assert first["coverage"]["tenants_scanned"] == TENANTS

            clock.advance(2 * 3600)
            fake.faults.raw_manifests[BROKEN] = json.dumps(
                {"schema": "powerx.manifest/v1", "tenant_uuid": BROKEN, "core_version": "one.two"}
            ).encode()
            second, report = _scan(service, ops)
            coverage = second["coverage"]
            assert (coverage["tenants_total"], coverage["tenants_scanned"]) == (TENANTS, TENANTS - 1)
            assert (coverage["tenants_stale"], coverage["tenants_failed"]) == (1, 0)
            assert coverage["rate"] == (TENANTS - 1) / TENANTS
            assert report["coverage"]["tenants_stale"] == 1
            stale = _finding(report, BROKEN)
            assert stale["manifest_stale"] is True
            assert stale["manifest_as_of"] == "2026-11-30T00:00:00Z"
            assert stale["manifest_age_seconds"] == 2 * 3600
            assert stale["current_version"] == "2.3.0"  # the last good manifest's installation
            fresh = _finding(report, tenant_uuid(4))
            assert (fresh["manifest_stale"], fresh["manifest_age_seconds"]) == (False, None)
            [error] = [e for e in second["errors"] if e["tenant_uuid"] == BROKEN]
            assert "core_version" in error["error"]
            assert "one.two" in error["error"]
            assert "version_scan_tenants_stale 1.0" in ops.get("/metrics").text

            clock.advance(23 * 3600)  # the last good manifest is now 25 h old: max_report_age is 24 h
            third, report = _scan(service, ops)
            assert (third["coverage"]["tenants_stale"], third["coverage"]["tenants_failed"]) == (0, 1)
            assert third["status"] == "incomplete"

            del fake.faults.raw_manifests[BROKEN]
            fourth, report = _scan(service, ops)
            assert fourth["coverage"]["tenants_scanned"] == TENANTS
            assert _finding(report, BROKEN)["manifest_stale"] is False


def test_bad_entries_are_reported_one_by_one_and_the_rest_of_the_manifest_counts(
    make_service: ServiceFactory,
) -> None:
    with FakePowerX(3) as fake:
        odd = tenant_uuid(1)
        document = manifest(odd)
        document["plugins"] += [
            {"plugin_id": PLUGIN, "version": "2.4.0"},
            {"plugin_id": "com.powerx.plugins.nowhere", "version": "1.0.0"},
            {"plugin_id": "com.powerx.plugins.base", "version": "1.x"},
        ]
        fake.manifests[odd] = document
        service = make_service(
            POWERX_WORKER="0", POWERX_TENANT_SOURCE=fake.base_url, POWERX_CATALOG_SOURCE=fake.base_url
        )
        with (
            LiveServer(service, background=False) as live,
            live.client(issue_token(service, Role.OPERATOR)) as ops,
        ):
            scan, report = _scan(service, ops)
    assert scan["coverage"]["tenants_scanned"] == 3  # the tenant still counts
    errors = sorted(e["error"] for e in scan["errors"] if e["tenant_uuid"] == odd)
    assert errors == [
        "plugins[1].plugin_id: 'com.powerx.plugins.crm' is listed again (first at plugins[0])",
        "plugins[1].plugin_id: 'com.powerx.plugins.nowhere' is not in the catalog",
        "plugins[3].version: '1.x' is not a SemVer 2.0.0 version (expected MAJOR.MINOR.PATCH[-pre][+build])",
    ]
    assert _finding(report, odd)["current_version"] == "2.3.0"  # the first listing counts

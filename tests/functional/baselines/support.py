"""A small fleet for group tests: three tenants on three PowerX cores, a catalog whose CRM releases each
admit one core line, a groups file, and routes that send drift to a loopback sink."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from powerx_governance.auth.model import Role
from powerx_governance.baselines.jobs import AfterScans
from powerx_governance.db.session import transaction
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory, issue_token
from tests.functional.notifications.support import routes_file

API: Final = "/internal/version/governance"
T1: Final = "tenant-core1"  # core 1.24.0
T2: Final = "tenant-core2"  # core 2.1.0
T3: Final = "tenant-core3"  # core 3.0.0
CRM: Final = "com.powerx.test.crm"
BASE: Final = "com.powerx.test.base"
GROUP: Final = "platform"
SOLO: Final = "core3-only"
ROUTE: Final = "grp://platform"
CORES: Final = {T1: "1.24.0", T2: "2.1.0", T3: "3.0.0"}
CRM_RUNNING: Final = {T1: "1.1.0", T2: "2.0.0", T3: "3.0.0"}


def _release(version: str, min_core: str | None = None, max_core: str | None = None) -> dict[str, Any]:
    release: dict[str, Any] = {"version": version, "channel": "stable", "released_at": "2026-01-10T00:00:00Z"}
    if min_core:
        release["min_core"] = min_core
    if max_core:
        release["max_core"] = max_core
    return release


CATALOG: Final = {
    "schema": "powerx.catalog/v1",
    "plugins": [
        {
            "plugin_id": CRM,
            "name": "Test CRM",
            "vendor_id": "vnd_test",
            "releases": [
                _release("1.0.0", "1.0.0", "1.99.99"),
                _release("1.1.0", "1.0.0", "1.99.99"),
                _release("2.0.0", "2.0.0", "2.99.99"),
                _release("3.0.0", "3.0.0"),
            ],
        },
        {
            "plugin_id": BASE,
            "name": "Test Base",
            "vendor_id": "vnd_test",
            "releases": [_release("1.0.0"), _release("1.0.1")],
        },
    ],
    "advisories": [
        {
            "id": "PXSA-TEST-0001",
            "aliases": ["CVE-2026-40001"],
            "summary": "CRM 1.x exports leak session cookies",
            "published": "2026-02-01T00:00:00Z",
            "modified": "2026-02-01T00:00:00Z",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"}],
            "affected": [
                {
                    "package": {"ecosystem": "PowerX", "name": CRM},
                    "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}],
                }
            ],
        }
    ],
}
ADVISORY: Final = "PXSA-TEST-0001"


def manifest(tenant: str, *, base: str = "1.0.1", crm: str | None = None) -> dict[str, Any]:
    return {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": tenant,
        "tenant_key": tenant,
        "name": tenant.replace("-", " ").title(),
        "plan": "pro",
        "tags": ["platform"],
        "core_version": CORES[tenant],
        "plugins": [
            {
                "plugin_id": CRM,
                "version": crm or CRM_RUNNING[tenant],
                "channel": "stable",
                "state": "enabled",
            },
            {"plugin_id": BASE, "version": base, "channel": "stable", "state": "enabled"},
        ],
    }


@dataclass(frozen=True)
class GroupFleet:
    directory: Path
    groups: Path

    def env(self, sink_url: str | None = None) -> dict[str, str]:
        recipients: dict[str, Any] = {"console": {"channel": "console", "immediate": [], "digest": "none"}}
        routes: dict[str, Any] = {"default": ["console"], ROUTE: ["console"]}
        if sink_url is not None:
            recipients["platform-im"] = {"channel": "slack", "url": f"{sink_url}/slack", "events": ["alert"]}
            routes[ROUTE] = ["platform-im", "console"]
        routes_path = routes_file(self.directory, recipients, routes)
        return {
            "POWERX_TENANT_SOURCE": str(self.directory / "manifests"),
            "POWERX_CATALOG_SOURCE": str(self.directory / "catalog.yaml"),
            "POWERX_GROUPS": str(self.groups),
            "POWERX_NOTIFICATION_ROUTES": str(routes_path),
        }


def write_group_fleet(directory: Path) -> GroupFleet:
    manifests = directory / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    for tenant in CORES:
        (manifests / f"{tenant}.yaml").write_text(yaml.safe_dump(manifest(tenant)), encoding="utf-8")
    (directory / "catalog.yaml").write_text(yaml.safe_dump(CATALOG, sort_keys=False), encoding="utf-8")
    groups = directory / "groups.yaml"
    document = {
        "schema": "powerx.groups/v1",
        "groups": [
            {"id": GROUP, "name": "Platform tenants", "route": ROUTE, "tenants": [T1, T2, T3]},
            {"id": SOLO, "name": "Core 3 tenants", "tenants": [T3]},
        ],
    }
    groups.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return GroupFleet(directory, groups)


def scanned(
    make_service: ServiceFactory, fleet: GroupFleet, clock: FakeClock, sink_url: str | None = None
) -> GovernanceService:
    """A service on the group fleet after one full scan, run here (and the jobs it queued)."""
    service = make_service(clock=clock, POWERX_WORKER="0", **fleet.env(sink_url))
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(limit=10_000)
    with transaction(service.factory) as session:
        assert session.get_one(ScanRow, scan_id).status == "succeeded"
    after_scans_tick(service)
    return service


def after_scans_tick(service: GovernanceService) -> None:
    """The baselines' scheduler follow-up alone (every group after a finished scan), then its job."""
    [tick] = [p for p in service.installed.periodic if isinstance(p, AfterScans)]
    tick(service)
    service.run_pending(limit=10_000)


def tokens(service: GovernanceService) -> dict[str, str]:
    """One token per role the isolation tests use."""
    return {
        "service": issue_token(service, Role.SERVICE),
        "operator": issue_token(service, Role.OPERATOR),
        "admin_1": issue_token(service, Role.TENANT_ADMIN, T1),
        "viewer_1": issue_token(service, Role.VIEWER, T1),
        "admin_3": issue_token(service, Role.TENANT_ADMIN, T3),
    }

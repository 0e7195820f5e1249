"""Fail-closed intake in the service (DESIGN §7): an advisory it cannot read is never called clean.

Real services on SQLite and PostgreSQL, reading the example data as their file sources; scans are
requested and run by the test (no worker thread), then read back through the real HTTP API.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from powerx_governance.auth.model import Role
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token
from tests.functional.console.support import sign_in
from tests.functional.service.support import API, Inputs

SSO: Final = "com.powerx.plugins.sso-saml"
UNREADABLE: Final = {
    "id": "PXSA-UNREADABLE",
    "published": "2026-11-01",
    "database_specific": {"severity": "CRITICAL"},
    "affected": [
        {
            "package": {"ecosystem": "PowerX", "name": SSO},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "banana"}, {"fixed": "pear"}]}],
        }
    ],
}


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    return Inputs(tmp_path / "inputs", tenants=["sandbox-tenant-a", "acme-retail"])


@pytest.fixture
def service(make_service: ServiceFactory, inputs: Inputs) -> GovernanceService:
    return make_service(
        clock=FakeClock(),
        POWERX_WORKER="0",
        **inputs.sources,
    )


def _full_scan(service: GovernanceService, client: httpx.Client) -> dict[str, Any]:
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    scan: dict[str, Any] = client.get(f"{API}/scans/{scan_id}").json()
    return scan


def _sso(client: httpx.Client) -> list[dict[str, Any]]:
    page = client.get(f"{API}/recommendations", params={"plugin": SSO, "limit": 100}).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def test_an_unreadable_advisory_sends_installations_to_review_and_the_scan_is_incomplete(
    service: GovernanceService, inputs: Inputs
) -> None:
    inputs.add_advisory(UNREADABLE)
    with LiveServer(service) as live, live.client(issue_token(service, Role.OPERATOR)) as client:
        scan = _full_scan(service, client)
        assert scan["status"] == "incomplete"
        assert any("PXSA-UNREADABLE" in e["error"] and "review" in e["error"] for e in scan["errors"])
        assert any("PXSA-UNREADABLE" in w["error"] and "published" in w["error"] for w in scan["warnings"])
        found = _sso(client)
        assert found
        for item in found:
            assert item["action"] == "review"
            assert item["risk_level"] == "critical"
            assert any("PXSA-UNREADABLE" in r for r in item["reasons"])
    with LiveServer(service) as live, live.client() as browser:
        sign_in(browser, issue_token(service, Role.OPERATOR))
        page = browser.get(f"/console/scans/{scan['scan_id']}")
        assert page.status_code == 200
        assert "Incomplete." in page.text
        assert "PXSA-UNREADABLE" in page.text.split("Advisories sent to review", 1)[1]
        assert "Warnings: input repaired (1)" in page.text


def test_an_unreadable_advisory_source_keeps_the_stored_advisories(
    service: GovernanceService, inputs: Inputs
) -> None:
    with LiveServer(service) as live, live.client(issue_token(service, Role.OPERATOR)) as client:
        assert _full_scan(service, client)["status"] == "succeeded"
        before = {(i["tenant_uuid"], i["plugin_id"]): i["risk_level"] for i in _every(client)}
        shutil.rmtree(inputs.catalog_file.parent / "advisories")
        scan = _full_scan(service, client)
        assert scan["status"] == "incomplete"
        assert any("advisories" in e["error"] for e in scan["errors"])
        after = {(i["tenant_uuid"], i["plugin_id"]): i["risk_level"] for i in _every(client)}
        assert after == before
        assert "critical" in before.values()


def _every(client: httpx.Client) -> list[dict[str, Any]]:
    page = client.get(f"{API}/recommendations", params={"limit": 500}).json()
    items: list[dict[str, Any]] = page["items"]
    return items

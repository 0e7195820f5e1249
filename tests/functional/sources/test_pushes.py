"""Pushes are a source of their own: pushed releases and advisories survive full scans until they are
withdrawn or an operator removes them, and are merged with the catalog source by documented rules."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.service import GovernanceService
from tests.conftest import LiveServer, ServiceFactory, issue_token, service_env
from tests.functional.cli import powerx_with
from tests.functional.service.support import API, Inputs, wait_for_scan

SANDBOX: Final = "sandbox-tenant-a"
CRM: Final = "com.powerx.plugins.crm"
CRITICAL: Final = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
MEDIUM: Final = "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N"


def advisory(modified: str, vector: str = CRITICAL, **extra: Any) -> dict[str, Any]:
    """PXSA-2026-9001 against crm < 2.4.1, as of `modified`."""
    return {
        "id": "PXSA-2026-9001",
        "summary": "Remote code execution through crafted import files",
        "published": "2026-11-29T12:00:00Z",
        "modified": modified,
        "severity": [{"type": "CVSS_V3", "score": vector}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": CRM},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "2.4.1"}]}],
            }
        ],
        **extra,
    }


RELEASE: Final = {
    "version": "2.6.1",
    "channel": "stable",
    "released_at": "2026-11-25T00:00:00Z",
    "min_core": "1.23.0",
    "max_core": "2.99.99",
    "changelog": "### Fixed\n- Quote PDFs cut off after 20 lines.",
}


@dataclass
class Setup:
    service: GovernanceService
    inputs: Inputs
    pusher: httpx.Client
    operator: httpx.Client
    env: dict[str, str]

    def push(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.pusher.post(f"{API}/webhooks/{route}", json=body)
        assert response.status_code == 202, response.text
        accepted: dict[str, Any] = response.json()
        assert wait_for_scan(self.operator, accepted["delta_scan_id"])["status"] == "succeeded"
        return accepted

    def full_scan(self) -> None:
        started = self.operator.post(f"{API}/scan", json={})
        assert started.status_code == 202, started.text
        assert wait_for_scan(self.operator, started.json()["scan_id"])["status"] == "succeeded"

    def crm(self) -> dict[str, Any]:
        items = self.operator.get(f"{API}/recommendations", params={"tenant": SANDBOX, "limit": 100}).json()
        found: dict[str, Any] = next(i for i in items["items"] if i["plugin_id"] == CRM)
        return found

    def listed(self, kind: str) -> list[dict[str, Any]]:
        response = self.operator.get(f"{API}/webhooks/{kind}")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def audit(self, operation: str) -> list[AuditEventRow]:
        with self.service.factory() as session:
            stmt = (
                select(AuditEventRow).where(AuditEventRow.operation == operation).order_by(AuditEventRow.seq)
            )
            return list(session.execute(stmt).scalars())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return powerx_with(self.env, "version", "pushes", *args)


@pytest.fixture
def setup(make_service: ServiceFactory, database_url: str, tmp_path: Path) -> Iterator[Setup]:
    inputs = Inputs(tmp_path / "inputs", tenants=["sandbox-tenant-a", "acme-retail"])
    sources = {
        "POWERX_TENANT_SOURCE": str(inputs.manifests),
        "POWERX_CATALOG_SOURCE": str(inputs.catalog_file),
    }
    service = make_service(
        POWERX_TENANT_SOURCE=sources["POWERX_TENANT_SOURCE"],
        POWERX_CATALOG_SOURCE=sources["POWERX_CATALOG_SOURCE"],
    )
    pusher, operator = issue_token(service, Role.SERVICE), issue_token(service, Role.OPERATOR)
    with LiveServer(service) as live, live.client(pusher) as p, live.client(operator) as o:
        ready = Setup(service, inputs, p, o, service_env(database_url, tmp_path, sources))
        ready.full_scan()
        yield ready


def _risk(setup: Setup) -> tuple[str, bool]:
    crm = setup.crm()
    return crm["risk_level"], any(a["id"] == "PXSA-2026-9001" for a in crm["advisories"])


def test_a_pushed_advisory_stays_through_full_scans_until_withdrawn_then_an_operator_removes_it(
    setup: Setup,
) -> None:
    assert _risk(setup) == ("high", False)
    setup.push("advisories", advisory("2026-11-29T12:00:00Z"))
    assert _risk(setup) == ("critical", True)
    setup.full_scan()  # the catalog source does not carry it: it stays
    assert _risk(setup) == ("critical", True)
    assert [(a["advisory_id"], a["state"], a["plugins"]) for a in setup.listed("advisories")] == [
        ("PXSA-2026-9001", "in_force", [CRM])
    ]
    withdrawn = advisory("2026-11-30T08:00:00Z", withdrawn="2026-11-30T08:00:00Z")
    assert setup.push("advisories", withdrawn)["state"] == "withdrawn"
    setup.full_scan()
    assert _risk(setup) == ("high", False)
    assert [a["state"] for a in setup.listed("advisories")] == ["withdrawn"]

    refused = setup.operator.request("DELETE", f"{API}/webhooks/advisories/PXSA-2026-9001", json={})
    assert refused.status_code == 422  # a removal needs a reason
    removed = setup.operator.request(
        "DELETE", f"{API}/webhooks/advisories/PXSA-2026-9001", json={"reason": "withdrawn upstream"}
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["plugins"] == [CRM]
    assert setup.listed("advisories") == []
    again = setup.operator.request(
        "DELETE", f"{API}/webhooks/advisories/PXSA-2026-9001", json={"reason": "x"}
    )
    assert again.status_code == 404
    [event] = setup.audit("push.removed")
    assert (event.resource_type, event.resource_id, event.actor) == (
        "pushed_advisory",
        "PXSA-2026-9001",
        "operator-fleet",
    )
    assert event.meta == {"reason": "withdrawn upstream"}


def test_the_later_modified_record_wins_ties_go_to_the_catalog_and_a_catalog_withdrawal_retires_the_push(
    setup: Setup,
) -> None:
    setup.push("advisories", advisory("2026-11-29T12:00:00Z"))
    setup.inputs.add_advisory(advisory("2026-11-28T00:00:00Z", MEDIUM))  # older catalog record
    setup.full_scan()
    assert _risk(setup) == ("critical", True)
    assert [a["state"] for a in setup.listed("advisories")] == ["in_force"]

    setup.inputs.add_advisory(advisory("2026-11-29T12:00:00Z", MEDIUM))  # same modified: the catalog's
    setup.full_scan()
    crm = setup.crm()
    assert ("PXSA-2026-9001", "medium") in {(a["id"], a["severity"]) for a in crm["advisories"]}
    assert [a["state"] for a in setup.listed("advisories")] == ["overridden_by_catalog"]

    setup.push("advisories", advisory("2026-11-30T00:00:00Z"))  # a newer push wins again
    assert _risk(setup) == ("critical", True)
    setup.full_scan()
    assert _risk(setup) == ("critical", True)

    catalog_withdrawal = advisory("2026-11-30T06:00:00Z", withdrawn="2026-11-30T06:00:00Z")
    setup.inputs.add_advisory(catalog_withdrawal)
    setup.full_scan()
    assert _risk(setup) == ("high", False)
    assert setup.listed("advisories") == []
    [event] = setup.audit("push.retired")
    assert (event.resource_id, event.actor) == ("PXSA-2026-9001", "catalog-source")
    assert "withdrawn by the catalog source" in event.meta["reason"]


def test_a_pushed_release_stays_the_catalog_wins_a_version_in_both_unless_the_push_yanks_it(
    setup: Setup,
) -> None:
    assert setup.crm()["latest_version"] == "2.6.0"
    assert setup.push("releases", {"plugin_id": CRM, "release": RELEASE})["state"] == "in_force"
    setup.full_scan()
    assert setup.crm()["latest_version"] == "2.6.1"
    listed = setup.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert '"state": "in_force"' in listed.stdout

    setup.inputs.add_release(CRM, {**RELEASE, "changelog": "### Fixed\n- From the catalog."})
    setup.full_scan()
    assert [(r["version"], r["state"]) for r in setup.listed("releases")] == [
        ("2.6.1", "overridden_by_catalog")
    ]
    assert setup.crm()["latest_version"] == "2.6.1"

    yanked = setup.push("releases", {"plugin_id": CRM, "release": {**RELEASE, "yanked": True}})
    assert yanked["state"] == "in_force"
    assert setup.crm()["latest_version"] == "2.6.0"
    setup.full_scan()
    assert setup.crm()["latest_version"] == "2.6.0"

    removed = setup.cli("remove-release", CRM, "2.6.1", "--reason", "yank sent by mistake", "--actor", "ana")
    assert removed.returncode == 0, removed.stderr
    assert "re-evaluated by delta scan" in removed.stderr
    setup.full_scan()  # (the CLI's delta scan is queued at the machine's time, not the test's clock)
    assert setup.crm()["latest_version"] == "2.6.1"  # the catalog's record is in force again
    assert setup.listed("releases") == []
    [event] = setup.audit("push.removed")
    assert (event.resource_id, event.actor, event.meta) == (
        f"{CRM}@2.6.1",
        "cli:ana",
        {"reason": "yank sent by mistake"},
    )
    unknown = setup.cli("remove-advisory", "PXSA-NOPE", "--reason", "x")
    assert unknown.returncode == 2
    assert "no advisory 'PXSA-NOPE'" in unknown.stderr


def test_the_advisory_webhook_passes_on_the_intakes_warnings_and_errors(setup: Setup) -> None:
    body = advisory("2026-11-29T12:00:00Z", published="2026-11-29")
    body["affected"][0]["ranges"].append({"type": "SEMVER", "events": [{"introduced": "banana"}]})
    answer = setup.push("advisories", body)
    assert len(answer["warnings"]) == 1
    assert "published" in answer["warnings"][0]
    assert answer["errors"]
    assert all("affected[0].ranges[1]" in e for e in answer["errors"])
    assert "banana" in answer["errors"][0]
    assert _risk(setup) == ("critical", True)  # what could be read still applies

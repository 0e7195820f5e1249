"""Policy versions on SQLite and PostgreSQL: API and file changes, audit, rollback and re-scan, refusals."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from powerx_governance.auth.model import Role
from powerx_governance.recommendations.store import kept_tenant_findings, tenant_findings_from_rows
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import RULES, LiveServer, ServiceFactory, issue_token
from tests.functional.operations.support import BASE, SANDBOX, audit, recommendation, scanned
from tests.functional.service.support import every_page

POLICY = f"{BASE}/policy"
KEYSTONE = "91281d0d-f60b-5a75-a7b7-55cd2bedc116"  # keystone-motors: a critical HR patch, default SLA
HR = "com.powerx.plugins.hr"
SHORTER_SLA = RULES.read_text(encoding="utf-8").replace(
    "    sla_hours: 24\n    notification: {route: im://wecom/security-oncall",
    "    sla_hours: 6\n    notification: {route: im://wecom/security-oncall",
    1,
)


def _hours(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() / 3600


def _versions(client: httpx.Client) -> dict[str, Any]:
    answer = client.get(f"{POLICY}/versions")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _policy_versions_of_open(service: GovernanceService) -> set[int | None]:
    with service.factory() as session:
        stmt = select(RecommendationRow.policy_version).where(RecommendationRow.state != "resolved")
        return set(session.execute(stmt).scalars())


def _kept_sums_are_the_rows(service: GovernanceService) -> bool:
    """Restamping every open recommendation with another version keeps the tenants' sums exact."""
    with service.factory() as session:
        return kept_tenant_findings(session, None) == tenant_findings_from_rows(session)


def test_change_rollback_and_rescan_name_the_version(make_service: ServiceFactory) -> None:
    service = scanned(make_service)
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as ops:
        first = recommendation(ops, KEYSTONE, HR)
        assert first["policy_version"] == 1
        assert first["critical_patch"]
        assert first["sla_deadline"]
        assert "critical-security" in first["rule_ids"]
        listed = _versions(ops)
        assert listed["current_version"] == 1
        [v1] = listed["items"]
        assert (v1["source"], v1["author"]) == ("file", f"file:{RULES}")

        created = ops.post(
            f"{POLICY}/versions", json={"content": SHORTER_SLA, "note": "critical-security SLA 6h"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["number"] == 2
        assert created.headers["location"].endswith("/policy/versions/2")
        service.run_pending(limit=10_000)  # the full re-scan the new version queued
        second = recommendation(ops, KEYSTONE, HR)
        assert second["policy_version"] == 2
        assert _hours(first["sla_deadline"], second["sla_deadline"]) == -18
        assert _policy_versions_of_open(service) == {2}
        assert _kept_sums_are_the_rows(service)

        diff = ops.get(f"{POLICY}/diff", params={"from": 1, "to": 2}).json()["diff"]
        assert "-    sla_hours: 24" in diff
        assert "+    sla_hours: 6" in diff

        rolled = ops.post(f"{POLICY}/rollback", json={"version": 1, "reason": "6h is too tight"})
        assert rolled.status_code == 200, rolled.text
        assert (rolled.json()["current_version"], rolled.json()["previous_version"]) == (1, 2)
        service.run_pending(limit=10_000)
        third = recommendation(ops, KEYSTONE, HR)
        assert third["policy_version"] == 1
        assert third["sla_deadline"] == first["sla_deadline"]
        assert _policy_versions_of_open(service) == {1}
        assert _kept_sums_are_the_rows(service)
        assert all(i["policy_version"] == 1 for i in every_page(ops, limit=200)[0])
        assert _versions(ops)["current_version"] == 1
        shown = ops.get(f"{POLICY}/versions/2").json()
        assert (shown["content"], shown["current"], shown["note"]) == (
            SHORTER_SLA,
            False,
            "critical-security SLA 6h",
        )

    [made] = audit(service, "policy.version_created")
    assert (made.resource_id, made.actor, made.meta["source"]) == ("2", f"{Role.OPERATOR.value}-fleet", "api")
    assert made.changes == {"before": {"current_version": 1}, "after": {"current_version": 2}}
    [back] = audit(service, "policy.rollback")
    assert back.changes == {"before": {"current_version": 2}, "after": {"current_version": 1}}
    assert back.meta["reason"] == "6h is too tight"
    with service.factory() as session:
        scans = {row.scan_id: row for row in session.execute(select(ScanRow)).scalars()}
    assert scans[back.meta["scan_id"]].trigger == "policy"
    assert scans[back.meta["scan_id"]].policy_version == 1
    assert scans[made.meta["scan_id"]].policy_version == 2


def test_a_changed_rules_file_is_a_new_version_and_a_broken_one_is_refused(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "governance_rules.yaml"
    rules.write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    service = scanned(make_service, POWERX_RULES=str(rules))
    rules.write_text(SHORTER_SLA, encoding="utf-8")
    service.schedule_tick()  # the scheduler notices the file change
    service.run_pending(limit=10_000)
    assert _policy_versions_of_open(service) == {2}
    [made] = audit(service, "policy.version_created")
    assert (made.actor, made.meta["source"]) == (f"file:{rules}", "file")

    rules.write_text(SHORTER_SLA.replace("escalation_after: 3", "escalation_after: many"), encoding="utf-8")
    for _ in range(2):  # refused once, not again on every tick
        service.schedule_tick()
    service.run_pending(limit=10_000)
    [refused] = audit(service, "policy.refused")
    assert refused.outcome == "failure"
    assert "defaults.escalation_after" in refused.meta["error"]
    assert refused.meta["current_version"] == 2
    assert _policy_versions_of_open(service) == {2}  # the version in force stays
    rules.write_text(SHORTER_SLA, encoding="utf-8")  # fixed back to the version in force: no change
    service.schedule_tick()
    assert len(audit(service, "policy.version_created")) == 1
    operator = issue_token(service, Role.OPERATOR)
    with LiveServer(service, background=False) as live, live.client(operator) as ops:
        assert _versions(ops)["current_version"] == 2
        scan = ops.post(f"{BASE}/scan", json={}).json()
        service.run_pending(limit=10_000)
        assert ops.get(f"{BASE}/scans/{scan['scan_id']}").json()["status"] == "succeeded"


def test_invalid_documents_and_unknown_versions_are_refused_by_name(make_service: ServiceFactory) -> None:
    service = make_service(POWERX_WORKER="0")
    service.sync_policy()  # as the serving process does at start
    operator = issue_token(service, Role.OPERATOR)
    admin = issue_token(service, Role.TENANT_ADMIN, SANDBOX)
    with LiveServer(service, background=False) as live, live.client(operator) as ops:
        bad = ops.post(f"{POLICY}/versions", json={"content": "defaults:\n  min_coverage: 7\n"})
        assert bad.status_code == 422
        assert bad.json()["errors"] == [
            {"field": "defaults.min_coverage", "error": "expected a rate between 0 and 1"}
        ]
        unknown_key = ops.post(f"{POLICY}/versions", json={"content": "rulez: []\n"})
        assert unknown_key.status_code == 422
        assert "rulez" in unknown_key.json()["detail"]
        assert ops.post(f"{POLICY}/rollback", json={"version": 9}).status_code == 404
        assert ops.get(f"{POLICY}/versions/9").status_code == 404
        assert _versions(ops)["current_version"] == 1
        with live.client(admin) as tenant:
            assert tenant.get(f"{POLICY}/versions").status_code == 403
            assert tenant.post(f"{POLICY}/rollback", json={"version": 1}).status_code == 403
    assert audit(service, "policy.version_created") == []

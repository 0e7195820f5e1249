"""Signals operators can trust: the failure streak, coverage, the console's last-scan tile and
`powerx version metrics` follow fleet full scans only; the A-2 alert says what failed, is listed
with its state and is resolved (with a message) when full scans recover; unknown tenants are
refused; a tenant sees its own coverage; every scan leaves exactly one audit event.

Real services on a SQLite file or a PostgreSQL schema, the real app over HTTP, the real CLI in a
subprocess. The "outage" is the catalog file gone (a full scan cannot refresh the catalog)
while manifest pushes keep arriving (delta scans read the store and succeed).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import func, select

from powerx_governance.audit.service import verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.notifications.tables import NotificationEventRow
from powerx_governance.recommendations.digests import served_report_sha256
from powerx_governance.recommendations.store import (
    kept_tenant_findings,
    rebuild_tenant_findings,
    tenant_findings_from_rows,
)
from powerx_governance.recommendations.tables import RecommendationRow, VerdictRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runner import run_scan
from powerx_governance.scans.store_report import stored_report, stored_report_digest
from powerx_governance.scans.tables import AlertRow, ScanRow
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, LiveServer, ServiceFactory, issue_token, service_env, store_tenant
from tests.functional.cli import powerx_with
from tests.functional.console.support import sign_in
from tests.functional.notifications.support import install, notification_env, routes_file
from tests.functional.service.support import API, Inputs, metric, metric_sum

ACME: Final = "90072176-2ac5-5c15-a81e-9bece3eb7393"  # tenant_key acme-retail
ALERT_ROUTE: Final = "im://wecom/powerx-governance-oncall"  # defaults.alert_channel of the shipped rules
ESCALATION_AFTER: Final = 3


@dataclass
class Outage:
    """A service on two example tenants whose catalog file can be taken away and put back."""

    service: GovernanceService
    clock: FakeClock
    inputs: Inputs
    live: LiveServer
    operator: httpx.Client
    pusher: httpx.Client
    env: dict[str, str]

    def catalog_down(self) -> None:
        self.inputs.catalog_file.rename(self.inputs.catalog_file.with_suffix(".gone"))

    def catalog_up(self) -> None:
        self.inputs.catalog_file.with_suffix(".gone").rename(self.inputs.catalog_file)

    def full_scan(self) -> dict[str, Any]:
        self.clock.advance(1)  # scans follow each other in time (retries, due in 60 s, wait)
        started = self.operator.post(f"{API}/scan", json={})
        assert started.status_code == 202, started.text
        self.service.run_pending()
        return self.scan(started.json()["scan_id"])

    def push(self, revision: int) -> dict[str, Any]:
        """A routine manifest push (the tenant directory's webhook): a delta scan runs and succeeds."""
        self.clock.advance(1)
        manifest = self.inputs.manifest("acme-retail") | {"name": f"Acme Retail (rev {revision})"}
        pushed = self.pusher.post(f"{API}/webhooks/manifests", json=manifest)
        assert pushed.status_code in (200, 202), pushed.text
        self.service.run_pending()
        return next(s for s in self.scans() if s["kind"] == "delta")  # the newest

    def scan(self, scan_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.operator.get(f"{API}/scans/{scan_id}").json()
        return found

    def scans(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.operator.get(f"{API}/scans", params={"limit": 200}).json()["items"]
        return items

    def metric(self, name: str) -> float | None:
        return metric(self.operator.get("/metrics").text, name)

    def cli(self, *args: str) -> Any:
        run = powerx_with(self.env, "version", *args)
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads(run.stdout)


@pytest.fixture
def outage(make_service: ServiceFactory, database_url: str, tmp_path: Path) -> Iterator[Outage]:
    inputs = Inputs(tmp_path / "inputs", tenants=["sandbox-tenant-a", "acme-retail"])
    sources = {
        "POWERX_TENANT_SOURCE": str(inputs.manifests),
        "POWERX_CATALOG_SOURCE": str(inputs.catalog_file),
    }
    clock = FakeClock()
    service = make_service(clock=clock, POWERX_WORKER="0", **sources)
    routes = routes_file(
        tmp_path,
        recipients={"oncall": {"channel": "console", "immediate": [], "digest": "none", "events": ["alert"]}},
        routes={"default": [], ALERT_ROUTE: ["oncall"]},
    )
    service = install(service, notification_env(routes))
    env = service_env(database_url, tmp_path, sources)
    with (
        LiveServer(service, background=False) as live,
        live.client(issue_token(service, Role.OPERATOR)) as operator,
        live.client(issue_token(service, Role.SERVICE)) as pusher,
    ):
        yield Outage(service, clock, inputs, live, operator, pusher, env)


def _alert_messages(service: GovernanceService) -> list[tuple[str, str]]:
    with service.factory() as session:
        rows = session.execute(
            select(NotificationEventRow.data).where(NotificationEventRow.kind == "alert")
        ).scalars()
        return [(d["alert"], d["message"]) for d in rows]


def test_pushes_during_an_outage_of_full_scans_keep_the_streak_and_the_alert_fires(outage: Outage) -> None:
    first = outage.full_scan()
    assert (first["status"], first["fleet"], outage.metric("version_scan_coverage_ratio")) == (
        "succeeded",
        True,
        1.0,
    )
    outage.catalog_down()
    for failed in range(1, ESCALATION_AFTER + 1):
        full = outage.full_scan()
        assert (full["status"], full["kind"], full["fleet"]) == ("failed", "full", True)
        for revision in range(2):  # routine pushes keep succeeding meanwhile
            delta = outage.push(failed * 10 + revision)
            assert (delta["status"], delta["fleet"], delta["coverage"]["rate"]) == ("succeeded", False, 1.0)
            assert outage.metric("version_scan_consecutive_failures") == failed
            assert outage.metric("version_scan_coverage_ratio") == 0.0
        figures = outage.cli("metrics", "--json")["coverage"]
        assert (figures["last_scan"], figures["status"], figures["rate"]) == (full["scan_id"], "failed", 0.0)
        assert figures["consecutive_failures"] == failed
        assert len(outage.operator.get(f"{API}/alerts").json()["items"]) == (
            1 if failed == ESCALATION_AFTER else 0
        )

    [alert] = outage.operator.get(f"{API}/alerts").json()["items"]
    assert (alert["kind"], alert["state"], alert["resolved_at"], alert["channel"]) == (
        "scan_failures",
        "firing",
        None,
        ALERT_ROUTE,
    )
    assert alert["cause"].startswith("catalog-file: ")
    assert "catalog.json" in alert["cause"]
    assert alert["message"].startswith(f"{ESCALATION_AFTER} consecutive full scans failed")
    assert alert["cause"] in alert["message"]
    assert outage.cli("alerts", "list", "--state", "firing", "--json")["items"] == [alert]
    assert [kind for kind, _ in _alert_messages(outage.service)] == ["scan_failures"]
    metrics = outage.operator.get("/metrics").text
    assert metric(metrics, "version_alerts_total", kind="scan_failures") == 1
    # the Prometheus alert's cause: the failing source and reason, one series while the streak lasts
    cause = {"source": "catalog-file", "reason": "unavailable"}
    assert metric(metrics, "version_scan_last_failure_info", **cause) == 1
    assert metric_sum(metrics, "version_scan_last_failure_info") == 1

    outage.catalog_up()
    recovered = outage.full_scan()
    assert recovered["status"] == "succeeded"
    assert outage.metric("version_scan_consecutive_failures") == 0
    assert outage.metric("version_scan_coverage_ratio") == 1.0
    assert metric_sum(outage.operator.get("/metrics").text, "version_scan_last_failure_info") == 0
    [resolved] = outage.operator.get(f"{API}/alerts", params={"state": "resolved"}).json()["items"]
    assert (resolved["id"], resolved["state"], resolved["cause"]) == (alert["id"], "resolved", alert["cause"])
    assert resolved["resolved_at"] is not None
    assert outage.operator.get(f"{API}/alerts", params={"state": "firing"}).json()["items"] == []
    messages = _alert_messages(outage.service)
    assert [kind for kind, _ in messages] == ["scan_failures", "scan_failures_resolved"]
    assert recovered["scan_id"] in messages[1][1]
    assert alert["cause"] in messages[1][1]
    assert outage.cli("alerts", "list", "--json")["items"] == [resolved]


def test_a_new_streak_after_recovery_raises_a_new_alert(outage: Outage) -> None:
    outage.catalog_down()
    for _ in range(ESCALATION_AFTER):
        outage.full_scan()
    outage.catalog_up()
    assert outage.full_scan()["status"] == "succeeded"
    outage.catalog_down()
    for _ in range(ESCALATION_AFTER + 2):  # one alert per streak, however long it lasts
        outage.full_scan()
    alerts = outage.operator.get(f"{API}/alerts").json()["items"]
    assert [a["state"] for a in alerts] == ["firing", "resolved"]
    assert outage.metric("version_scan_consecutive_failures") == ESCALATION_AFTER + 2


def test_tenant_filtered_full_scans_are_not_fleet_scans(outage: Outage) -> None:
    outage.full_scan()
    outage.catalog_down()
    for _ in range(ESCALATION_AFTER):
        started = outage.operator.post(f"{API}/scan", json={"tenants": ["acme-retail"]})
        assert started.status_code == 202, started.text
        outage.service.run_pending()
        scan = outage.scan(started.json()["scan_id"])
        assert (scan["status"], scan["fleet"], scan["tenants"]) == ("failed", False, [ACME])  # key → uuid
    assert outage.metric("version_scan_consecutive_failures") == 0
    assert outage.metric("version_scan_coverage_ratio") == 1.0
    assert outage.operator.get(f"{API}/alerts").json()["items"] == []
    assert outage.cli("metrics", "--json")["coverage"]["status"] == "succeeded"


def test_a_scan_of_unknown_tenants_is_refused_naming_them(outage: Outage) -> None:
    outage.full_scan()
    before = len(outage.scans())
    refused = outage.operator.post(
        f"{API}/scan", json={"tenants": ["does-not-exist", "acme-retail", "nope-2"]}
    )
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["tenants"] == ["does-not-exist", "nope-2"]
    assert "does-not-exist" in problem["detail"]
    assert "nope-2" in problem["detail"]
    assert {e["field"] for e in problem["errors"]} == {"tenants"}
    assert len(outage.scans()) == before  # nothing queued


def test_a_tenant_that_vanished_from_the_source_counts_as_failed(outage: Outage) -> None:
    outage.full_scan()
    (outage.inputs.manifests / "acme-retail.json").unlink()  # still in the store, gone from the directory
    started = outage.operator.post(f"{API}/scan", json={"tenants": [ACME]})
    outage.service.run_pending()
    scan = outage.scan(started.json()["scan_id"])
    assert scan["status"] == "incomplete"
    assert (
        scan["coverage"]["tenants_total"],
        scan["coverage"]["tenants_scanned"],
        scan["coverage"]["rate"],
    ) == (
        1,
        0,
        0.0,
    )
    assert [e["tenant_uuid"] for e in scan["errors"]] == [ACME]
    assert "no such tenant" in scan["errors"][0]["error"]


# -- a tenant's own coverage -------------------------------------------------------------------------


def test_a_tenant_admin_sees_its_own_coverage_not_the_fleets(make_service: ServiceFactory) -> None:
    service = make_service(POWERX_WORKER="0")
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    with service.factory() as session:
        fleet_scan = session.get_one(ScanRow, scan_id)
        broken = next(e["tenant_uuid"] for e in fleet_scan.errors if e.get("tenant_uuid"))
        installed = session.scalar(
            select(func.count()).select_from(InstallationRow).where(InstallationRow.tenant_uuid == ACME)
        )
    assert (fleet_scan.tenants_total, fleet_scan.tenants_scanned) == (100, 99)
    with LiveServer(service, background=False) as live:
        with live.client(issue_token(service, Role.TENANT_ADMIN, ACME)) as admin:
            report = admin.get(f"{API}/scans/{scan_id}/report").json()
            assert report["coverage"] == {
                "tenants_total": 1,
                "tenants_scanned": 1,
                "tenants_stale": 0,
                "tenants_failed": 0,
                "installations": installed,
                "rate": 1.0,
            }
            assert {f["tenant_uuid"] for f in report["findings"]} == {ACME}
        with live.client() as browser:
            sign_in(browser, issue_token(service, Role.TENANT_ADMIN, ACME))
            page = browser.get("/console").text
            assert "This tenant's last scan" in page
            assert re.search(r'data-figure="tenant-outcome">\s*Scanned\s*<', page), page
            assert "of 100 tenants" not in page
        store_tenant(service, broken)  # known from an earlier good manifest: tokens name stored tenants
        with live.client(issue_token(service, Role.VIEWER, broken)) as viewer:
            report = viewer.get(f"{API}/scans/{scan_id}/report").json()
            assert report["coverage"]["tenants_failed"] == 1
            assert (report["coverage"]["tenants_total"], report["coverage"]["rate"]) == (1, 0.0)
            assert report["errors"]
            assert {e["tenant_uuid"] for e in report["errors"]} == {broken}
        with live.client(issue_token(service, Role.OPERATOR)) as operator:
            report = operator.get(f"{API}/scans/{scan_id}/report").json()
            assert (report["coverage"]["tenants_total"], report["coverage"]["tenants_scanned"]) == (100, 99)
        with live.client() as browser:
            sign_in(browser, issue_token(service, Role.OPERATOR))
            assert "99 of 100 tenants" in browser.get("/console").text


# -- the audit trail -----------------------------------------------------------------------------------


def _scan_events(service: GovernanceService) -> list[AuditEventRow]:
    with service.factory() as session:
        return list(
            session.execute(
                select(AuditEventRow).where(AuditEventRow.resource_type == "scan").order_by(AuditEventRow.seq)
            ).scalars()
        )


def test_every_scan_leaves_one_audit_event_with_its_figures_and_report_digest(outage: Outage) -> None:
    full = outage.full_scan()
    report = outage.operator.get(f"{API}/scans/{full['scan_id']}/report").json()
    [event] = _scan_events(outage.service)
    assert (event.operation, event.resource_id, event.outcome, event.event_id) == (
        "scan.completed",
        full["scan_id"],
        "success",
        f"scan:{full['scan_id']}",
    )
    meta = event.meta
    assert (meta["kind"], meta["trigger"], meta["fleet"], meta["status"]) == (
        "full",
        "api",
        True,
        "succeeded",
    )
    assert meta["policy_version"] == full["policy_version"] is not None
    assert meta["coverage"] == {k: full["coverage"][k] for k in meta["coverage"]}
    assert set(meta["coverage"]) >= {"tenants_scanned", "tenants_stale", "tenants_failed"}
    assert meta["by_risk"] == dict(Counter(f["risk_level"] for f in report["findings"]))
    assert meta["by_action"] == dict(Counter(f["action"] for f in report["findings"]))
    assert sum(meta["by_risk"].values()) == len(report["findings"]) > 0
    assert meta["report_sha256"] == served_report_sha256(report)

    run_scan(outage.service.runtime, full["scan_id"])  # the job delivered again: nothing new
    assert len(_scan_events(outage.service)) == 1

    outage.catalog_down()
    failed = outage.full_scan()
    outage.push(1)
    events = _scan_events(outage.service)
    assert [(e.operation, e.outcome) for e in events] == [
        ("scan.completed", "success"),
        ("scan.failed", "failure"),
        ("scan.completed", "success"),
    ]
    assert events[1].resource_id == failed["scan_id"]
    assert events[1].meta["failure"] == failed["failure"]
    assert "catalog-file" in events[1].meta["failure"]
    assert (events[1].meta["report_sha256"], events[1].meta["by_risk"]) == (None, {})
    assert events[2].meta["kind"] == "delta"
    assert events[2].meta["trigger"] == "push"
    with outage.service.factory() as session:
        assert verify(session).ok
    finished = [s["scan_id"] for s in outage.scans() if s["status"] != "queued"]  # retries wait their turn
    assert sorted(e.resource_id or "" for e in events) == sorted(finished)


def test_alert_rows_keep_their_state_on_both_backends(outage: Outage) -> None:
    outage.catalog_down()
    for _ in range(ESCALATION_AFTER):
        outage.full_scan()
    with outage.service.factory() as session:
        [row] = session.execute(select(AlertRow)).scalars().all()
    assert (row.state, row.resolved_at) == ("firing", None)
    assert row.cause
    assert row.cause.startswith("catalog-file")
    for who in (Role.SERVICE, Role.TENANT_ADMIN):
        with outage.live.client(
            issue_token(outage.service, who, ACME if who is Role.TENANT_ADMIN else None)
        ) as c:
            assert c.get(f"{API}/alerts").status_code == 403


def _kept_sums_match_the_rows(service: GovernanceService, scan_id: str) -> str:
    """The sums kept per tenant equal a from-scratch computation over the stored findings, and so
    does the report digest made from them; returns that digest."""
    with service.factory() as session:
        assert kept_tenant_findings(session, None) == tenant_findings_from_rows(session)
        scan = session.get_one(ScanRow, scan_id)
        kept, scratch = (
            stored_report_digest(session, scan),
            stored_report_digest(session, scan, from_scratch=True),
        )
    assert kept == scratch
    return kept.sha256


def test_the_report_digest_is_the_one_of_the_report_served_and_follows_every_change(outage: Outage) -> None:
    """The scan event's digest is computed from the sums each tenant keeps: it equals the digest of
    the report served over HTTP (also for a stale finding and for floats that msgspec and `json`
    print apart), equals a from-scratch computation, and changes when a finding or its state does."""
    full = outage.full_scan()
    first = _kept_sums_match_the_rows(outage.service, full["scan_id"])
    delta = outage.push(1)
    [*_, event] = _scan_events(outage.service)
    report = outage.operator.get(f"{API}/scans/{delta['scan_id']}/report").json()
    assert (
        event.meta["report_sha256"]
        == served_report_sha256(report)
        == _kept_sums_match_the_rows(outage.service, delta["scan_id"])
    )
    assert event.meta["by_risk"] == dict(Counter(f["risk_level"] for f in report["findings"]))
    finding = report["findings"][0]
    decided = outage.operator.post(
        f"{API}/decision",
        json={"recommendation_id": finding["recommendation_id"], "revision": 1, "decision": "upgrade"},
    )
    assert decided.status_code == 201, decided.text
    after_decision = outage.full_scan()
    [*_, event] = _scan_events(outage.service)
    report = outage.operator.get(f"{API}/scans/{after_decision['scan_id']}/report").json()
    assert event.meta["report_sha256"] == served_report_sha256(report)
    assert _kept_sums_match_the_rows(outage.service, after_decision["scan_id"]) == event.meta["report_sha256"]
    with outage.service.factory() as session:
        before = stored_report_digest(session, session.get_one(ScanRow, after_decision["scan_id"]))
    assert before.sha256 != first
    with transaction(outage.service.factory) as session:
        recommendation = session.execute(
            select(RecommendationRow).where(RecommendationRow.state != "resolved").limit(1)
        ).scalar_one()
        verdict = session.get_one(VerdictRow, recommendation.verdict)
        verdict.document = {**verdict.document, "odd_numbers": [1e-05, 1e16, 0.5, -0.0, 2.5e-300]}
        recommendation.tenant_facts = {
            **recommendation.tenant_facts,
            "manifest_stale": True,
            "manifest_as_of": "2026-01-01T00:00:00Z",
        }
    with outage.service.factory() as session:
        scan = session.get_one(ScanRow, after_decision["scan_id"])
        expected = stored_report(session, scan, tenant_uuid=None)
        scratch = stored_report_digest(session, scan, from_scratch=True)
        kept = stored_report_digest(session, scan)
    assert any(f["manifest_age_seconds"] and f.get("odd_numbers") for f in expected["findings"])
    # rows changed around the store: a from-scratch computation sees it, the kept sums do not
    assert scratch.sha256 == served_report_sha256(expected) != kept.sha256 == before.sha256
    assert scratch.by_action == dict(Counter(f["action"] for f in expected["findings"]))
    with transaction(outage.service.factory) as session:
        rebuild_tenant_findings(session)
    assert _kept_sums_match_the_rows(outage.service, after_decision["scan_id"]) == scratch.sha256

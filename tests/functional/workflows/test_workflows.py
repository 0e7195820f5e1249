"""`powerx version smoke | reconcile | metrics` against a real service and store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import verify
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.catalog.tables import AdvisoryRow, PluginRow, PushedAdvisoryRow, PushedReleaseRow
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionState
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.events.tables import EventRow
from powerx_governance.inventory.tables import TenantRow
from powerx_governance.jobs.model import JobStatus
from powerx_governance.jobs.tables import JobRow
from powerx_governance.notifications.tables import (
    ConsoleCardRow,
    NotificationDeliveryRow,
    NotificationEventRow,
)
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.workflows.figures import workflow_figures
from tests.conftest import LiveServer, ServiceFactory, issue_token, service_env, wait_until
from tests.functional.cli import POWERX, REPO, powerx_with


def _cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return powerx_with(service_env(database_url, tmp_path), "version", *args)


def _idle(service: GovernanceService) -> bool:
    """No job is due or running (the background worker has caught up)."""
    with service.factory() as session:
        busy = session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(
                JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
                JobRow.run_after <= service.clock(),
            )
        )
    return busy == 0


def _rows(session: Session, table: Any, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(getattr(row, c) for c in columns) for row in session.execute(select(table)).scalars())


def _fleet_state(service: GovernanceService) -> dict[str, Any]:
    """What a smoke run must leave as it found: every tenant's data, the catalog, the fleet figures."""
    wait_until(lambda: _idle(service), timeout=60)
    with service.factory() as session:
        figures = workflow_figures(session, service.clock())
        return {
            "tenants": _rows(session, TenantRow, "tenant_uuid", "manifest_hash"),
            "recommendations": _rows(
                session,
                RecommendationRow,
                "id",
                "tenant_uuid",
                "plugin_id",
                "revision",
                "state",
                "risk_level",
            ),
            "decisions": _rows(session, DecisionRow, "id", "tenant_uuid", "kind", "state"),
            "notification_events": _rows(session, NotificationEventRow, "id", "tenant_uuid", "kind"),
            "deliveries": _rows(session, NotificationDeliveryRow, "id", "tenant_uuid", "status"),
            "console_cards": _rows(session, ConsoleCardRow, "id", "tenant_uuid"),
            "events": _rows(session, EventRow, "id", "tenant_uuid", "type"),
            "plugins": _rows(session, PluginRow, "plugin_id", "content_hash"),
            "advisories": _rows(session, AdvisoryRow, "advisory_id", "content_hash"),
            "pushed": _rows(session, PushedAdvisoryRow, "advisory_id")
            + _rows(session, PushedReleaseRow, "version"),
            "coverage": {
                k: figures["coverage"][k] for k in ("status", "rate", "tenants_total", "tenants_scanned")
            },
            "figures": {
                k: figures[k] for k in ("accept_rate", "ignores", "sla_misses", "open_critical_patches")
            },
        }


def _smoke(live: LiveServer, operator: str, pusher: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(POWERX),
            *("version", "smoke", "--url", live.base_url),
            *("--operator-token", operator, "--service-token", pusher, "--timeout", "60"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )


def test_smoke_drives_a_running_service_end_to_end_and_leaves_the_real_tenants_as_they_were(
    make_service: ServiceFactory,
) -> None:
    service = make_service()
    operator, pusher = issue_token(service, Role.OPERATOR), issue_token(service, Role.SERVICE)
    with LiveServer(service) as live:
        with live.client(operator) as client:
            scan = client.post("/internal/version/governance/scan", json={}).json()["scan_id"]
            wait_until(
                lambda: client.get(f"/internal/version/governance/scans/{scan}").json()["status"] != "queued"
            )
        before = _fleet_state(service)
        run = _smoke(live, operator, pusher)
        after = _fleet_state(service)
        refused = _smoke(live, "pxg_wrong", pusher)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("PASS") == 8
    assert "PASS clean up" in run.stdout
    assert before["recommendations"]
    assert {k: v for k, v in after.items() if v != before[k]} == {}
    with service.factory() as session:
        marked = session.execute(
            select(AuditEventRow.operation, AuditEventRow.tenant_uuid, AuditEventRow.correlation_id).where(
                AuditEventRow.correlation_id.like("powerx-smoke-%")
            )
        ).all()
        assert verify(session).ok
    operations = {operation for operation, _, _ in marked}
    assert {"decision.upgrade", "push.removed", "smoke.cleaned"} <= operations
    assert {tenant for _, tenant, _ in marked if tenant} == {marked[0][2]}  # the synthetic tenant only
    assert refused.returncode == 1
    assert "FAIL scan" in refused.stdout
    assert "clean up" not in refused.stdout  # it made nothing to clean up


def test_reconcile_repairs_a_decision_without_audit_and_a_silent_critical(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    service = make_service(POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    with transaction(service.factory) as session:
        rec = (
            session.execute(select(RecommendationRow).where(RecommendationRow.state == "open"))
            .scalars()
            .first()
        )
        assert rec is not None
        session.add(
            DecisionRow(
                recommendation_id=rec.id,
                revision=rec.revision,
                tenant_uuid=rec.tenant_uuid,
                plugin_id=rec.plugin_id,
                kind="upgrade",
                from_version=rec.current_version,
                target_version=rec.target_version,
                actor="someone",
                created_at=service.clock(),
                state=DecisionState.ACTIVE.value,
                details={},
            )
        )
        rec.state = "decided"
        critical = (
            session.execute(
                select(RecommendationRow).where(
                    RecommendationRow.critical_patch.is_(True), RecommendationRow.state == "open"
                )
            )
            .scalars()
            .first()
        )
        assert critical is not None
        session.execute(
            delete(NotificationEventRow).where(NotificationEventRow.recommendation_id == critical.id)
        )
    dry = _cli(database_url, tmp_path, "reconcile", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "found: decision_without_audit" in dry.stdout
    assert f"found: critical_never_notified recommendation {critical.id}" in dry.stdout
    fixed = _cli(database_url, tmp_path, "reconcile")
    assert fixed.returncode == 1
    assert "repaired: decision_without_audit" in fixed.stdout
    again = _cli(database_url, tmp_path, "reconcile")
    assert again.returncode == 0, again.stdout
    with service.factory() as session:
        assert (
            session.execute(
                select(NotificationEventRow).where(NotificationEventRow.recommendation_id == critical.id)
            ).first()
            is not None
        )
        assert verify(session).ok


def test_metrics_reports_the_workflow_figures(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    service = make_service(POWERX_WORKER="0")
    service.request_scan(ScanKind.FULL, ScanTrigger.API)
    service.run_pending()
    run = _cli(database_url, tmp_path, "metrics", "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["coverage"]["tenants_total"] == 100
    assert figures["coverage"]["tenants_scanned"] == 99
    assert figures["open_critical_patches"] > 0
    assert set(figures) >= {"push_latency_ms", "accept_rate", "ignores", "sla_misses"}

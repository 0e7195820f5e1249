"""`powerx version smoke | reconcile | metrics` against a real service and store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sqlalchemy import delete, select

from powerx_governance.audit.service import verify
from powerx_governance.auth.tables import Role
from powerx_governance.db.session import transaction
from powerx_governance.decisions.tables import DecisionRow, DecisionState
from powerx_governance.notifications.tables import NotificationEventRow
from powerx_governance.recommendations.tables import RecommendationRow
from powerx_governance.scans.tables import ScanKind, ScanTrigger
from tests.conftest import LiveServer, ServiceFactory, issue_token, service_env
from tests.functional.cli import POWERX, REPO, powerx_with


def _cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return powerx_with(service_env(database_url, tmp_path), "version", *args)


def test_smoke_drives_a_running_service_end_to_end(make_service: ServiceFactory) -> None:
    service = make_service()
    operator, pusher = issue_token(service, Role.OPERATOR), issue_token(service, Role.SERVICE)
    with LiveServer(service) as live:
        run = subprocess.run(
            [
                str(POWERX),
                "version",
                "smoke",
                "--url",
                live.base_url,
                "--operator-token",
                operator,
                "--service-token",
                pusher,
                "--timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=REPO,
        )
        refused = subprocess.run(
            [
                str(POWERX),
                "version",
                "smoke",
                "--url",
                live.base_url,
                "--operator-token",
                "pxg_wrong",
                "--service-token",
                pusher,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=REPO,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("PASS") == 6
    assert refused.returncode == 1
    assert "FAIL scan" in refused.stdout


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

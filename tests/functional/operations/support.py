"""Shared steps of the operations tests: a scanned example fleet, recommendations, audit rows."""

from __future__ import annotations

from typing import Any, Final

import httpx
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.jobs.tables import JobRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.runner import SCAN_TASK
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock, ServiceFactory

BASE: Final = "/internal/version/governance"
SANDBOX: Final = "sandbox-tenant-a"
CRM: Final = "com.powerx.plugins.crm"


def scanned(
    make_service: ServiceFactory, clock: FakeClock | None = None, *, deliver: bool = True, **env: str
) -> GovernanceService:
    """A service (no background threads) that has scanned the example fleet once."""
    service = make_service(clock=clock or FakeClock(), POWERX_WORKER="0", **env)
    service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
    service.run_pending(tasks=None if deliver else frozenset({SCAN_TASK}))
    return service


def recommendation(client: httpx.Client, tenant: str, plugin: str) -> dict[str, Any]:
    page = client.get(f"{BASE}/recommendations", params={"tenant": tenant, "plugin": plugin}).json()
    [item] = page["items"]
    return item  # type: ignore[no-any-return]


def audit(service: GovernanceService, operation: str) -> list[AuditEventRow]:
    with service.factory() as session:
        stmt = select(AuditEventRow).where(AuditEventRow.operation == operation).order_by(AuditEventRow.seq)
        return list(session.execute(stmt).scalars())


def queued_jobs(service: GovernanceService) -> dict[str, int]:
    """Queued job count per task."""
    found: dict[str, int] = {}
    with service.factory() as session:
        for task in session.execute(select(JobRow.task).where(JobRow.status == "queued")).scalars():
            found[task] = found.get(task, 0) + 1
    return found

"""A small governed fleet for decision and breach tests: real store, HTTP API, subscriber, notifications.

The fleet is a copy of a few example tenants (`Inputs`) that the service reads as its file
sources, so a test can change a manifest the way the tenant directory would. Notifications go
to a console recipient that takes every event at once (so every finding and breach is written),
and a real webhook subscriber on loopback receives the CloudEvents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from sqlalchemy import select

from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.domain import Severity
from powerx_governance.events.model import EventType
from powerx_governance.events.tables import EventRow
from powerx_governance.notifications.tables import NotificationEventRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import RULES, FakeClock, LiveServer, ServiceFactory, issue_token
from tests.functional.events.support import Subscriber, subscribe, subscriber
from tests.functional.notifications.support import routes_file
from tests.functional.service.support import Inputs

BASE: Final = "/internal/version/governance"
SANDBOX: Final = "sandbox-tenant-a"
KEYSTONE: Final = "91281d0d-f60b-5a75-a7b7-55cd2bedc116"  # keystone-motors: a critical HR patch past SLA
CRM: Final = "com.powerx.plugins.crm"
HR: Final = "com.powerx.plugins.hr"
TENANTS: Final = ("sandbox-tenant-a", "keystone-motors", "jade-river-bank", "meridian-health")
SHORTER_SLA: Final = RULES.read_text(encoding="utf-8").replace(
    "    sla_hours: 24\n    notification: {route: im://wecom/security-oncall",
    "    sla_hours: 6\n    notification: {route: im://wecom/security-oncall",
    1,
)


@dataclass
class Governed:
    """The service, its clock and data, an operator and a pusher client, and the subscriber."""

    service: GovernanceService
    clock: FakeClock
    inputs: Inputs
    ops: httpx.Client
    pusher: httpx.Client
    sink: Subscriber

    def settle(self, hours: float = 1.0) -> None:
        """Run what is queued, let time pass, tick the scheduler (scan, SLA checks), run again."""
        self.service.run_pending(limit=100_000)
        self.clock.advance(hours * 3600)
        self.service.schedule_tick()
        self.service.run_pending(limit=100_000)

    def scan(self) -> None:
        self.service.request_scan(ScanKind.FULL, ScanTrigger.API, requested_by="test")
        self.service.run_pending(limit=100_000)

    def recommendation(self, tenant: str, plugin: str) -> dict[str, Any]:
        page = self.ops.get(f"{BASE}/recommendations", params={"tenant": tenant, "plugin": plugin}).json()
        [item] = page["items"]
        return item  # type: ignore[no-any-return]

    def decisions(self, recommendation_id: int) -> list[dict[str, Any]]:
        answer = self.ops.get(f"{BASE}/decisions", params={"recommendation_id": recommendation_id})
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def set_version(self, tenant_file: str, plugin_id: str, version: str) -> None:
        """The tenant now runs `version` of `plugin_id` (its directory entry; the next scan reads it)."""
        manifest = self.inputs.manifest(tenant_file)
        for plugin in manifest["plugins"]:
            if plugin["plugin_id"] == plugin_id:
                plugin["version"] = version
        self.inputs.put_manifest(tenant_file, manifest)

    def push_advisory(self, advisory: dict[str, Any]) -> None:
        answer = self.pusher.post(f"{BASE}/webhooks/advisories", json=advisory)
        assert answer.status_code == 202, answer.text


@contextmanager
def governed(make_service: ServiceFactory, tmp_path: Path) -> Iterator[Governed]:
    inputs = Inputs(tmp_path / "inputs", tenants=TENANTS)
    clock = FakeClock()
    service = make_service(
        clock=clock,
        POWERX_WORKER="0",
        **inputs.sources,
    )
    routes = routes_file(
        tmp_path,
        recipients={
            "console": {"channel": "console", "immediate": [s.value for s in Severity], "digest": "none"}
        },
        routes={"default": ["console"]},
    )
    service = service.reconfigured({"POWERX_NOTIFICATION_ROUTES": str(routes)})
    with ExitStack() as stack:
        sink = stack.enter_context(subscriber())
        subscribe(service, sink.url)
        live = stack.enter_context(LiveServer(service, background=False))
        ops = stack.enter_context(live.client(issue_token(service, Role.OPERATOR)))
        pusher = stack.enter_context(live.client(issue_token(service, Role.SERVICE)))
        fleet = Governed(service, clock, inputs, ops, pusher, sink)
        fleet.scan()
        yield fleet


def high_advisory(advisory_id: str, plugin_id: str, introduced: str, fixed: str) -> dict[str, Any]:
    """An OSV record (CVSS 7.5, high) affecting `plugin_id` from `introduced` until `fixed`."""
    return {
        "id": advisory_id,
        "summary": f"{advisory_id}: information disclosure",
        "published": "2026-11-30T00:00:00Z",
        "modified": "2026-11-30T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": plugin_id},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": introduced}, {"fixed": fixed}]}],
            }
        ],
    }


# -- what was recorded ------------------------------------------------------------------------------


def audit(service: GovernanceService, operation: str) -> list[AuditEventRow]:
    with service.factory() as session:
        stmt = select(AuditEventRow).where(AuditEventRow.operation == operation).order_by(AuditEventRow.seq)
        return list(session.execute(stmt).scalars())


def notifications(service: GovernanceService, kind: str) -> list[NotificationEventRow]:
    with service.factory() as session:
        stmt = select(NotificationEventRow).where(NotificationEventRow.kind == kind)
        return list(session.execute(stmt).scalars())


def cloudevents(service: GovernanceService, kind: EventType) -> list[EventRow]:
    with service.factory() as session:
        stmt = select(EventRow).where(EventRow.type == kind.value).order_by(EventRow.seq)
        return list(session.execute(stmt).scalars())


def breach_identity(facts: dict[str, Any], recommendation_id: object) -> tuple[str, str, str]:
    """(recommendation, kind, deadline): a missed schedule's deadline is its decision."""
    kind = str(facts.get("kind") or facts.get("breach"))
    when = facts.get("sla_deadline") if kind == "critical_past_deadline" else facts.get("decision_id")
    return str(recommendation_id), kind, str(when)


def repeated_breaches(service: GovernanceService, sink: Subscriber) -> dict[str, list[tuple[str, str, str]]]:
    """Every (recommendation, kind, deadline) recorded more than once, per record (empty lists: none)."""
    recorded = {
        "audit": [breach_identity(e.meta, e.resource_id) for e in audit(service, "sla.breach")],
        "notification": [
            breach_identity(n.data, n.recommendation_id) for n in notifications(service, "sla_breach")
        ],
        "cloudevent": [
            breach_identity(e.data, e.data["recommendation_id"])
            for e in cloudevents(service, EventType.SLA_BREACH)
        ],
        "delivered": [
            breach_identity(e["data"], e["data"]["recommendation_id"])
            for e in sink.events()
            if e["type"] == EventType.SLA_BREACH.value
        ],
    }
    return {name: [k for k, n in Counter(keys).items() if n > 1] for name, keys in recorded.items()}


def repeated_findings(service: GovernanceService) -> list[tuple[object, ...]]:
    """Finding notifications saying the same thing twice: (recommendation, change, risk, action, target)."""
    said = Counter(
        (n.recommendation_id, n.change, n.risk_level, n.data.get("action"), n.data.get("target_version"))
        for n in notifications(service, "finding")
        if "decision_id" not in n.data  # a decision's end is announced once per decision
    )
    return [k for k, n in said.items() if n > 1]

"""Helpers for notification tests: routes files, installing notifications, scans, a worker drain."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml
from sqlalchemy import func, select

from powerx_governance.db.session import transaction
from powerx_governance.notifications import jobs
from powerx_governance.notifications.model import DeliveryStatus
from powerx_governance.notifications.tables import NotificationDeliveryRow
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.service import GovernanceService
from tests.conftest import FakeClock

CONSOLE_URL: Final = "https://console.powerx.test"


def routes_file(
    directory: Path,
    recipients: Mapping[str, Any],
    routes: Mapping[str, Any],
    *,
    allow_hosts: tuple[str, ...] = ("127.0.0.1",),
    **delivery: Any,
) -> Path:
    """Write a routes file whose webhooks may reach the loopback sink (and only it)."""
    document = {
        "schema": "powerx.notification-routes/v1",
        "delivery": {
            "max_attempts": 4,
            "backoff_base": "1s",
            "backoff_cap": "10s",
            "connect_timeout": "2s",
            "read_timeout": "5s",
            **delivery,
        },
        "webhooks": {"allow_hosts": list(allow_hosts), "require_https": False},
        "recipients": dict(recipients),
        "routes": dict(routes),
    }
    path = directory / "notification_routes.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def notification_env(
    routes: Path | None, *, smtp_port: int | None = None, notify_url: str | None = None
) -> dict[str, str]:
    env = {"POWERX_CONSOLE_URL": CONSOLE_URL}
    if routes is not None:
        env["POWERX_NOTIFICATION_ROUTES"] = str(routes)
    if smtp_port is not None:
        env |= {
            "POWERX_SMTP_HOST": "127.0.0.1",
            "POWERX_SMTP_PORT": str(smtp_port),
            "POWERX_SMTP_FROM": "governance@powerx.test",
        }
    if notify_url is not None:
        env["POWERX_NOTIFY_URL"] = notify_url
    return env


def install(service: GovernanceService, env: Mapping[str, str]) -> GovernanceService:
    """The service restarted with this notification configuration (same store, same clock)."""
    return service.reconfigured(env)


def digest_tick(service: GovernanceService) -> None:
    """The notifications' periodic follow-up alone: queue a digest flush when one is due."""
    ticks = [p for p in service.installed.periodic if isinstance(getattr(p, "__self__", None), jobs.Notifier)]
    assert len(ticks) == 1, ticks
    ticks[0](service)


def scan(service: GovernanceService, *tenants: str) -> None:
    """A full scan (of these tenants only, when given), run by the worker on this thread."""
    service.request_scan(ScanKind.FULL, ScanTrigger.API, tenants=tenants)
    service.run_pending(limit=1)


def pending(service: GovernanceService) -> list[datetime]:
    """When each pending delivery's next attempt is due."""
    with transaction(service.factory) as session:
        rows = session.execute(
            select(NotificationDeliveryRow.next_attempt_at).where(
                NotificationDeliveryRow.status == DeliveryStatus.PENDING.value
            )
        ).scalars()
        return [r for r in rows if r is not None]


def drain(service: GovernanceService, clock: FakeClock, *, rounds: int = 50) -> int:
    """Run jobs, moving the clock to each next retry, until no delivery is pending; returns job runs."""
    ran = 0
    for _ in range(rounds):
        ran += service.run_pending(limit=100_000)
        due = pending(service)
        if not due:
            return ran
        wait = (min(due) - clock()).total_seconds()
        clock.advance(max(wait, 0.0) + 0.001)
    raise AssertionError(f"deliveries still pending after {rounds} rounds")


def status_counts(service: GovernanceService) -> dict[str, int]:
    with transaction(service.factory) as session:
        rows = session.execute(
            select(NotificationDeliveryRow.status, func.count()).group_by(NotificationDeliveryRow.status)
        ).all()
        return dict(rows)

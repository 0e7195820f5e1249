"""The scan-failure alert (A-2): raised with its cause when fleet full scans keep failing, resolved
(with a recovery message) by the next fleet full scan that succeeds."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.notifications.service import NotificationRuntime, notify_alert
from powerx_governance.policy.rules import GovernanceRules
from powerx_governance.scans.model import AlertState
from powerx_governance.scans.tables import AlertRow, ScanRow

SCAN_FAILURES: Final = "scan_failures"
SCAN_RECOVERED: Final = "scan_failures_resolved"
_ERRORS_NAMED: Final = 3


def failure_cause(row: ScanRow) -> str:
    """What made this scan unsuccessful, in one line: its failure, or its coverage and first errors."""
    if row.failure:
        return row.failure
    rate = row.coverage_rate if row.coverage_rate is not None else 0.0
    cause = f"{row.tenants_scanned} of {row.tenants_total} tenants scanned ({rate:.0%})"
    named = [f"{e.get('source')}: {e.get('error')}" for e in row.errors[:_ERRORS_NAMED]]
    if named:
        more = len(row.errors) - len(named)
        cause += "; " + "; ".join(named) + (f" (and {more} more errors)" if more > 0 else "")
    return cause[:2000]


def firing(session: Session, kind: str = SCAN_FAILURES) -> list[AlertRow]:
    stmt = select(AlertRow).where(AlertRow.kind == kind, AlertRow.state == AlertState.FIRING.value)
    return list(session.execute(stmt.order_by(AlertRow.id)).scalars())


def raise_scan_alert(
    session: Session,
    notifications: NotificationRuntime,
    row: ScanRow,
    streak: int,
    rules: GovernanceRules,
    now: datetime,
) -> bool:
    """Raise the alert for a failing streak once (none while one is firing); True when raised."""
    if firing(session):
        return False
    cause = failure_cause(row)
    message = (
        f"{streak} consecutive full scans failed or finished below "
        f"{rules.defaults.min_coverage:.0%} coverage: {cause}"
    )[:2000]
    data = {"last_scan": row.scan_id, "failure": row.failure, "cause": cause, "streak": streak}
    alert = AlertRow(
        kind=SCAN_FAILURES,
        channel=rules.defaults.alert_channel,
        message=message,
        data=data,
        raised_at=now,
        state=AlertState.FIRING.value,
        cause=cause,
    )
    session.add(alert)
    session.flush()
    notify_alert(
        session,
        notifications,
        SCAN_FAILURES,
        message,
        alert.channel,
        now,
        key=f"{SCAN_FAILURES}:{alert.id}",
        data=data,
    )
    return True


def resolve_scan_alerts(
    session: Session, notifications: NotificationRuntime, row: ScanRow, rules: GovernanceRules, now: datetime
) -> int:
    """A fleet full scan succeeded: resolve the firing scan-failure alerts and say so; how many."""
    alerts = firing(session)
    for alert in alerts:
        alert.state, alert.resolved_at = AlertState.RESOLVED.value, now
        rate = row.coverage_rate if row.coverage_rate is not None else 0.0
        message = (
            f"full scans recovered: scan {row.scan_id} succeeded with {rate:.0%} coverage "
            f"({row.tenants_scanned} of {row.tenants_total} tenants); the alert raised at "
            f"{alert.raised_at.isoformat()} is resolved (cause was: {alert.cause})"
        )[:2000]
        # same severity and route as the alert: whoever was paged hears that it is over
        notify_alert(
            session,
            notifications,
            SCAN_RECOVERED,
            message,
            alert.channel or rules.defaults.alert_channel,
            now,
            key=f"{SCAN_RECOVERED}:{alert.id}",
            data={"alert_id": alert.id, "recovered_by": row.scan_id, "cause": alert.cause},
        )
    return len(alerts)

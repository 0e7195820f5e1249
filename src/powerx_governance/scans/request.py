"""Requesting a scan: a queued scan row and its job, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from powerx_governance.jobs import queue
from powerx_governance.scans.model import ScanKind, ScanStatus, ScanTrigger
from powerx_governance.scans.tables import ScanRow

SCAN_TASK = "scan"
SCAN_PRIORITY = 10  # scans (and a sharded scan's shards and finish) go before the deliveries they cause


def request_scan(
    session: Session,
    *,
    kind: ScanKind,
    trigger: ScanTrigger,
    now: datetime,
    tenants: Sequence[str] = (),
    requested_by: str | None = None,
    schedule_slot: str | None = None,
    retry_of: str | None = None,
    attempt: int = 1,
    run_after: datetime | None = None,
) -> str:
    """Record a queued scan and its job in the caller's transaction; returns the scan id."""
    scan_id = str(uuid.uuid4())
    session.add(
        ScanRow(
            scan_id=scan_id,
            kind=kind.value,
            fleet=kind is ScanKind.FULL and not tenants,
            trigger=trigger.value,
            status=ScanStatus.QUEUED.value,
            requested_by=requested_by,
            tenant_filter=list(tenants),
            schedule_slot=schedule_slot,
            retry_of=retry_of,
            attempt=attempt,
            requested_at=now,
            errors=[],
            timings={},
        )
    )
    session.flush()
    queue.enqueue(
        session,
        SCAN_TASK,
        {"scan_id": scan_id},
        key=f"scan:{scan_id}",
        now=now,
        run_after=run_after,
        max_attempts=2,
        priority=SCAN_PRIORITY,
    )
    return scan_id

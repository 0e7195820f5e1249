"""Stored scans: trigger, timings, coverage and errors of each run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, false
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base
from powerx_governance.scans.model import AlertState


class ScanRow(Base):
    __tablename__ = "scans"
    __table_args__ = (Index("ix_scans_fleet_finished_at", "fleet", "finished_at"),)

    scan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    # a full scan of the whole fleet (no tenant filter): the only kind the fleet signals follow
    fleet: Mapped[bool] = mapped_column(default=False, server_default=false())
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str | None] = mapped_column(String(128))
    tenant_filter: Mapped[list[Any]]
    schedule_slot: Mapped[str | None] = mapped_column(String(32), unique=True)  # one scheduled scan per slot
    retry_of: Mapped[str | None] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(default=1)
    requested_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    tenants_total: Mapped[int] = mapped_column(default=0)
    tenants_scanned: Mapped[int] = mapped_column(default=0)
    tenants_failed: Mapped[int] = mapped_column(default=0)
    tenants_stale: Mapped[int] = mapped_column(default=0)  # scanned from their last good manifest
    installations: Mapped[int] = mapped_column(default=0)
    findings: Mapped[int] = mapped_column(default=0)
    changes: Mapped[int] = mapped_column(default=0)
    coverage_rate: Mapped[float | None]
    errors: Mapped[list[Any]]
    warnings: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")  # repairs of input
    timings: Mapped[dict[str, Any]]
    failure: Mapped[str | None] = mapped_column(String(2000))
    policy_version: Mapped[int | None]
    # tenants this scan did not read afresh: tenant uuid (or the name asked for) -> "stale" | "failed"
    unscanned: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    def coverage(self) -> dict[str, Any]:
        """The scan's coverage as reports, the API and the audit trail show it."""
        return {
            "tenants_total": self.tenants_total,
            "tenants_scanned": self.tenants_scanned,
            "tenants_stale": self.tenants_stale,
            "tenants_failed": self.tenants_failed,
            "installations": self.installations,
            "rate": self.coverage_rate,
        }


class AlertRow(Base):
    """Operational alerts raised by the service (e.g. three consecutive failed scans)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(String(2000))
    data: Mapped[dict[str, Any]]
    raised_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(
        String(16), index=True, default=AlertState.FIRING.value, server_default=AlertState.FIRING.value
    )
    resolved_at: Mapped[datetime | None]
    cause: Mapped[str | None] = mapped_column(String(2000))  # what failed, e.g. the source and its error

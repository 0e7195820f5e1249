"""A sharded scan's plan and its shards: what each shard covers, its state and its counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, text
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base
from powerx_governance.scans.model import ShardStatus


class ScanPlanRow(Base):
    """Written by the coordinator in the transaction that queues the shard jobs."""

    __tablename__ = "scan_plans"

    scan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shards: Mapped[int]
    shards_finished: Mapped[int] = mapped_column(default=0)  # the last one to finish queues the finish job
    evaluated_at: Mapped[datetime]  # every shard evaluates at this time
    dirty_plugins: Mapped[list[Any]]  # marked clean by the finish job when no shard gave up
    errors: Mapped[list[Any]]  # catalog intake problems and loose manifest problems (report shape)
    warnings: Mapped[list[Any]]
    security_data_problems: Mapped[int] = mapped_column(default=0)
    timings: Mapped[dict[str, Any]]


class ScanShardRow(Base):
    __tablename__ = "scan_shards"

    scan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shard: Mapped[int] = mapped_column(primary_key=True)
    tenants: Mapped[list[Any]]  # evaluated whole
    # a delta shard's tenants of which only the changed plugins' installations are evaluated
    partial: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))
    # what the coordinator's intake found wrong per tenant: {"problem": {...} | None, "entries": [...]}
    problems: Mapped[dict[str, Any]]
    loose: Mapped[list[Any]]  # problems naming no tenant (shard 0 carries them)
    status: Mapped[str] = mapped_column(String(16), default=ShardStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    seconds: Mapped[float | None]
    tenants_total: Mapped[int] = mapped_column(default=0)
    tenants_scanned: Mapped[int] = mapped_column(default=0)
    tenants_stale: Mapped[int] = mapped_column(default=0)
    installations: Mapped[int] = mapped_column(default=0)
    findings: Mapped[int] = mapped_column(default=0)
    changes: Mapped[dict[str, Any]]  # change kind -> count
    errors: Mapped[list[Any]]
    warnings: Mapped[list[Any]]
    unscanned: Mapped[dict[str, Any]]
    failure: Mapped[str | None] = mapped_column(String(2000))

    def progress(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "status": self.status,
            "tenants": len(self.tenants) + len(self.partial),
            "attempts": self.attempts,
            "worker": self.worker,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
            "tenants_scanned": self.tenants_scanned,
            "failure": self.failure,
        }

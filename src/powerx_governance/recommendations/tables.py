"""One current recommendation per (tenant, plugin), its revision history, and shared verdicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class VerdictRow(Base):
    """The tenant-independent part of a finding, stored once per distinct verdict (content-addressed)."""

    __tablename__ = "verdicts"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class RecommendationRow(Base):
    __tablename__ = "recommendations"
    __table_args__ = (
        UniqueConstraint("tenant_uuid", "plugin_id", name="uq_recommendations_tenant_plugin"),
        Index("ix_recommendations_tenant_priority", "tenant_uuid", "priority", "id"),
        Index("ix_recommendations_state_priority", "state", "priority", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tenant_uuid: Mapped[str] = mapped_column(String(128))
    plugin_id: Mapped[str] = mapped_column(String(256), index=True)
    revision: Mapped[int]
    state: Mapped[str] = mapped_column(String(16))
    fingerprint: Mapped[str] = mapped_column(String(64))  # what the admin saw: verdict + tenant facts
    verdict: Mapped[str] = mapped_column(String(64), ForeignKey("verdicts.fingerprint"))
    current_version: Mapped[str] = mapped_column(String(64))
    target_version: Mapped[str | None] = mapped_column(String(64))
    latest_version: Mapped[str | None] = mapped_column(String(64))
    risk_level: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))
    critical_patch: Mapped[bool]
    sla_deadline: Mapped[datetime | None]
    tenant_facts: Mapped[dict[str, Any]]  # tenant_key, core_version, channel, compatibility notes
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    scan_id: Mapped[str | None] = mapped_column(String(36))
    policy_version: Mapped[int | None]  # the governance rules version that produced it
    report_digest: Mapped[str | None] = mapped_column(String(64))  # its finding's digest (digests.py)


class TenantFindingsRow(Base):
    """A tenant's open recommendations summed up, kept by every write (recommendations/digests.py)."""

    __tablename__ = "tenant_findings"

    tenant_uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    findings: Mapped[int]
    fingerprints: Mapped[str] = mapped_column(String(64))
    report_sum: Mapped[bytes] = mapped_column(LargeBinary)
    by_risk: Mapped[dict[str, Any]]
    by_action: Mapped[dict[str, Any]]


class RecommendationRevisionRow(Base):
    __tablename__ = "recommendation_revisions"

    recommendation_id: Mapped[int] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(primary_key=True)
    change: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(64))
    target_version: Mapped[str | None] = mapped_column(String(64))
    risk_level: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))
    scan_id: Mapped[str | None] = mapped_column(String(36))
    policy_version: Mapped[int | None]
    created_at: Mapped[datetime]

"""Stored groups (API-made), explicit baseline revisions, and the last evaluation: members,
baselines and drift items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class TenantGroupRow(Base):
    """A group an operator created through the API or the CLI (file groups are not stored)."""

    __tablename__ = "tenant_groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256))
    route: Mapped[str | None] = mapped_column(String(256))
    selector: Mapped[dict[str, Any]]  # {"tags": [...], "plans": [...]}
    tenants: Mapped[list[Any]]  # explicit members, by uuid or key
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]


class BaselineRevisionRow(Base):
    """One revision of a group's explicit baseline for a plugin; `spec` None returns it to derived."""

    __tablename__ = "baseline_revisions"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plugin_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    revision: Mapped[int] = mapped_column(primary_key=True)
    spec: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(String(2000))
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime]


class GroupMemberRow(Base):
    """Membership as of the group's last evaluation."""

    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_tenant", "tenant_uuid"),)

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_uuid: Mapped[str] = mapped_column(String(128), primary_key=True)


class GroupBaselineRow(Base):
    """A group's baseline for a plugin as last evaluated (derived or explicit; set or conflict)."""

    __tablename__ = "group_baselines"

    group_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plugin_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    spec: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(String(2000))
    conflict: Mapped[dict[str, Any]]  # subgroups and splits when status is conflict
    revision: Mapped[int | None]
    evaluated_at: Mapped[datetime]


class DriftRow(Base):
    """One member's drift from its group's baseline; resolved items stay (and may reopen)."""

    __tablename__ = "baseline_drift"
    __table_args__ = (
        UniqueConstraint("group_id", "tenant_uuid", "plugin_id", name="uq_baseline_drift_item"),
        Index("ix_baseline_drift_tenant", "tenant_uuid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(String(64))
    tenant_uuid: Mapped[str] = mapped_column(String(128))
    plugin_id: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    installed: Mapped[str | None] = mapped_column(String(64))
    baseline: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(String(2000))
    episode: Mapped[int]  # how many times it opened: each opening is announced once
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]

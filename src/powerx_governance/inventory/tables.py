"""Stored inventory: tenants and the plugins each runs (the last good manifest)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class TenantRow(Base):
    __tablename__ = "tenants"

    tenant_uuid: Mapped[str] = mapped_column(String(128), primary_key=True)
    tenant_key: Mapped[str | None] = mapped_column(String(128), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    plan: Mapped[str | None] = mapped_column(String(16))
    tags: Mapped[list[Any]]
    core_version: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(64))
    manifest_hash: Mapped[str] = mapped_column(String(64))
    scanned_at: Mapped[datetime | None]  # the manifest's own scanned_at
    fetched_at: Mapped[datetime]  # when this service last read a good manifest
    dirty: Mapped[bool] = mapped_column(default=True, index=True)  # changed since the last evaluation


class InstallationRow(Base):
    __tablename__ = "installations"
    __table_args__ = (Index("ix_installations_plugin_version", "plugin_id", "version"),)

    tenant_uuid: Mapped[str] = mapped_column(
        String(128), ForeignKey("tenants.tenant_uuid", ondelete="CASCADE"), primary_key=True
    )
    plugin_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    auto_update: Mapped[bool]
    pinned: Mapped[bool]

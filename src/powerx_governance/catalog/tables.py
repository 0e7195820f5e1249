"""Stored catalog: plugins with their releases, OSV advisories, the compatibility matrix."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class PluginRow(Base):
    """A plugin record with its releases, kept as the validated catalog document."""

    __tablename__ = "plugins"

    plugin_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    dirty: Mapped[bool] = mapped_column(default=True, index=True)  # installations need re-evaluation


class AdvisoryRow(Base):
    __tablename__ = "advisories"

    advisory_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    modified: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class CatalogDocumentRow(Base):
    """Whole documents that change together (the compatibility matrix), by name."""

    __tablename__ = "catalog_documents"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]

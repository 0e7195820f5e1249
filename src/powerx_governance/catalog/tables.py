"""Stored catalog: plugins with their releases, OSV advisories, the compatibility matrix.

Two sources feed it: the catalog source (file or catalog service, read by every full scan)
and the push source (vendor CI/CD webhooks). `plugins` and `advisories` hold what is in force,
the two merged (docs/formats.md, "Pushed records"), with the catalog source's own record kept
beside it; `pushed_releases` and `pushed_advisories` hold the push source, record by record,
until a record is withdrawn or an operator removes it.
"""

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
    catalog_document: Mapped[dict[str, Any] | None]  # the catalog source's record; None: pushes only
    catalog_hash: Mapped[str | None] = mapped_column(String(64))


class AdvisoryRow(Base):
    __tablename__ = "advisories"

    advisory_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    modified: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    origin: Mapped[str] = mapped_column(String(16), default="catalog")  # whose record is in force
    catalog_document: Mapped[dict[str, Any] | None]  # the catalog source's record; None: pushes only
    catalog_hash: Mapped[str | None] = mapped_column(String(64))


class PushedReleaseRow(Base):
    """A release as the push source holds it (the latest push of this plugin version)."""

    __tablename__ = "pushed_releases"

    plugin_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]]
    pushed_at: Mapped[datetime]
    pushed_by: Mapped[str] = mapped_column(String(256))


class PushedAdvisoryRow(Base):
    """An OSV record as the push source holds it (the latest push of this id)."""

    __tablename__ = "pushed_advisories"

    advisory_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    document: Mapped[dict[str, Any]]
    modified: Mapped[datetime | None]
    withdrawn: Mapped[datetime | None]
    pushed_at: Mapped[datetime]
    pushed_by: Mapped[str] = mapped_column(String(256))


class CatalogDocumentRow(Base):
    """Whole documents that change together (the compatibility matrix), by name."""

    __tablename__ = "catalog_documents"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]

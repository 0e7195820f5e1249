"""Operator overrides of feature flags (a flag without a row follows the environment/settings file)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class FeatureFlagRow(Base):
    __tablename__ = "feature_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(String(1000))
    changed_by: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[datetime]

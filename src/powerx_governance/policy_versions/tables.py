"""Every governance rules document the service has used, numbered, and which one is current."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from powerx_governance.db.base import Base


class PolicyVersionRow(Base):
    __tablename__ = "policy_versions"

    number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of `content`
    content: Mapped[str] = mapped_column(Text)  # the YAML document as given
    source: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(256))
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime]


class PolicyStateRow(Base):
    """One row: the version in force, and the hash of the rules file as last read."""

    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    current_version: Mapped[int]
    file_hash: Mapped[str | None] = mapped_column(String(64))  # a file change is noticed against it
    changed_by: Mapped[str] = mapped_column(String(256))
    changed_at: Mapped[datetime]

"""Time as PowerX services write it."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, the form every PowerX service writes."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_now() -> datetime:
    """The current time, zone-aware UTC (the default clock; the engine never reads it)."""
    return datetime.now(UTC)

"""Bounds on numbers and times at the edge: what the store can hold, checked before any query.

Ids and version numbers are 32-bit integers on PostgreSQL; sequence numbers are 64-bit. A time
is stored in UTC, so an aware time whose UTC equivalent falls outside years 1-9999
(`9999-12-31T23:59:59-14:00`) is refused here rather than overflowing later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field

from powerx_governance.db.rows import MAX_ID  # integer columns on PostgreSQL

MAX_SEQ: Final = 2**63 - 1  # bigint columns
_MAX_ID_DIGITS: Final = len(str(MAX_ID))


def _fits_utc(value: datetime) -> datetime:
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range once converted to UTC (years 1-9999)") from exc
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Instant = Annotated[AwareDatetime, AfterValidator(_fits_utc)]


def parse_id(text: str | None) -> int | None:
    """An id typed by a person or taken from a path; None unless plain ASCII digits within range."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > _MAX_ID_DIGITS:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def to_utc(value: datetime) -> datetime | None:
    """`value` in UTC, or None when that is out of range."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None

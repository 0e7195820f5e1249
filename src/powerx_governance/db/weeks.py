"""Weekly buckets computed in SQL over a window of calendar weeks ending now (trend charts).

Weeks are calendar weeks, Monday 00:00 UTC to the next Monday: week `w` of a window of `weeks`
weeks is `[start + w weeks, start + (w + 1) weeks)`, where `start` is the Monday `weeks - 1` weeks
before the current week's Monday: week 0 is the oldest, `weeks - 1` is the current week (to now).
A time is always in the week its date says (Friday 5 December is in the week of Monday 1 December).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Float, Integer, cast, func
from sqlalchemy.orm import Session

WEEK_SECONDS: Final = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Window:
    """`weeks` weeks ending at `now`."""

    now: datetime
    weeks: int

    @property
    def start(self) -> datetime:
        monday = (self.now - timedelta(days=self.now.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return monday - timedelta(weeks=self.weeks - 1)


@dataclass(frozen=True, slots=True)
class WeekValue:
    week: int  # 0 = the oldest week of the window
    value: float | None
    count: int


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def epoch(session: Session, column: Any) -> ColumnElement[float]:
    """A timestamp column as seconds since the epoch, on either store."""
    if _postgresql(session):
        return cast(func.extract("epoch", column), Float)
    return (func.julianday(column) - 2440587.5) * 86400.0


def week_of(session: Session, column: Any, window: Window) -> ColumnElement[int]:
    """The window's week number of a timestamp column (times at or after `window.start` only)."""
    since = (epoch(session, column) - window.start.timestamp()) / WEEK_SECONDS
    # SQLite's cast truncates: the floor, as `since` is >= 0 here
    return cast(func.floor(since), Integer) if _postgresql(session) else cast(since, Integer)


def series(weeks: int, found: dict[int, tuple[float | None, int]]) -> list[WeekValue]:
    """One value per week of the window, `None` (count 0) for the weeks without one."""
    return [WeekValue(w, *found.get(w, (None, 0))) for w in range(weeks)]

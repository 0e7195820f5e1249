"""Weekly buckets computed in SQL over a window of weeks ending now (trend charts).

Week `w` of a window of `weeks` weeks is `(start + w weeks, start + (w + 1) weeks]`, where
`start = now - weeks`: week 0 is the oldest, `weeks - 1` ends now.
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
        return self.now - timedelta(weeks=self.weeks)


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
    """The window's week number of a timestamp column (times after `window.start` only)."""
    back = (window.now.timestamp() - epoch(session, column)) / WEEK_SECONDS
    whole = cast(func.floor(back), Integer) if _postgresql(session) else cast(back, Integer)
    return window.weeks - 1 - whole  # SQLite's cast truncates: the floor, as `back` is >= 0 here


def series(weeks: int, found: dict[int, tuple[float | None, int]]) -> list[WeekValue]:
    """One value per week of the window, `None` (count 0) for the weeks without one."""
    return [WeekValue(w, *found.get(w, (None, 0))) for w in range(weeks)]

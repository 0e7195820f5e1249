"""The row count of an UPDATE or DELETE, typed."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched.

    `Session.execute` is typed as returning a `Result`; for DML it is a `CursorResult`, which has
    the count.
    """
    return int(cast(CursorResult[Any], result).rowcount)


MAX_ID = 2**31 - 1  # ids and revisions are 32-bit integers on PostgreSQL

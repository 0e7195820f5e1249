"""Which failures are worth retrying: the same answer for every backend and for scan shards."""

from __future__ import annotations

from typing import Final

import httpx
import psycopg
from sqlalchemy.exc import InterfaceError, OperationalError

from powerx_governance.errors import SourceError

TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    OperationalError,  # the database went away, timed out, or a serialization conflict
    InterfaceError,
    psycopg.OperationalError,  # raised unwrapped by COPY on the raw connection (deadlocks, lost connections)
    httpx.TransportError,  # connect / read failures of outbound HTTP
    SourceError,  # a tenant or catalog source is down (it retried already)
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """A failure that may go away by itself: retry it later; anything else fails for good."""
    return isinstance(exc, TRANSIENT)

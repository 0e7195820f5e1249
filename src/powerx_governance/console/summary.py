"""The fleet's posture, kept per app and recomputed when the store changes.

A fleet-wide aggregate reads every recommendation (about 740,000 rows for 20,000 tenants): a
few hundred milliseconds on PostgreSQL, seconds on SQLite. The overview must not pay that on
every request, so the fleet posture is cached under a cheap data version: the newest audit record
(every decision and follow-up writes one), the newest finished scan (every scan that changed
recommendations finishes one) and the current minute (SLA deadlines pass with time). When the
version moved, a cheap recomputation runs inline; an expensive one runs in one background thread
while requests get the previous figures, marked with their time. Tenant postures are always live.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.audit.queries import newest_seq
from powerx_governance.catalog.queries import catalog_version, plugin_names
from powerx_governance.console.queries import Posture, posture
from powerx_governance.scans.queries import newest_finished

log = logging.getLogger("powerx.console")
INLINE_SECONDS: Final = 0.25  # a recomputation this fast runs inside the request
Version = tuple[object, ...]


def data_version(session: Session, now: datetime) -> Version:
    """What the fleet posture depends on, read through two primary-key/index lookups."""
    return (newest_seq(session), newest_finished(session), now.replace(second=0, microsecond=0))


class PluginNames:
    """Catalog display names (read out of every plugin document), re-read when the catalog changed."""

    def __init__(self) -> None:
        self._version: object = None
        self._names: dict[str, str] = {}

    def get(self, session: Session) -> dict[str, str]:
        version = catalog_version(session)
        if version != self._version:
            self._names, self._version = plugin_names(session), version
        return self._names


@dataclass(frozen=True, slots=True)
class FleetPosture:
    posture: Posture
    as_of: datetime  # when these figures were computed
    fresh: bool  # False: newer data exists and is being counted


@dataclass(frozen=True, slots=True)
class _Entry:
    version: Version
    posture: Posture
    as_of: datetime
    seconds: float


class FleetSummary:
    """Single-flight cache of the fleet posture for one app, and of the catalog's plugin names."""

    def __init__(self, factory: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self._factory, self._clock = factory, clock
        self.plugin_names = PluginNames()
        self._entry: _Entry | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def get(self) -> FleetPosture:
        now = self._clock()
        with self._factory() as session:
            version = data_version(session, now)
        entry = self._entry
        if entry is not None and entry.version == version:
            return FleetPosture(entry.posture, entry.as_of, fresh=True)
        if entry is None or entry.seconds <= INLINE_SECONDS:
            with self._lock:  # concurrent first requests count once
                if self._entry is None or self._entry.version != version:
                    self._entry = self._compute(version, now)
                entry = self._entry
            return FleetPosture(entry.posture, entry.as_of, fresh=entry.version == version)
        self._refresh_in_background(version, now)
        return FleetPosture(entry.posture, entry.as_of, fresh=False)

    def _compute(self, version: Version, now: datetime) -> _Entry:
        start = time.perf_counter()
        with self._factory() as session:
            figures = posture(session, tenant_uuid=None, now=now)
        return _Entry(version, figures, now, time.perf_counter() - start)

    def _refresh_in_background(self, version: Version, now: datetime) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def refresh() -> None:
            try:
                self._entry = self._compute(version, now)
            except Exception:  # the next request tries again; the old figures stay meanwhile
                log.exception("fleet posture refresh failed")
            finally:
                self._refreshing = False

        threading.Thread(target=refresh, name="powerx-console-posture", daemon=True).start()


_HOLDER_LOCK = threading.Lock()


def summary_for(state: object, factory: sessionmaker[Session], clock: Callable[[], datetime]) -> FleetSummary:
    """The app's summary (kept on its `state`)."""
    found: FleetSummary | None = getattr(state, "console_summary", None)
    if found is None:
        with _HOLDER_LOCK:
            found = getattr(state, "console_summary", None)
            if found is None:
                found = FleetSummary(factory, clock)
                state.console_summary = found  # type: ignore[attr-defined]
    return found

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
from typing import Final, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.audit.queries import newest_seq
from powerx_governance.catalog.queries import catalog_version, plugin_names
from powerx_governance.console.queries import Posture, posture
from powerx_governance.recommendations.queries import AdvisoryGroup, advisory_groups
from powerx_governance.scans.queries import newest_finished

log = logging.getLogger("powerx.console")
INLINE_SECONDS: Final = 0.25  # a recomputation this fast runs inside the request
Version = tuple[object, ...]
T = TypeVar("T")


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
class FleetAdvisories:
    groups: list[AdvisoryGroup]
    as_of: datetime
    fresh: bool


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    version: Version
    value: T
    as_of: datetime
    seconds: float


class _Cached(Generic[T]):
    """One fleet-wide figure, single-flight: inline when cheap, else in one background thread."""

    def __init__(self, name: str, compute: Callable[[Session, datetime], T]) -> None:
        self._name, self._compute_with = name, compute
        self._entry: _Entry[T] | None = None
        self._lock = threading.Lock()
        self._refreshing = False

    def get(
        self, factory: sessionmaker[Session], version: Version, now: datetime
    ) -> tuple[T, datetime, bool]:
        entry = self._entry
        if entry is not None and entry.version == version:
            return entry.value, entry.as_of, True
        if entry is None or entry.seconds <= INLINE_SECONDS:
            with self._lock:  # concurrent first requests count once
                if self._entry is None or self._entry.version != version:
                    self._entry = self._compute(factory, version, now)
                entry = self._entry
            return entry.value, entry.as_of, entry.version == version
        self._refresh_in_background(factory, version, now)
        return entry.value, entry.as_of, False

    def _compute(self, factory: sessionmaker[Session], version: Version, now: datetime) -> _Entry[T]:
        start = time.perf_counter()
        with factory() as session:
            value = self._compute_with(session, now)
        return _Entry(version, value, now, time.perf_counter() - start)

    def _refresh_in_background(self, factory: sessionmaker[Session], version: Version, now: datetime) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True

        def refresh() -> None:
            try:
                self._entry = self._compute(factory, version, now)
            except Exception:  # the next request tries again; the old figures stay meanwhile
                log.exception("fleet %s refresh failed", self._name)
            finally:
                self._refreshing = False

        threading.Thread(target=refresh, name=f"powerx-console-{self._name}", daemon=True).start()


def _fleet_posture(session: Session, now: datetime) -> Posture:
    return posture(session, tenant_uuid=None, now=now)


def _fleet_advisories(session: Session, now: datetime) -> list[AdvisoryGroup]:
    return advisory_groups(session, tenant_uuid=None, now=now)


class FleetSummary:
    """Single-flight caches of the fleet posture and advisory groups for one app, and of the
    catalog's plugin names."""

    def __init__(self, factory: sessionmaker[Session], clock: Callable[[], datetime]) -> None:
        self._factory, self._clock = factory, clock
        self.plugin_names = PluginNames()
        self._posture = _Cached("posture", _fleet_posture)
        self._advisories = _Cached("advisories", _fleet_advisories)

    def _version(self, now: datetime) -> Version:
        with self._factory() as session:
            return data_version(session, now)

    def get(self) -> FleetPosture:
        now = self._clock()
        value, as_of, fresh = self._posture.get(self._factory, self._version(now), now)
        return FleetPosture(value, as_of, fresh)

    def advisories(self) -> FleetAdvisories:
        """The fleet's open work grouped by advisory (`recommendations.queries.advisory_groups`)."""
        now = self._clock()
        value, as_of, fresh = self._advisories.get(self._factory, self._version(now), now)
        return FleetAdvisories(value, as_of, fresh)


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

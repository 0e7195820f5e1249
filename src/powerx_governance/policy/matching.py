"""OSV range evaluation (DESIGN §5.1), precomputed once per advisory and plugin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from powerx_governance.catalog.models import Advisory, OsvAffected
from powerx_governance.versioning.semver import InvalidVersionError, PrecedenceKey, Version, parse_version

POWERX_ECOSYSTEM: Final = "powerx"
_RANGE_TYPES: Final = frozenset({"SEMVER", "ECOSYSTEM"})  # PowerX's ecosystem versions are SemVer
_INTRODUCED, _LAST_AFFECTED, _FIXED = 0, 1, 2


class RangeError(ValueError):
    """An OSV range that cannot be evaluated (a version that is not SemVer)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field


@dataclass(frozen=True, slots=True)
class RangeEvent:
    kind: int  # _INTRODUCED | _LAST_AFFECTED | _FIXED
    version: Version | None  # None = introduced "0", the beginning of time

    def sort_key(self) -> tuple[int, PrecedenceKey | tuple[()], int]:
        return (0, (), self.kind) if self.version is None else (1, self.version.key, self.kind)


@dataclass(frozen=True, slots=True)
class AffectedSpec:
    """Which versions of one plugin an advisory affects: sorted range events plus listed versions."""

    ranges: tuple[tuple[RangeEvent, ...], ...]
    versions: frozenset[PrecedenceKey]

    def affects(self, version: Version) -> bool:
        return version.key in self.versions or any(_walk(events, version) for events in self.ranges)


def _walk(events: tuple[RangeEvent, ...], version: Version) -> bool:
    """OSV's algorithm: events in version order; the last applicable one decides."""
    affected = False
    key = version.key
    for event in events:
        if event.kind == _INTRODUCED:
            if event.version is None or key >= event.version.key:
                affected = True
        elif event.version is not None and (
            (event.kind == _FIXED and key >= event.version.key)
            or (event.kind == _LAST_AFFECTED and key > event.version.key)
        ):
            affected = False
    return affected


def _event(raw_kind: str, text: str, field: str) -> RangeEvent:
    kind = {"introduced": _INTRODUCED, "last_affected": _LAST_AFFECTED, "fixed": _FIXED}[raw_kind]
    if kind == _INTRODUCED and text.strip() in ("0", "0.0.0-0"):
        return RangeEvent(kind, None)
    try:
        return RangeEvent(kind, parse_version(text))
    except InvalidVersionError as exc:
        raise RangeError(field, str(exc)) from exc


def _range_events(affected: OsvAffected, index: int) -> list[tuple[RangeEvent, ...]]:
    result = []
    for r_index, osv_range in enumerate(affected.ranges):
        if osv_range.type.upper() not in _RANGE_TYPES:
            continue  # GIT ranges speak of commits, not releases
        events = []
        for e_index, event in enumerate(osv_range.events):
            field = f"affected[{index}].ranges[{r_index}].events[{e_index}]"
            for raw_kind in ("introduced", "last_affected", "fixed"):
                text = getattr(event, raw_kind)
                if text is not None:
                    events.append(_event(raw_kind, text, f"{field}.{raw_kind}"))
        result.append(tuple(sorted(events, key=RangeEvent.sort_key)))
    return result


def _listed(affected: OsvAffected, index: int) -> set[PrecedenceKey]:
    keys = set()
    for v_index, text in enumerate(affected.versions):
        try:
            keys.add(parse_version(text).key)
        except InvalidVersionError as exc:
            raise RangeError(f"affected[{index}].versions[{v_index}]", str(exc)) from exc
    return keys


def affected_specs(advisory: Advisory) -> dict[str, AffectedSpec]:
    """Per PowerX plugin id, what the advisory affects; RangeError names a bad field."""
    ranges: dict[str, list[tuple[RangeEvent, ...]]] = {}
    versions: dict[str, set[PrecedenceKey]] = {}
    for index, affected in enumerate(advisory.affected):
        if affected.package.ecosystem.lower() != POWERX_ECOSYSTEM:
            continue
        name = affected.package.name
        ranges.setdefault(name, []).extend(_range_events(affected, index))
        versions.setdefault(name, set()).update(_listed(affected, index))
    return {name: AffectedSpec(tuple(ranges[name]), frozenset(versions[name])) for name in ranges}

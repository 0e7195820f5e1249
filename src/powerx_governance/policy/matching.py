"""OSV range evaluation (DESIGN §5.1), precomputed once per advisory and plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from powerx_governance.catalog_records import Advisory, OsvAffected, OsvRange
from powerx_governance.versioning.semver import InvalidVersionError, PrecedenceKey, Version, read_version

POWERX_ECOSYSTEM: Final = "powerx"
_RANGE_TYPES: Final = frozenset({"SEMVER", "ECOSYSTEM"})  # PowerX's ecosystem versions are SemVer
_INTRODUCED, _LAST_AFFECTED, _FIXED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ReadingNote:
    """A repair or a problem met while reading an advisory's affected data, by field."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class RangeEvent:
    kind: int  # _INTRODUCED | _LAST_AFFECTED | _FIXED
    version: Version | None  # None = introduced "0", the beginning of time

    def sort_key(self) -> tuple[int, PrecedenceKey | tuple[()], int]:
        return (0, (), self.kind) if self.version is None else (1, self.version.key, self.kind)


@dataclass(frozen=True, slots=True)
class AffectedSpec:
    """Which versions of one plugin an advisory affects: sorted range events plus listed versions.

    `unreadable` says why nothing of the advisory's data for this plugin could be read; such an
    advisory affects every version (DESIGN §7: never clean by default).
    """

    ranges: tuple[tuple[RangeEvent, ...], ...]
    versions: frozenset[PrecedenceKey]
    unreadable: str | None = None

    def affects(self, version: Version) -> bool:
        return (
            self.unreadable is not None
            or version.key in self.versions
            or any(_walk(events, version) for events in self.ranges)
        )


@dataclass(frozen=True, slots=True)
class AffectedReading:
    """An advisory's affected data, salvaged: what was read per plugin, what was repaired, what was lost."""

    specs: dict[str, AffectedSpec]
    repairs: tuple[ReadingNote, ...]
    problems: tuple[ReadingNote, ...]


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


_KINDS: Final = {"introduced": _INTRODUCED, "last_affected": _LAST_AFFECTED, "fixed": _FIXED}


class _Reader:
    """Reads one advisory's ranges and versions, keeping every readable part (DESIGN §7)."""

    def __init__(self) -> None:
        self.repairs: list[ReadingNote] = []
        self.problems: list[ReadingNote] = []

    def version(self, text: str, field: str) -> Version | None:
        try:
            version, padded = read_version(text)
        except InvalidVersionError as exc:
            self.problems.append(ReadingNote(field, f"{exc}; left out"))
            return None
        if padded:
            self.repairs.append(ReadingNote(field, f"partial version {text!r} read as {version.text}"))
        return version

    def event(self, raw_kind: str, text: str, field: str) -> RangeEvent | None:
        kind = _KINDS[raw_kind]
        if kind == _INTRODUCED and text.strip() in ("0", "0.0.0-0"):
            return RangeEvent(kind, None)
        version = self.version(text, field)
        return None if version is None else RangeEvent(kind, version)

    def range_events(self, osv_range: OsvRange, field: str) -> tuple[RangeEvent, ...] | None:
        """The range's events in version order; None when a part is unreadable and no `introduced` is left."""
        events: list[RangeEvent] = []
        unread = 0
        for e_index, raw in enumerate(osv_range.events):
            for raw_kind in _KINDS:
                text = getattr(raw, raw_kind)
                if text is None:
                    continue
                event = self.event(raw_kind, text, f"{field}.events[{e_index}].{raw_kind}")
                if event is None:
                    unread += 1
                else:
                    events.append(event)
        if unread and not any(e.kind == _INTRODUCED for e in events):
            self.problems.append(ReadingNote(field, "no readable `introduced` event; the range is left out"))
            return None
        return tuple(sorted(events, key=RangeEvent.sort_key))

    def affected(self, affected: OsvAffected, index: int, into: _PluginParts) -> None:
        before = len(self.problems)
        self._affected(affected, index, into)
        into.problems += self.problems[before:]

    def _affected(self, affected: OsvAffected, index: int, into: _PluginParts) -> None:
        for r_index, osv_range in enumerate(affected.ranges):
            if osv_range.type.upper() not in _RANGE_TYPES:
                continue  # GIT ranges speak of commits, not releases
            field = f"affected[{index}].ranges[{r_index}]"
            events = self.range_events(osv_range, field)
            if events is None:
                into.lost += 1
            elif events:
                into.ranges.append(events)
        for v_index, text in enumerate(affected.versions):
            version = self.version(text, f"affected[{index}].versions[{v_index}]")
            if version is None:
                into.lost += 1
            else:
                into.versions.add(version.key)


@dataclass
class _PluginParts:
    ranges: list[tuple[RangeEvent, ...]] = field(default_factory=list)
    versions: set[PrecedenceKey] = field(default_factory=set)
    lost: int = 0  # ranges and listed versions that could not be read
    problems: list[ReadingNote] = field(default_factory=list)

    def spec(self) -> AffectedSpec:
        unreadable = None
        if not self.ranges and not self.versions and self.lost:
            unreadable = "; ".join(f"{p.field}: {p.message}" for p in self.problems[:3])
        return AffectedSpec(tuple(self.ranges), frozenset(self.versions), unreadable)


def read_affected(advisory: Advisory) -> AffectedReading:
    """Per PowerX plugin id, what the advisory affects, with the repairs made and the parts left out."""
    reader = _Reader()
    parts: dict[str, _PluginParts] = {}
    for index, affected in enumerate(advisory.affected):
        if affected.package.ecosystem.lower() != POWERX_ECOSYSTEM:
            continue
        reader.affected(affected, index, parts.setdefault(affected.package.name, _PluginParts()))
    specs = {name: plugin.spec() for name, plugin in parts.items()}
    return AffectedReading(specs, tuple(reader.repairs), tuple(reader.problems))


def affected_specs(advisory: Advisory) -> dict[str, AffectedSpec]:
    """Per PowerX plugin id, what the advisory affects (see `read_affected` for repairs and problems)."""
    return read_affected(advisory).specs

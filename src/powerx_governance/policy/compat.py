"""The host compatibility matrix (DESIGN §4): the most specific plugin pattern decides."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from powerx_governance.catalog_records import CompatAction, CompatEntry
from powerx_governance.versioning.semver import Version, parse_version

_STRENGTH: Final = {CompatAction.BLOCK: 2, CompatAction.WARN: 1, CompatAction.ALLOW: 0}
_GLOB_CHARS: Final = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in pattern)


def _specificity(pattern: str) -> tuple[int, int]:
    """An exact id beats any glob; among globs, more literal characters is more specific."""
    if not is_glob(pattern):
        return (1, len(pattern))
    return (0, sum(1 for ch in pattern if ch not in _GLOB_CHARS))


@dataclass(frozen=True, slots=True)
class CompatVerdict:
    action: CompatAction
    notes: tuple[str, ...]


NO_OBJECTION: Final = CompatVerdict(CompatAction.ALLOW, ())


@dataclass(frozen=True, slots=True)
class _Row:
    entry: CompatEntry
    low: Version | None
    high: Version | None
    specificity: tuple[int, int]

    def covers(self, version: Version) -> bool:
        return (self.low is None or version.key >= self.low.key) and (
            self.high is None or version.key <= self.high.key
        )


class CompatMatrix:
    """Answers "may this plugin version run on this host?" for validated matrix entries."""

    def __init__(self, entries: tuple[CompatEntry, ...]) -> None:
        self._rows = tuple(
            _Row(
                e,
                parse_version(e.min_version) if e.min_version else None,
                parse_version(e.max_version) if e.max_version else None,
                _specificity(e.plugin),
            )
            for e in entries
        )
        self._cache: dict[tuple[str, str], tuple[_Row, ...]] = {}

    def _rows_for(self, host: str, plugin_id: str) -> tuple[_Row, ...]:
        if not self._rows:
            return ()  # no matrix: nothing to match or cache
        key = (host, plugin_id)
        rows = self._cache.get(key)
        if rows is None:
            rows = tuple(
                r
                for r in self._rows
                if fnmatchcase(host, r.entry.host) and fnmatchcase(plugin_id, r.entry.plugin)
            )
            self._cache[key] = rows
        return rows

    def concerns(self, host: str, plugin_id: str) -> bool:
        """Whether any entry applies to this host and plugin at all (most pairs: none)."""
        return bool(self._rows_for(host, plugin_id))

    def verdict(self, host: str, plugin_id: str, version: Version) -> CompatVerdict:
        matching = [r for r in self._rows_for(host, plugin_id) if r.covers(version)]
        if not matching:
            return NO_OBJECTION
        top = max(r.specificity for r in matching)
        deciding = [r for r in matching if r.specificity == top]
        action = max((r.entry.action for r in deciding), key=_STRENGTH.__getitem__)
        notes = tuple(r.entry.notes for r in deciding if r.entry.action == action and r.entry.notes)
        return CompatVerdict(action, notes)

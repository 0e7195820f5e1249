"""The catalog prepared for evaluation: releases sorted, advisories scored, affected sets as bitmasks."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from powerx_governance.catalog_records import Advisory, Catalog, Lifecycle, Plugin, Release
from powerx_governance.domain import Channel
from powerx_governance.policy.compat import CompatMatrix
from powerx_governance.policy.matching import AffectedSpec, affected_specs
from powerx_governance.policy.severity import AdvisorySeverity, advisory_severity, is_exploited
from powerx_governance.versioning.semver import PrecedenceKey, Version, parse_version


@dataclass(frozen=True, slots=True)
class IndexedRelease:
    release: Release
    version: Version
    min_core: Version | None
    max_core: Version | None
    position: int  # index in the plugin's ascending release list

    @property
    def channel(self) -> Channel:
        return self.release.channel

    @property
    def lifecycle(self) -> Lifecycle:
        return self.release.lifecycle

    def admits_core(self, core: Version) -> bool:
        return (self.min_core is None or core.key >= self.min_core.key) and (
            self.max_core is None or core.key <= self.max_core.key
        )


@dataclass(frozen=True, slots=True)
class IndexedAdvisory:
    advisory: Advisory
    spec: AffectedSpec
    severity: AdvisorySeverity
    exploited: bool

    @property
    def id(self) -> str:
        return self.advisory.id

    def names(self) -> frozenset[str]:
        return frozenset((self.advisory.id, *self.advisory.aliases))


@dataclass(slots=True)
class PluginIndex:
    """One plugin's releases (ascending) and advisories; bit i of a mask = advisories[i]."""

    plugin: Plugin
    releases: tuple[IndexedRelease, ...]
    advisories: tuple[IndexedAdvisory, ...]
    release_masks: tuple[int, ...]
    _keys: list[PrecedenceKey] = field(default_factory=list)
    _masks: dict[PrecedenceKey, int] = field(default_factory=dict)
    _unreadable: dict[str, str] = field(default_factory=dict)
    _unreadable_advisories: int = 0  # bitmask of the advisories whose affected data could not be read

    def __post_init__(self) -> None:
        self._keys = [r.version.key for r in self.releases]
        self._unreadable_advisories = sum(
            1 << i for i, a in enumerate(self.advisories) if a.spec.unreadable is not None
        )
        # A(version) depends on the version's precedence key alone: a release's mask is A(release).
        self._masks = dict(zip(self._keys, self.release_masks, strict=True))
        for skipped in self.plugin.unreadable_releases:
            self._unreadable.setdefault(skipped.version.strip().lstrip("vV"), skipped.problem)

    def unreadable_release(self, version: Version) -> str | None:
        """Why the catalog's record of this very release could not be read (None when it could)."""
        return self._unreadable.get(version.text.strip().lstrip("vV")) if self._unreadable else None

    def unreadable_advisories(self, mask: int) -> list[IndexedAdvisory]:
        """The advisories of `mask` whose affected data for this plugin could not be read."""
        if not mask & self._unreadable_advisories:
            return []  # the usual case, in one operation
        return [a for i, a in enumerate(self.advisories) if mask >> i & 1 and a.spec.unreadable is not None]

    def affected_mask(self, version: Version) -> int:
        """A(version) as a bitmask, cached per version."""
        mask = self._masks.get(version.key)
        if mask is None:
            mask = sum(1 << i for i, a in enumerate(self.advisories) if a.spec.affects(version))
            self._masks[version.key] = mask
        return mask

    def first_above(self, version: Version) -> int:
        """Index of the first release with higher precedence than `version`."""
        return bisect_right(self._keys, version.key)

    def release_of(self, version: Version) -> IndexedRelease | None:
        pos = bisect_right(self._keys, version.key) - 1
        return self.releases[pos] if pos >= 0 and self._keys[pos] == version.key else None


def _index_release(release: Release, position: int) -> IndexedRelease:
    return IndexedRelease(
        release,
        parse_version(release.version),
        parse_version(release.min_core) if release.min_core else None,
        parse_version(release.max_core) if release.max_core else None,
        position,
    )


def index_plugin(plugin: Plugin, advisories: list[IndexedAdvisory]) -> PluginIndex:
    ordered = sorted(plugin.releases, key=lambda r: parse_version(r.version).key)
    releases = tuple(_index_release(r, i) for i, r in enumerate(ordered))
    masks = tuple(
        sum(1 << i for i, a in enumerate(advisories) if a.spec.affects(r.version)) for r in releases
    )
    return PluginIndex(plugin, releases, tuple(advisories), masks)


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    plugins: dict[str, PluginIndex]
    matrix: CompatMatrix
    advisory_source_problems: tuple[str, ...] = ()  # the advisory source could not be read

    @classmethod
    def build(cls, catalog: Catalog) -> CatalogIndex:
        """Index a validated catalog (loaders have already rejected bad versions and ranges)."""
        per_plugin: dict[str, list[IndexedAdvisory]] = {p.plugin_id: [] for p in catalog.plugins}
        for advisory in catalog.advisories:
            for plugin_id, indexed in index_advisory(advisory):
                if plugin_id in per_plugin:
                    per_plugin[plugin_id].append(indexed)
        plugins = {p.plugin_id: index_plugin(p, per_plugin[p.plugin_id]) for p in catalog.plugins}
        return cls(plugins, CompatMatrix(catalog.matrix), catalog.advisory_source_problems)


def index_advisory(advisory: Advisory) -> list[tuple[str, IndexedAdvisory]]:
    """(plugin id, indexed advisory) for each PowerX plugin it names; none when withdrawn (DESIGN §5.1)."""
    if advisory.withdrawn is not None:
        return []
    severity, exploited = advisory_severity(advisory), is_exploited(advisory)
    return [
        (plugin_id, IndexedAdvisory(advisory, spec, severity, exploited))
        for plugin_id, spec in affected_specs(advisory).items()
    ]

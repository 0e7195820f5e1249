"""Which record is in force when the catalog source and the push source both hold one.

- An advisory id in both: the record with the later `modified` wins (a record without
  `modified` is the oldest); a tie goes to the catalog source.
- A release version (SemVer precedence) in both: the catalog source wins, unless the pushed
  record takes the release out of use (`yanked: true`, or lifecycle `revoked`) while the
  catalog's does not: a vendor's yank must not be undone by a catalog that has not caught up.

Pure functions: no session, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import msgspec

from powerx_governance.catalog_records import Advisory, Plugin, Release
from powerx_governance.domain import LifecycleStatus
from powerx_governance.versioning.semver import PrecedenceKey, parse_version

_OLDEST: Final = datetime.min.replace(tzinfo=UTC)


class Origin(StrEnum):
    CATALOG = "catalog"
    PUSH = "push"


def _modified(advisory: Advisory) -> datetime:
    return advisory.modified or _OLDEST


def advisory_in_force(catalog: Advisory | None, pushed: Advisory | None) -> tuple[Advisory, Origin] | None:
    """The advisory in force and whose it is; None when neither source holds the id."""
    if pushed is None:
        return None if catalog is None else (catalog, Origin.CATALOG)
    if catalog is not None and _modified(catalog) >= _modified(pushed):
        return catalog, Origin.CATALOG
    return pushed, Origin.PUSH


def retired_by_catalog(catalog: Advisory | None, pushed: Advisory) -> bool:
    """The catalog source withdrew the advisory in a record at least as new as the pushed one."""
    in_force = advisory_in_force(catalog, pushed)
    return in_force is not None and in_force[1] is Origin.CATALOG and in_force[0].withdrawn is not None


def _out_of_use(release: Release) -> bool:
    return release.yanked or release.lifecycle.status is LifecycleStatus.REVOKED


def push_wins(catalog: Release, pushed: Release) -> bool:
    """For one version in both sources: the pushed record is in force (see the module docstring)."""
    return _out_of_use(pushed) and not _out_of_use(catalog)


def release_key(version: str) -> PrecedenceKey:
    return parse_version(version).key


def merge_plugin(plugin_id: str, catalog: Plugin | None, pushed: Iterable[Release]) -> Plugin:
    """The plugin in force: the catalog source's record with the pushed releases merged in."""
    base = catalog or Plugin(plugin_id=plugin_id)
    releases = list(base.releases)
    index = {release_key(r.version): i for i, r in enumerate(releases)}
    for release in sorted(pushed, key=lambda r: release_key(r.version)):
        i = index.get(release_key(release.version))
        if i is None:
            index[release_key(release.version)] = len(releases)
            releases.append(release)
        elif push_wins(releases[i], release):
            releases[i] = release
    return msgspec.structs.replace(base, releases=tuple(releases))

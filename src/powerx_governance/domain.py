"""Shared vocabulary: channels, severities, actions, lifecycle states (string enums), tenant tags."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Final


class Channel(StrEnum):
    LTS = "lts"
    STABLE = "stable"
    BETA = "beta"
    ALPHA = "alpha"
    DEV = "dev"


# Which release channels a tenant following a channel accepts (DESIGN §5.3).
ACCEPTED_CHANNELS: Final[dict[Channel, frozenset[Channel]]] = {
    Channel.LTS: frozenset({Channel.LTS}),
    Channel.STABLE: frozenset({Channel.LTS, Channel.STABLE}),
    Channel.BETA: frozenset({Channel.LTS, Channel.STABLE, Channel.BETA}),
    Channel.ALPHA: frozenset({Channel.LTS, Channel.STABLE, Channel.BETA, Channel.ALPHA}),
    Channel.DEV: frozenset(Channel),
}


class Severity(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: Final = {s: i for i, s in enumerate(Severity)}
SEVERITY_BY_RANK: Final = tuple(Severity)


class Action(StrEnum):
    UPGRADE_NOW = "upgrade_now"
    SCHEDULE = "schedule"
    REVIEW = "review"
    BLOCKED = "blocked"
    NONE = "none"


class LifecycleStatus(StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"
    SUNSET = "sunset"
    REVOKED = "revoked"


class UpdateType(StrEnum):
    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"
    PRERELEASE = "prerelease"
    NONE = "none"


class Enforcement(StrEnum):
    ADVISORY = "advisory"
    WARN = "warn"
    ENFORCE = "enforce"


class InstallState(StrEnum):
    INSTALLED = "installed"
    ENABLED = "enabled"
    DISABLED = "disabled"


class Plan(StrEnum):
    FREE = "free"
    BASIC = "basic"
    PRO = "pro"


def tags_match(wanted: Collection[str], tags: Collection[str]) -> bool:
    """Whether a tenant carrying `tags` is selected by `wanted`: an empty selection selects every
    tenant, otherwise one shared tag is enough. Rules, exemptions, bulk decisions and the console's
    tag filter select tenants this way (`inventory.queries.tags_match_sql` is the same test in SQL)."""
    return not wanted or not set(wanted).isdisjoint(tags)

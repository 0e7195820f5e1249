"""What an admin can decide about a recommendation, and what became of a decision."""

from __future__ import annotations

from enum import StrEnum


class DecisionKind(StrEnum):
    UPGRADE = "upgrade"
    SCHEDULE = "schedule"
    IGNORE = "ignore"


class IgnoreScope(StrEnum):
    TARGET = "target"  # this target version only: a new target reopens the recommendation
    UNTIL = "until"  # this recommendation until a date
    PLUGIN_UNTIL = "plugin_until"  # everything about this plugin in this tenant until a date


class DecisionState(StrEnum):
    ACTIVE = "active"
    FULFILLED = "fulfilled"  # a later scan saw the target reached
    BROKEN = "broken"  # an ignore broken by a new critical advisory
    EXPIRED = "expired"  # an ignore whose date passed
    SUPERSEDED = "superseded"  # a newer decision on the same recommendation
    BREACHED = "breached"  # a scheduled upgrade whose time passed without the target reached

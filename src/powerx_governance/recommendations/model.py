"""Where a recommendation stands, and how a revision changed it."""

from __future__ import annotations

from enum import StrEnum


class RecommendationState(StrEnum):
    OPEN = "open"
    DECIDED = "decided"  # an upgrade or schedule decision was taken
    IGNORED = "ignored"
    RESOLVED = "resolved"  # the installation no longer needs action
    SUPERSEDED = "superseded"  # replaced by a newer revision while decided/ignored


class RecommendationChange(StrEnum):
    OPENED = "opened"
    ESCALATED = "escalated"  # risk or action became more urgent
    CHANGED = "changed"
    RESOLVED = "resolved"
    REOPENED = "reopened"

"""Where a recommendation stands, how a revision changed it, and when it is past its SLA."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final


class RecommendationState(StrEnum):
    OPEN = "open"
    DECIDED = "decided"  # an upgrade or schedule decision was taken
    IGNORED = "ignored"
    RESOLVED = "resolved"  # the installation no longer needs action
    SUPERSEDED = "superseded"  # replaced by a newer revision while decided/ignored


# Still needing something from someone: open, or answered by a decision that has not yet played out.
UNRESOLVED: Final = (
    RecommendationState.OPEN.value,
    RecommendationState.DECIDED.value,
    RecommendationState.IGNORED.value,
)


class RecommendationChange(StrEnum):
    OPENED = "opened"
    ESCALATED = "escalated"  # risk or action became more urgent
    CHANGED = "changed"
    RESOLVED = "resolved"
    REOPENED = "reopened"


def past_sla(state: str, sla_deadline: datetime | None, now: datetime) -> bool:
    """DESIGN §5.8: still unresolved and its SLA deadline is before `now` (the one meaning of
    "past SLA"; `recommendations.queries.past_sla_condition` is the same test in SQL)."""
    return state in UNRESOLVED and sla_deadline is not None and sla_deadline < now

"""What a notification event and a delivery are about, and where they stand."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    FINDING = "finding"
    DECISION = "decision"
    SLA_BREACH = "sla_breach"
    IGNORE_BROKEN = "ignore_broken"
    ALERT = "alert"


class MessageKind(StrEnum):
    """What a delivery says: one event kind sent at once, or a digest of findings."""

    FINDING = "finding"
    DIGEST = "digest"
    DECISION = "decision"
    SLA_BREACH = "sla_breach"
    IGNORE_BROKEN = "ignore_broken"
    ALERT = "alert"


class EntryMode(StrEnum):
    IMMEDIATE = "immediate"
    DIGEST = "digest"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued or between attempts
    DELIVERED = "delivered"
    DEAD = "dead"  # exhausted its attempts or refused for good: the dead letter
    SKIPPED = "skipped"  # nothing left to say (findings resolved meanwhile, recipient removed)

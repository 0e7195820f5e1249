"""The downstream event types, and the states of a webhook subscription."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    ALERT = "plugin.version.alert"
    DECISION = "plugin.version.decision"
    SLA_BREACH = "plugin.version.sla_breach"
    DRIFT = "plugin.version.drift"  # a group member off its baseline, or back on it (baselines)


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by an operator
    SUSPENDED = "suspended"  # gave up after `max_attempts` failures in a row: resume or replay

"""What a scan is, how it was triggered, how it ended (for the fleet and for one tenant); the states of
an operational alert."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ScanKind(StrEnum):
    FULL = "full"
    DELTA = "delta"


class ScanStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every selected tenant scanned
    INCOMPLETE = "incomplete"  # finished, but coverage below the minimum or security data unreadable
    FAILED = "failed"  # could not run (catalog source down, crash)


FINISHED: Final = (ScanStatus.SUCCEEDED.value, ScanStatus.INCOMPLETE.value, ScanStatus.FAILED.value)


class ScanTrigger(StrEnum):
    SCHEDULE = "schedule"
    API = "api"
    CLI = "cli"
    PUSH = "push"
    POLICY = "policy"  # a new policy version, a rollback, or the upgrade-policy flag changed
    RETRY = "retry"


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"  # the condition ended (e.g. the next fleet full scan succeeded)


class TenantOutcome(StrEnum):
    SCANNED = "scanned"  # its manifest was read afresh and evaluated
    STALE = "stale"  # evaluated from its last good manifest
    FAILED = "failed"  # not evaluated


class ShardStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # evaluated and persisted, with its follow-ups, in one transaction
    GIVEN_UP = "given_up"  # failed for good: its tenants count as not scanned

    @property
    def final(self) -> bool:
        return self in (ShardStatus.DONE, ShardStatus.GIVEN_UP)

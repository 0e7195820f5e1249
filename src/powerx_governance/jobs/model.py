"""The states of a queued job, and which queue runs it."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"  # exhausted its retries (or failed for good): the dead letter, visible to operators


class JobRunner(StrEnum):
    """Which queue runs a job: the local table's worker, or procrastinate (the row is then the ledger)."""

    LOCAL = "local"
    PROCRASTINATE = "procrastinate"

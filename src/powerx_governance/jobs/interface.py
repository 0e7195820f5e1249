"""The small queue interface every backend implements, and what it reports to operators.

Two implementations, one file each: `local.py` (the jobs table and an in-process worker thread,
the SQLite embedded default) and `procrastinate_queue.py` (procrastinate on PostgreSQL, for
separate worker processes on any number of machines). Both run the same task functions with the
same idempotency keys: jobs are always enqueued through `queue.enqueue` in the caller's
transaction, whichever backend then runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from powerx_governance.kernel import Mergeable, Task


class QueueBackend(StrEnum):
    """`POWERX_QUEUE_BACKEND`: which engine runs the jobs."""

    LOCAL = "local"  # the jobs table and this process's worker thread (SQLite or PostgreSQL)
    PROCRASTINATE = "procrastinate"  # procrastinate on PostgreSQL: `powerx version worker` processes


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What the queue looks like now: waiting jobs, jobs by state, the longest wait."""

    backend: QueueBackend
    depth: int  # jobs due and waiting for a worker
    by_state: Mapping[str, int]
    oldest_waiting_seconds: float  # 0 when nothing waits

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend.value,
            "depth": self.depth,
            "by_state": dict(self.by_state),
            "oldest_waiting_seconds": round(self.oldest_waiting_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A job that failed for good: its task, payload, attempts and last error."""

    id: int
    task: str
    key: str
    payload: Mapping[str, Any]
    attempts: int
    error: str | None
    failed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "key": self.key,
            "payload": dict(self.payload),
            "attempts": self.attempts,
            "error": self.error,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
        }


@dataclass(frozen=True, slots=True)
class Handlers:
    """What a backend runs: the components' tasks, which of them may run now, and the periodic tick."""

    tasks: Mapping[str, Task]
    runnable: Callable[[], frozenset[str] | None]  # tasks allowed now (None: all); the flag holds the rest
    tick: Callable[[], object]  # the scheduler tick: scheduled scans and periodic follow-ups
    postponed: tuple[type[BaseException], ...] = field(default=())  # "try again shortly", not a failure
    mergeable: Mapping[str, Mergeable] = field(default_factory=dict)  # waiting jobs that may run as one


class JobQueue(Protocol):
    """Runs the jobs `queue.enqueue` wrote, on one backend."""

    backend: QueueBackend

    def run_pending(self, limit: int = 100, *, tasks: frozenset[str] | None = None) -> int:
        """Run due jobs (only `tasks` when given) in this process until none is left or `limit`."""
        ...

    def stats(self) -> QueueStats: ...

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

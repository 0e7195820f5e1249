"""Group commit: decisions posted at the same time are taken in one transaction.

Every decision holds the audit chain lock from its audit record to its commit (one chain, one
writer at a time), so concurrent requests queue on that lock and each pays a commit of its own
(an fsync on PostgreSQL). Here a request queues its decision instead; whichever request finds no
batch running takes what is queued (up to `MAX_BATCH`; after a shared batch it first waits a
moment for the queue to fill, see `GroupCommit._gather`) and decides it in one transaction: each
decision's checks and writes as if alone, in the order they arrived, then the announcements and
audit records of them all with a few statements (`service.announce`), then one commit. Each
request gets its own answer once that commit is done.

A decision refused by its checks (stale revision, validation, policy) has written nothing, so it
gets its error and the others go on. Any other error rolls the batch back and each decision of
it is taken again alone, in a transaction of its own, so a failure is reported to its request
only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from weakref import WeakKeyDictionary

from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.auth.tokens import Principal
from powerx_governance.db.session import transaction
from powerx_governance.decisions.service import (
    DecisionError,
    DecisionRequest,
    Taken,
    announce,
    decide,
    decision_dict,
    open_batch,
    take,
    write_taken,
)
from powerx_governance.decisions.tables import DecisionRow
from powerx_governance.notifications.service import NotificationRuntime

MAX_BATCH: Final = 64
GATHER_SECONDS: Final = 0.004  # at most this long a leader waits for its batch to fill (see `decide`)
Answer = tuple[dict[str, Any], bool] | DecisionError  # (decision_dict, created), or why it was refused
log = logging.getLogger("powerx.decisions")


@dataclass(slots=True)
class _Pending:
    """A queued decision and, once its batch is committed, its answer."""

    req: DecisionRequest
    who: Principal
    done: bool = False
    answer: tuple[dict[str, Any], bool] | None = None
    error: Exception | None = field(default=None)

    def outcome(self) -> tuple[dict[str, Any], bool]:
        if self.error is not None:
            raise self.error
        if self.answer is None:  # pragma: no cover - a batch always answers or fails each decision
            raise RuntimeError("a decision left without an answer")
        return self.answer


class GroupCommit:
    """Takes decisions for concurrent callers, batched into shared transactions (see the module)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        runtime: NotificationRuntime,
        clock: Callable[[], datetime],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._factory, self._runtime, self._clock, self._max = factory, runtime, clock, max_batch
        self._queue: list[_Pending] = []
        self._running = False
        lock = threading.Lock()
        self._changed = threading.Condition(lock)
        self._arrived = threading.Condition(lock)  # the same lock: a gathering leader waits here
        self._gathering = False
        self._last = 1  # how many decisions the last batch took

    def decide(self, req: DecisionRequest, who: Principal) -> tuple[dict[str, Any], bool]:
        """(the decision as `decision_dict`, created), as `service.decide` in a transaction of its own."""
        mine = _Pending(req, who)
        with self._changed:
            self._queue.append(mine)
            if self._gathering:
                self._arrived.notify()
            while not mine.done:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                self._gather()
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                self._last = len(batch)
                self._changed.release()
                try:
                    self._run(batch)
                finally:
                    _abandon(batch)
                    self._changed.acquire()
                    self._running = False
                    self._changed.notify_all()
        return mine.outcome()

    def _gather(self) -> None:
        """When the last batch was shared, wait a moment (at most `GATHER_SECONDS`) for as many
        decisions as it took before taking the queue. Under concurrent clients the answers of a
        batch go out together and their next decisions come back a few at a time: the first one
        would otherwise be taken alone and pay a transaction, a commit and a delivery job of its
        own. A lone caller (last batch of one) never waits."""
        wanted = min(self._last, self._max)
        if len(self._queue) >= wanted or wanted < 2:
            return
        deadline = time.monotonic() + GATHER_SECONDS
        self._gathering = True
        try:
            while len(self._queue) < wanted and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
        finally:
            self._gathering = False

    def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) > 1:
                self._together(batch)
                return
        except Exception:  # any failure of the shared transaction: each decision alone
            log.warning("a batch of %d decisions failed; taking each alone", len(batch), exc_info=True)
        for pending in batch:
            self._alone(pending)

    def _together(self, batch: list[_Pending]) -> None:
        answers = decide_together(
            self._factory, self._runtime, self._clock(), [(p.req, p.who) for p in batch]
        )
        for pending, answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                pending.error = answer
            else:
                pending.answer = answer
            pending.done = True

    def _alone(self, pending: _Pending) -> None:
        try:
            with transaction(self._factory) as session:
                row, created = decide(session, self._runtime, pending.req, pending.who, self._clock())
                pending.answer = (decision_dict(row), created)
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked, which raises it
            pending.error = exc
        pending.done = True


def decide_together(
    factory: sessionmaker[Session],
    runtime: NotificationRuntime,
    now: datetime,
    requests: Sequence[tuple[DecisionRequest, Principal]],
) -> list[Answer]:
    """Take decisions in order in one transaction and commit it: each one's answer, or the
    DecisionError that refused it (it wrote nothing). Any other error is raised, nothing committed."""
    answers: list[Answer] = []
    written: list[tuple[dict[str, Any], DecisionRow]] = []
    with transaction(factory) as session:
        batch = open_batch(session, [req.recommendation_id for req, _ in requests])
        taken: list[Taken] = []
        for req, who in requests:
            try:
                outcome = take(session, req, who, now, batch=batch)
            except DecisionError as exc:  # refused before writing anything
                answers.append(exc)
                continue
            row = outcome.row if isinstance(outcome, Taken) else outcome
            answer = decision_dict(row)  # as of this decision (a later one may supersede it)
            answers.append((answer, isinstance(outcome, Taken)))
            written.append((answer, row))
            if isinstance(outcome, Taken):
                taken.append(outcome)
        write_taken(session, batch)
        announce(session, runtime, taken, now)
    for answer, row in written:
        answer["id"] = row.id  # written with the batch
    return answers


def _abandon(batch: list[_Pending]) -> None:
    """Answer what an interrupted batch left unanswered, so no caller waits for ever."""
    for pending in batch:
        if not pending.done:
            pending.error, pending.done = RuntimeError("the decision's batch was interrupted"), True


_GROUPS: Final[WeakKeyDictionary[sessionmaker[Session], GroupCommit]] = WeakKeyDictionary()
_GROUPS_LOCK: Final = threading.Lock()


def group_commit(
    factory: sessionmaker[Session], runtime: NotificationRuntime, clock: Callable[[], datetime]
) -> GroupCommit:
    """The group commit of the store behind `factory` (one per service)."""
    with _GROUPS_LOCK:
        found = _GROUPS.get(factory)
        if found is None:
            found = _GROUPS[factory] = GroupCommit(factory, runtime, clock)
        return found

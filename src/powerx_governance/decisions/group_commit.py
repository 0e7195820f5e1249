"""Group commit: decisions posted at the same time are taken in one transaction.

Every decision holds the audit chain lock from its audit record to its commit (one chain, one
writer at a time), so concurrent requests queue on that lock and each pays a commit of its own
(an fsync on PostgreSQL). Here a request queues its decision instead and awaits its answer on the
event loop; one drain task per event loop takes what is queued (up to `MAX_BATCH`; after a shared
batch it first waits a few milliseconds for the queue to fill, see `GroupCommit._gather`) and
decides it in one transaction, in one worker thread: each decision's checks and writes as if
alone, in the order they arrived, then the announcements and audit records of them all with a few
statements (`service.announce`), then one commit. Each request gets its own answer once that commit is done.
A waiting request holds no worker thread: one thread hop per batch, not one per decision and a
blocked thread woken at every commit.

A decision refused by its checks (stale revision, validation, policy) has written nothing, so it
gets its error and the others go on. Any other error rolls the batch back and each decision of
it is taken again alone, in a transaction of its own, so a failure is reported to its request
only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from weakref import WeakKeyDictionary

from anyio import to_thread
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
# how long a batch waits to fill (see `GroupCommit._gather`): while decisions keep coming, at most
# GATHER_GAP after the last one came and GATHER_SECONDS in all
GATHER_SECONDS: Final = 0.015
GATHER_GAP: Final = 0.008
Answer = tuple[dict[str, Any], bool] | DecisionError  # (decision_dict, created), or why it was refused
log = logging.getLogger("powerx.decisions")


@dataclass(slots=True)
class _Pending:
    """A queued decision and, once its batch is committed, its answer."""

    req: DecisionRequest
    who: Principal
    answered: asyncio.Future[tuple[dict[str, Any], bool]]
    answer: tuple[dict[str, Any], bool] | None = None
    error: Exception | None = field(default=None)

    def settle(self) -> None:
        """Hand the answer (or the error) to the request awaiting it, unless it went away."""
        if self.answered.done():
            return
        if self.error is not None:
            self.answered.set_exception(self.error)
        elif self.answer is not None:
            self.answered.set_result(self.answer)
        else:  # pragma: no cover - a batch always answers or fails each decision
            self.answered.set_exception(RuntimeError("a decision left without an answer"))


class GroupCommit:
    """Takes decisions for the concurrent requests of one event loop, batched into shared
    transactions (see the module). Used from that loop only: its state needs no lock."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        runtime: NotificationRuntime,
        clock: Callable[[], datetime],
        max_batch: int = MAX_BATCH,
        *,
        gather: tuple[float, float] = (GATHER_GAP, GATHER_SECONDS),
    ) -> None:
        self._factory, self._runtime, self._clock, self._max = factory, runtime, clock, max_batch
        self._gap, self._most = gather  # seconds: after the last decision came, in all
        self._queue: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None
        self._arrived: asyncio.Event | None = None  # set when a decision comes while a batch gathers
        self._last = 1  # how many decisions the last batch took

    async def decide(self, req: DecisionRequest, who: Principal) -> tuple[dict[str, Any], bool]:
        """(the decision as `decision_dict`, created), as `service.decide` in a transaction of its own."""
        mine = _Pending(req, who, asyncio.get_running_loop().create_future())
        self._queue.append(mine)
        if self._arrived is not None:
            self._arrived.set()
        if self._drain is None:
            self._drain = asyncio.create_task(self._take_queued())
        return await mine.answered

    async def _take_queued(self) -> None:
        """Batch after batch until the queue is empty (one task at a time per loop)."""
        try:
            while self._queue:
                await self._gather()
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                self._last = len(batch)
                try:
                    await to_thread.run_sync(self._run, batch)
                finally:
                    _abandon(batch)
                    for pending in batch:
                        pending.settle()
        finally:
            self._drain = None

    async def _gather(self) -> None:
        """When the last batch was shared, wait for as many decisions as it took before taking the
        queue: while they keep coming, up to `GATHER_GAP` after the last one and `GATHER_SECONDS`
        in all (`gather`). Under concurrent clients the answers of a batch go out together and
        their next decisions come back a few at a time, each read and authenticated by this loop
        first (a batch of 16 takes this machine several milliseconds): the first ones would otherwise be
        taken without the rest and pay a transaction, a commit and a delivery job of their own,
        and batches of 14 and 2 would alternate. A lone caller (last batch of one) never waits."""
        wanted = min(self._last, self._max)
        if len(self._queue) >= wanted or wanted < 2:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._most
        self._arrived = asyncio.Event()
        try:
            while len(self._queue) < wanted:
                left = deadline - loop.time()
                if left <= 0:
                    return  # take what came
                try:
                    await asyncio.wait_for(self._arrived.wait(), min(self._gap, left))
                except TimeoutError:
                    return  # none came for a while: take what came
                self._arrived.clear()
        finally:
            self._arrived = None

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

    def _alone(self, pending: _Pending) -> None:
        try:
            with transaction(self._factory) as session:
                row, created = decide(session, self._runtime, pending.req, pending.who, self._clock())
                pending.answer = (decision_dict(row), created)
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked, which raises it
            pending.error = exc


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
        announce(session, runtime, taken, now, tenant_keys=batch.tenant_keys)
    for answer, row in written:
        answer["id"] = row.id  # written with the batch
    return answers


def _abandon(batch: list[_Pending]) -> None:
    """Answer what an interrupted batch left unanswered, so no caller waits for ever."""
    for pending in batch:
        if pending.answer is None and pending.error is None:
            pending.error = RuntimeError("the decision's batch was interrupted")


_Loops = WeakKeyDictionary[asyncio.AbstractEventLoop, GroupCommit]
_GROUPS: Final[WeakKeyDictionary[sessionmaker[Session], _Loops]] = WeakKeyDictionary()
_GROUPS_LOCK: Final = threading.Lock()  # loops of other threads (test clients) may ask at once


def group_commit(
    factory: sessionmaker[Session], runtime: NotificationRuntime, clock: Callable[[], datetime]
) -> GroupCommit:
    """The group commit of the store behind `factory` for the running event loop (one per service
    and loop: a loop's futures are settled on that loop; other loops are as other processes)."""
    loop = asyncio.get_running_loop()
    with _GROUPS_LOCK:
        loops = _GROUPS.get(factory)
        if loops is None:
            loops = _GROUPS[factory] = WeakKeyDictionary()
        found = loops.get(loop)
        if found is None:
            found = loops[loop] = GroupCommit(factory, runtime, clock)
        return found

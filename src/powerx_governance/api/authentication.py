"""The tokens (and flags) of concurrent requests, read together.

A request's token is read in a worker thread, as every database read of a route. Under concurrent
clients a thread hop per request cost more CPU than the read itself (the hand-off to the thread and
back through the event loop, the GIL passed between them). Here a request queues its token on the
event loop and awaits its answer; one drain task per loop reads every queued token in one worker
thread and one transaction (`authenticate_many`, and the flags when a request needs them), then
takes the tokens queued meanwhile. Every read starts after the requests it answers arrived, so a
token revoked before a request is refused as before.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from weakref import WeakKeyDictionary

from anyio import to_thread

from powerx_governance.auth.tokens import Principal, authenticate_many
from powerx_governance.feature_flags import Flag

if TYPE_CHECKING:  # the composition root, as a type only (see `api.deps`)
    from powerx_governance.service import GovernanceService

Checked = tuple[Principal | None, Mapping[Flag, bool]]
_NO_FLAGS: Final[Mapping[Flag, bool]] = {}


@dataclass(frozen=True, slots=True)
class _Presented:
    token: str
    flags: bool  # read the feature flags with the token (only for a valid token)
    answered: asyncio.Future[Checked]


class Authentication:
    """Reads the presented tokens of one event loop's requests, together (see the module). Used from
    that loop only: its state needs no lock."""

    def __init__(self, service: GovernanceService) -> None:
        self._service = service
        self._queue: list[_Presented] = []
        self._drain: asyncio.Task[None] | None = None

    async def check(self, token: str, *, flags: bool) -> Checked:
        """The principal of `token` (None: unknown or revoked) and, with `flags` and a valid token,
        the feature flags read in the same transaction."""
        mine = _Presented(token, flags, asyncio.get_running_loop().create_future())
        self._queue.append(mine)
        if self._drain is None:
            self._drain = asyncio.create_task(self._read_queued())
        return await mine.answered

    async def _read_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    answers = await to_thread.run_sync(self._read, batch)
                except Exception as exc:  # noqa: BLE001 - each request raises it, as when it read alone
                    for presented in batch:
                        if not presented.answered.done():
                            presented.answered.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the loop is closing), as the requests waiting
                    for presented in batch:
                        presented.answered.cancel()
                    raise
                for presented, answer in zip(batch, answers, strict=True):
                    if not presented.answered.done():
                        presented.answered.set_result(answer)
        finally:
            self._drain = None

    def _read(self, batch: list[_Presented]) -> list[Checked]:
        service = self._service
        with service.engine.begin() as connection:  # two statements: a session would cost as much again
            found = authenticate_many(connection, {p.token for p in batch}, service.clock())
            wanted = any(p.flags and p.token in found for p in batch)
            flags = service.flags_in(connection) if wanted else _NO_FLAGS
        return [(found.get(p.token), flags if p.flags else _NO_FLAGS) for p in batch]


_BY_LOOP: Final[WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Authentication]]] = WeakKeyDictionary()
_LOCK: Final = threading.Lock()  # loops of other threads (test clients) may ask at once


def authentication(service: GovernanceService) -> Authentication:
    """The token reader of `service` for the running event loop (its futures are settled on it)."""
    loop = asyncio.get_running_loop()
    with _LOCK:
        services = _BY_LOOP.setdefault(loop, {})
        found = services.get(id(service))
        if found is None or found._service is not service:
            found = services[id(service)] = Authentication(service)
        return found

"""Reads of concurrent requests, taken together: one worker-thread hop for all those queued.

A route's database read runs in a worker thread. Under concurrent clients the hop to the thread and
back (through the event loop, the GIL passed between them) cost more CPU than a short read itself.
Here a request queues what it wants read and awaits its answer on the event loop; one drain task per
loop reads every queued key in one worker thread (`read`, one transaction), then takes the keys
queued meanwhile. Every read starts after the requests it answers arrived. A failed read is raised
to each request of its batch, as when each read alone; the next batch reads again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Final, Generic, TypeVar
from weakref import WeakKeyDictionary

from anyio import to_thread

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class ReadTogether(Generic[Key, Value]):
    """The reads of one event loop's requests (see the module). Used from that loop only: its state
    needs no lock. `read(keys)` gives the value of each key found; the others are answered None."""

    def __init__(self, read: Callable[[Sequence[Key]], Mapping[Key, Value]]) -> None:
        self._read = read
        self._queue: list[tuple[Key, asyncio.Future[Value | None]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def get(self, key: Key) -> Value | None:
        """The value `read` gives for `key` (None: not found), read with the keys queued with it."""
        answered: asyncio.Future[Value | None] = asyncio.get_running_loop().create_future()
        self._queue.append((key, answered))
        if self._drain is None:
            self._drain = asyncio.create_task(self._read_queued())
        return await answered

    async def _read_queued(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    found = await to_thread.run_sync(self._read, list(dict.fromkeys(k for k, _ in batch)))
                except Exception as exc:  # noqa: BLE001 - each request raises it, as when it read alone
                    for _, answered in batch:
                        if not answered.done():
                            answered.set_exception(exc)
                    continue
                except BaseException:  # cancelled (the loop is closing), as the requests waiting
                    for _, answered in batch:
                        answered.cancel()
                    raise
                for key, answered in batch:
                    if not answered.done():
                        answered.set_result(found.get(key))
        finally:
            self._drain = None


_Readers = dict[tuple[int, str], tuple[object, ReadTogether[Any, Any]]]
_BY_LOOP: Final[WeakKeyDictionary[asyncio.AbstractEventLoop, _Readers]] = WeakKeyDictionary()
_LOCK: Final = threading.Lock()  # loops of other threads (test clients) may ask at once


def read_together(
    owner: object, name: str, read: Callable[[Sequence[Key]], Mapping[Key, Value]]
) -> ReadTogether[Key, Value]:
    """The `name` reads of `owner` (a service) for the running event loop, made with `read` at first
    use (its futures are settled on that loop; other loops are as other processes)."""
    loop = asyncio.get_running_loop()
    with _LOCK:
        readers = _BY_LOOP.setdefault(loop, {})
        found = readers.get((id(owner), name))
        if found is None or found[0] is not owner:
            found = readers[(id(owner), name)] = (owner, ReadTogether(read))
        return found[1]

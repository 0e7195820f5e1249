"""`api.together.ReadTogether`: the keys of concurrent callers read in one call, each caller answered
its own value; a failed read fails the callers of its batch only, the next batch reads again."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from powerx_governance.api.together import ReadTogether


class _Store:
    """A read that records the keys of each call, and fails the calls naming `failing`."""

    def __init__(self, failing: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.failing = failing

    def read(self, keys: Sequence[int]) -> Mapping[int, str]:
        self.calls.append(list(keys))
        if self.failing in keys:
            raise RuntimeError("the store failed")
        return {key: f"value {key}" for key in keys if key % 10 != 0}  # multiples of 10: not found


def test_concurrent_callers_share_reads_and_get_their_own_values() -> None:
    store = _Store()

    async def callers() -> list[str | None]:
        reads = ReadTogether(store.read)
        return await asyncio.gather(*(reads.get(key) for key in [1, 2, 10, 2, 3]))

    assert asyncio.run(callers()) == ["value 1", "value 2", None, "value 2", "value 3"]
    assert store.calls == [[1, 2, 10, 3]]  # one read, each key once


def test_a_failed_read_fails_its_batch_only() -> None:
    store = _Store(failing=7)

    async def callers() -> tuple[list[str | BaseException | None], str | None]:
        reads = ReadTogether(store.read)
        first = await asyncio.gather(reads.get(7), reads.get(8), return_exceptions=True)
        return list(first), await reads.get(8)

    first, later = asyncio.run(callers())
    assert [type(answer) for answer in first] == [RuntimeError, RuntimeError]
    assert later == "value 8"
    assert store.calls == [[7, 8], [8]]

"""Long id lists in bounded pieces: `IN (…)` lists and bulk writes stay within what the stores accept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

CHUNK: Final = 5000


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """`items` in consecutive slices of at most `size`."""
    for start in range(0, len(items), size):
        yield items[start : start + size]

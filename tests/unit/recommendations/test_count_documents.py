"""`CountDocuments` makes the text each driver conversion makes of a tenant's counts, whole."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from powerx_governance.recommendations.store import CountDocuments

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # PostgreSQL's COPY text
CONVERSIONS: dict[str, Callable[[dict[str, int]], Any]] = {
    "json.dumps": json.dumps,  # SQLAlchemy's JSON bind processor on SQLite
    "compact": _COMPACT,
    "indented": lambda counts: json.dumps(counts, indent=2),  # learns nothing: converted whole
    "not text": dict,
}
names = st.sampled_from(["critical", "high", "medium", "low", "none", "upgrade_now"]) | st.text(max_size=8)
counts = st.dictionaries(names, st.integers(min_value=-3, max_value=60), max_size=7)


@given(st.lists(counts, min_size=1, max_size=30))
def test_each_document_is_what_the_conversion_makes_of_it_sorted_without_zeros(
    documents: list[dict[str, int]],
) -> None:
    for convert in CONVERSIONS.values():
        build = CountDocuments(convert)
        for document in documents:
            assert build(document) == convert({k: n for k, n in sorted(document.items()) if n})


@given(counts, st.integers(min_value=0, max_value=6))
def test_a_document_made_again_in_another_key_order_or_after_a_change_is_made_anew(
    document: dict[str, int], at: int
) -> None:
    for convert in CONVERSIONS.values():
        build = CountDocuments(convert)
        build(document)
        reordered = dict(reversed(document.items()))
        assert build(reordered) == convert({k: n for k, n in sorted(document.items()) if n})
        changed = {**document, "high": document.get("high", 0) + at}
        assert build(changed) == convert({k: n for k, n in sorted(changed.items()) if n})

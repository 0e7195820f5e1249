"""Time-ordered ids: UUID version 7 texts, increasing within a call and with the clock, never repeated."""

from __future__ import annotations

import uuid

import pytest

from powerx_governance.db import ordered_ids
from powerx_governance.db.ordered_ids import time_ordered_id, time_ordered_ids


def test_ids_are_version_7_uuid_texts_in_increasing_order() -> None:
    ids = time_ordered_ids(5000)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids[:50] + ids[-50:]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_the_time_leads_and_the_count_carries_into_rand_a(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ordered_ids, "_milliseconds", lambda: 0x0123_4567_89AB)
    monkeypatch.setattr(ordered_ids, "_entropy", lambda size: ((1 << 73) - 2 << 7).to_bytes(size, "big"))
    first, second, third = time_ordered_ids(3)
    assert first == "01234567-89ab-77ff-bfff-fffffffffffe"
    assert second == "01234567-89ab-77ff-bfff-ffffffffffff"
    assert third == "01234567-89ab-7800-8000-000000000000"  # rand_b full: carried into rand_a


def test_later_ids_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_764_000_000_000]
    monkeypatch.setattr(ordered_ids, "_milliseconds", lambda: now[0])
    earlier = time_ordered_ids(3)
    now[0] += 1
    assert all(time_ordered_id() > each for each in earlier)


@pytest.mark.parametrize("below_carry", [0, 1, 2, 700, 5000])
def test_each_id_is_the_uuid_of_the_time_and_its_count(
    below_carry: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each id, whether or not the count carries into rand_a within the call (the text of the high bits
    is made once per run of ids that share them), is the UUID text of time, version, count and variant."""
    milliseconds = 0x0193_2F1E_5A07
    start = (0x5A5 << 62) - below_carry  # rand_a 0x5a4, below_carry ids before it carries into 0x5a5
    monkeypatch.setattr(ordered_ids, "_milliseconds", lambda: milliseconds)
    monkeypatch.setattr(ordered_ids, "_entropy", lambda size: (start << 7).to_bytes(size, "big"))
    low = (1 << 62) - 1
    expected = [
        str(uuid.UUID(int=milliseconds << 80 | 7 << 76 | (n >> 62) << 64 | 2 << 62 | n & low))
        for n in range(start, start + 3000)
    ]
    assert time_ordered_ids(3000) == expected

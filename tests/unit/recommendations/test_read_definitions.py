"""The read path's single definitions: the lister's cursor, tag selection, "past SLA"."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerx_governance.db.rows import MAX_ID
from powerx_governance.domain import tags_match
from powerx_governance.recommendations.model import UNRESOLVED, RecommendationState, past_sla
from powerx_governance.recommendations.queries import (
    Cursor,
    CursorError,
    ListOrder,
    decode_cursor,
    encode_cursor,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@given(
    order=st.sampled_from(ListOrder),
    priority=st.integers(0, 100),
    rec_id=st.integers(1, MAX_ID),
)
def test_a_cursor_reads_back_as_made(order: ListOrder, priority: int, rec_id: int) -> None:
    cursor = Cursor(order, priority, rec_id)
    assert decode_cursor(encode_cursor(cursor)) == cursor


def test_the_api_cursor_keeps_its_format() -> None:
    assert encode_cursor(Cursor(ListOrder.PRIORITY, 97, 12)) == _b64([97, 12])
    assert decode_cursor(_b64([97, 12])) == Cursor(ListOrder.PRIORITY, 97, 12)
    assert decode_cursor(_b64([97, 12, "priority_newest"])).order is ListOrder.PRIORITY_NEWEST


@pytest.mark.parametrize(
    "text",
    ["", "not base64!", _b64(5), _b64([1]), _b64([1, 2, "sideways"]), _b64([1, 2, "priority", 4]),
     _b64([101, 1]), _b64([50, 0]), _b64([50, MAX_ID + 1]), _b64({"a": 1, "b": 2})],
)  # fmt: skip
def test_anything_else_is_a_cursor_error(text: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(text)


tags = st.frozensets(st.sampled_from(["finance", "eu", "retail", "beta"]), max_size=4)


@given(wanted=tags, carried=tags)
def test_tags_match_selects_on_one_shared_tag_or_no_selection(
    wanted: frozenset[str], carried: frozenset[str]
) -> None:
    assert tags_match(wanted, carried) is (not wanted or bool(wanted & carried))
    assert tags_match((), carried)


@pytest.mark.parametrize("state", list(RecommendationState))
def test_past_sla_is_an_unresolved_recommendation_whose_deadline_passed(state: RecommendationState) -> None:
    unresolved = state.value in UNRESOLVED
    assert past_sla(state.value, NOW - timedelta(seconds=1), NOW) is unresolved
    assert not past_sla(state.value, NOW, NOW)  # due now is not yet past
    assert not past_sla(state.value, NOW + timedelta(hours=1), NOW)
    assert not past_sla(state.value, None, NOW)

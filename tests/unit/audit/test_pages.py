"""The fast row hashing of `audit.pages` against the chain's own definition (`chain.canonical`).

Rows are built as each driver hands them to verify: SQLite gives SQLAlchemy's text for a naive
UTC time and the JSON text SQLAlchemy stored (`json.dumps`); PostgreSQL gives the timestamps
already formatted by `to_char` and jsonb's own text form (keys reordered, spaces added).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from powerx_governance.audit.chain import GENESIS, SCHEMA, canonical, chain_hash
from powerx_governance.audit.model import rfc3339
from powerx_governance.audit.pages import HASH, ChainWalk, Raw, canonical_row, row_hash

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_OBJECTS = st.dictionaries(_TEXT, _JSON, max_size=5)
_MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(9999, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def _fields(draw: st.DrawFn) -> dict[str, Any]:
    optional = st.none() | _TEXT.filter(bool)
    return {
        "schema": SCHEMA,
        "event_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)),
        "occurred_at": draw(_MOMENTS),
        "recorded_at": draw(_MOMENTS),
        "tenant_uuid": draw(optional),
        "correlation_id": draw(optional),
        "source": draw(_TEXT.filter(bool)),
        "operation": draw(_TEXT.filter(bool)),
        "resource_type": draw(_TEXT.filter(bool)),
        "resource_id": draw(optional),
        "outcome": draw(st.sampled_from(["success", "failure"])),
        "severity": draw(st.sampled_from(["info", "warning", "critical"])),
        "actor": draw(_TEXT.filter(bool)),
        "changes": draw(
            st.fixed_dictionaries({}, optional={"before": _OBJECTS | st.none(), "after": _OBJECTS})
        ),
        "meta": draw(_OBJECTS),
    }


def _pg_jsonb_text(value: Any) -> str:
    """jsonb's text form: keys shortest first, then bytewise, with spaces (not the canonical order)."""

    def order(item: Any) -> Any:
        if isinstance(item, dict):
            keys = sorted(item, key=lambda k: (len(k.encode()), k.encode()))
            return {k: order(item[k]) for k in keys}
        if isinstance(item, list):
            return [order(v) for v in item]
        return item

    return json.dumps(order(value), ensure_ascii=False)


def _row(fields: dict[str, Any], prev_hash: str, backend: str, seq: int = 1) -> tuple[Any, ...]:
    """A page row of a record of `fields` chained after `prev_hash`, as the backend's driver returns it."""
    if backend == "sqlite":
        stamps = [
            fields[k].replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            for k in ("occurred_at", "recorded_at")
        ]
        changes, meta = json.dumps(fields["changes"]), json.dumps(fields["meta"])
    else:
        stamps = [rfc3339(fields[k]) for k in ("occurred_at", "recorded_at")]
        changes, meta = _pg_jsonb_text(fields["changes"]), _pg_jsonb_text(fields["meta"])
    hashed = fields | {k: rfc3339(fields[k]) for k in ("occurred_at", "recorded_at")}
    plain = [fields[k] for k in ("tenant_uuid", "correlation_id", "source", "operation", "resource_type")]
    rest = [fields[k] for k in ("resource_id", "outcome", "severity", "actor")]
    digest = chain_hash(prev_hash, hashed)
    return (seq, fields["event_id"], *stamps, *plain, *rest, changes, meta, prev_hash, digest)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    return _fields(draw)


@settings(max_examples=150, deadline=None)
@given(events(), st.sampled_from(["sqlite", "postgresql"]))
def test_the_fast_canonical_form_is_the_chains_byte_for_byte(fields: dict[str, Any], backend: str) -> None:
    row = _row(fields, GENESIS, backend)
    expected = canonical(fields | {k: rfc3339(fields[k]) for k in ("occurred_at", "recorded_at")})
    assert canonical_row(row, SCHEMA) == expected
    assert row_hash(row, SCHEMA) == row[HASH]


@settings(max_examples=60, deadline=None)
@given(st.lists(events(), min_size=1, max_size=6), st.sampled_from(["sqlite", "postgresql"]), st.data())
def test_the_page_loop_accepts_the_chain_and_names_the_first_changed_record(
    chain: list[dict[str, Any]], backend: str, data: st.DataObject
) -> None:
    rows: list[Raw] = []
    prev = GENESIS
    for seq, fields in enumerate(chain, start=1):
        rows.append(_row(fields, prev, backend, seq))
        prev = rows[-1][HASH]
    walk = ChainWalk(GENESIS, (len(rows), prev), SCHEMA)
    assert walk.follow(_pages(rows)) is None
    assert walk.checked == len(rows)

    bad = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.sampled_from([1, 4, 6, 12, 13, 14, 2]))
    tampered = list(rows[bad])
    tampered[column] = _changed(tampered[column], column)
    rows[bad] = tuple(tampered)
    walk = ChainWalk(GENESIS, (len(rows), prev), SCHEMA)
    found = walk.follow(_pages(rows))
    assert found is not None
    assert (found[0][0], found[1], walk.checked) == (bad + 1, "content", bad)


def _pages(rows: list[Raw]) -> Generator[list[Raw]]:
    """The rows in two pages (the walk carries its state from one page to the next)."""
    yield rows[:2]
    if rows[2:]:
        yield rows[2:]


def _changed(value: Any, column: int) -> Any:
    if column in (13, 14):
        decoded = json.loads(value)
        return json.dumps(
            decoded | {"tampered": True} if isinstance(decoded, dict) else {"tampered": decoded}
        )
    if column == 2:
        moment = datetime.fromisoformat(value.removesuffix("Z")) + timedelta(microseconds=1)
        return moment.isoformat(sep=" ", timespec="microseconds")
    return "x" if value is None else f"{value}x"

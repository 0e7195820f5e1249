"""Fail-closed OSV intake (DESIGN §7): repair what has one meaning, salvage the rest, never drop."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from powerx_governance.catalog.osv_intake import read_advisory, repair_timestamp
from powerx_governance.policy.matching import read_affected
from powerx_governance.versioning.semver import parse_version, read_version

PLUGIN = "com.powerx.plugins.crm"


def _osv(*affected: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "PXSA-T", **fields, "affected": list(affected)}


def _entry(
    *ranges: list[dict[str, Any]], versions: list[Any] | None = None, name: str = PLUGIN
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "package": {"ecosystem": "PowerX", "name": name},
        "ranges": [{"type": "SEMVER", "events": events} for events in ranges],
    }
    if versions is not None:
        entry["versions"] = versions
    return entry


def _affects(raw: dict[str, Any], version: str) -> bool:
    intake = read_advisory(raw, source="t", record="r")
    assert intake.advisory is not None
    return read_affected(intake.advisory).specs[PLUGIN].affects(parse_version(version))


def test_date_only_and_zoneless_times_are_midnight_utc_with_a_warning() -> None:
    intake = read_advisory(
        _osv(_entry([{"introduced": "0"}]), published="2020-12-21", modified="2021-01-02T03:04:05"),
        source="feed.json",
        record="advisories[0]",
    )
    assert intake.advisory is not None
    assert intake.advisory.published == datetime(2020, 12, 21, tzinfo=UTC)
    assert intake.advisory.modified == datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert [(w.record, w.field) for w in intake.warnings] == [("PXSA-T", "published"), ("PXSA-T", "modified")]
    assert not intake.problems


def test_repair_timestamp_leaves_complete_and_garbage_times_alone() -> None:
    assert repair_timestamp("2025-01-01T00:00:00Z") is None
    assert repair_timestamp("yesterday") is None
    assert repair_timestamp(" 2025-01-01 ") == "2025-01-01T00:00:00Z"


def test_partial_versions_are_padded_as_osv_scanner_and_masterminds_do() -> None:
    assert [read_version(t)[0].text for t in ("1", "1.2", "v1.2.3", "01.2.3", "1.2-rc.1")] == [
        "1.0.0",
        "1.2.0",
        "1.2.3",
        "1.2.3",
        "1.2.0-rc.1",
    ]
    assert read_version("1.2.3") == (parse_version("1.2.3"), False)


def test_osv_scanner_style_events_keep_their_meaning() -> None:
    fixed_one = _osv(_entry([{"introduced": "0"}, {"fixed": "1"}]))
    assert _affects(fixed_one, "0.2.0")
    assert not _affects(fixed_one, "1.0.0")
    last = _osv(_entry([{"introduced": "0"}, {"last_affected": "1"}]))
    assert _affects(last, "1.0.0")
    assert not _affects(last, "1.0.1")
    never = _osv(_entry([{"introduced": "0"}, {"fixed": "0"}]))  # fixed at the beginning: nothing affected
    assert not _affects(never, "0.0.1")


def test_numbers_where_versions_belong_are_read_as_versions() -> None:
    raw = _osv(_entry([{"introduced": 0}, {"fixed": 2}], versions=[1]))
    intake = read_advisory(raw, source="t", record="r")
    assert intake.advisory is not None
    assert not intake.problems
    assert _affects(raw, "1.0.0")
    assert not _affects(raw, "2.0.0")
    assert any("the number 2" in w.error for w in intake.warnings)


def test_an_unreadable_fixed_event_costs_only_itself_and_fails_closed() -> None:
    raw = _osv(_entry([{"introduced": "1.0.0"}, {"fixed": "pear"}]))
    intake = read_advisory(raw, source="t", record="r")
    assert [p.field for p in intake.problems] == ["affected[0].ranges[0].events[1].fixed"]
    assert _affects(raw, "9.9.9")  # the range stays open rather than closing early
    assert not _affects(raw, "0.9.0")


def test_a_range_without_a_readable_start_is_left_out_and_the_other_entries_apply() -> None:
    raw = _osv(
        _entry([{"introduced": "x.y.z"}, {"fixed": "1.0.0"}]),
        _entry([{"introduced": "2.0.0"}, {"fixed": "2.1.0"}]),
    )
    intake = read_advisory(raw, source="t", record="r")
    assert not intake.unreadable_plugins
    assert _affects(raw, "2.0.5")
    assert not _affects(raw, "0.5.0")
    assert {p.field for p in intake.problems} == {
        "affected[0].ranges[0].events[0].introduced",
        "affected[0].ranges[0]",
    }


def test_one_bad_listed_version_costs_only_itself() -> None:
    raw = _osv(_entry(versions=["banana", "0", "1.0.0"]))
    assert _affects(raw, "1.0.0")
    assert _affects(raw, "0.0.0")
    intake = read_advisory(raw, source="t", record="r")
    assert [p.field for p in intake.problems] == ["affected[0].versions[0]"]


def test_nothing_readable_for_a_plugin_affects_every_version_and_names_the_advisory() -> None:
    raw = _osv(
        _entry([{"introduced": "banana"}, {"fixed": "pear"}]), _entry([{"introduced": "0"}], name="other")
    )
    intake = read_advisory(raw, source="t", record="r")
    assert set(intake.unreadable_plugins) == {PLUGIN}
    assert any(p.field == "affected" and PLUGIN in p.error for p in intake.problems)
    assert _affects(raw, "0.0.1")
    assert _affects(raw, "99.0.0")


def test_a_bad_top_level_field_is_left_out_and_the_advisory_kept() -> None:
    raw = _osv(_entry([{"introduced": "0"}]), published="yesterday", aliases="CVE-1", severity="high")
    intake = read_advisory(raw, source="t", record="r")
    assert intake.advisory is not None
    assert intake.advisory.published is None
    assert intake.advisory.aliases == ()
    assert {p.field for p in intake.problems} >= {"published", "aliases", "severity"}


def test_a_record_without_an_id_gets_a_stable_one_from_its_content() -> None:
    raw = _osv(_entry([{"introduced": "0"}]))
    del raw["id"]
    first = read_advisory(raw, source="t", record="r").advisory
    second = read_advisory(dict(raw), source="t", record="r").advisory
    assert first is not None
    assert second is not None
    assert first.id == second.id
    assert first.id.startswith("UNIDENTIFIED-")


def test_a_range_that_is_not_shaped_like_one_counts_as_lost() -> None:
    raw = _osv({"package": {"ecosystem": "PowerX", "name": PLUGIN}, "ranges": ["nonsense"]})
    intake = read_advisory(raw, source="t", record="r")
    assert set(intake.unreadable_plugins) == {PLUGIN}


def test_a_record_that_is_not_a_mapping_is_an_error() -> None:
    intake = read_advisory(["not", "a", "record"], source="t", record="advisories[3]")
    assert intake.advisory is None
    assert intake.problems[0].record == "advisories[3]"


_JUNK = st.one_of(
    st.text(max_size=8),
    st.integers(-3, 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["0", "1", "1.2", "v1.2.3", "1.0.0-rc.1", "0.0.0-0"]),
)
_EVENT = st.dictionaries(
    st.sampled_from(["introduced", "fixed", "last_affected", "limit"]), _JUNK, max_size=2
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(events=st.lists(_EVENT, max_size=4), versions=st.lists(_JUNK, max_size=3))
def test_no_junk_in_ranges_or_versions_drops_an_advisory_or_calls_it_clean_silently(
    events: list[dict[str, Any]], versions: list[Any]
) -> None:
    raw = _osv(_entry(events, versions=versions), published="2024-02-29")
    intake = read_advisory(raw, source="t", record="r")
    assert intake.advisory is not None
    spec = read_affected(intake.advisory).specs[PLUGIN]
    if spec.unreadable is None and not spec.ranges and not spec.versions:
        assert not intake.problems  # an empty spec is only ever what the record really said

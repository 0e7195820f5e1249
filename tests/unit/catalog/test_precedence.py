"""Which record is in force when the catalog source and the push source both hold one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from powerx_governance.catalog.precedence import (
    Origin,
    advisory_in_force,
    merge_plugin,
    retired_by_catalog,
)
from powerx_governance.catalog_records import ACTIVE, Advisory, Lifecycle, Plugin, Release
from powerx_governance.domain import LifecycleStatus

T0 = datetime(2026, 11, 1, tzinfo=UTC)
CRM = "com.powerx.plugins.crm"


def _advisory(modified: datetime | None, withdrawn: datetime | None = None) -> Advisory:
    return Advisory(id="PXSA-1", modified=modified, withdrawn=withdrawn)


def test_the_later_modified_wins_and_a_tie_goes_to_the_catalog() -> None:
    older, newer = _advisory(T0), _advisory(T0 + timedelta(hours=1))
    assert advisory_in_force(older, newer) == (newer, Origin.PUSH)
    assert advisory_in_force(newer, older) == (newer, Origin.CATALOG)
    assert advisory_in_force(older, _advisory(T0)) == (older, Origin.CATALOG)
    assert advisory_in_force(None, older) == (older, Origin.PUSH)
    assert advisory_in_force(older, None) == (older, Origin.CATALOG)
    assert advisory_in_force(None, None) is None


def test_a_record_without_modified_is_the_oldest() -> None:
    undated, dated = _advisory(None), _advisory(T0)
    assert advisory_in_force(undated, dated) == (dated, Origin.PUSH)
    assert advisory_in_force(dated, undated) == (dated, Origin.CATALOG)
    assert advisory_in_force(undated, _advisory(None)) == (undated, Origin.CATALOG)


def test_only_a_catalog_withdrawal_at_least_as_new_as_the_push_retires_it() -> None:
    pushed = _advisory(T0)
    assert retired_by_catalog(_advisory(T0, withdrawn=T0), pushed)
    assert not retired_by_catalog(_advisory(T0 - timedelta(seconds=1), withdrawn=T0), pushed)
    assert not retired_by_catalog(_advisory(T0 + timedelta(days=1)), pushed)
    assert not retired_by_catalog(None, pushed)


def _release(
    version: str, *, changelog: str | None = None, yanked: bool = False, lifecycle: Lifecycle = ACTIVE
) -> Release:
    return Release(version=version, changelog=changelog, yanked=yanked, lifecycle=lifecycle)


def test_the_catalog_wins_a_release_version_unless_the_push_yanks_or_revokes_it() -> None:
    catalog = Plugin(
        plugin_id=CRM, name="CRM", releases=(_release("2.6.0"), _release("2.6.1", changelog="c"))
    )
    pushed = [_release("2.6.1+ci.7", changelog="p"), _release("2.7.0")]
    merged = merge_plugin(CRM, catalog, pushed)
    assert [(r.version, r.changelog) for r in merged.releases] == [
        ("2.6.0", None),
        ("2.6.1", "c"),
        ("2.7.0", None),
    ]
    assert merged.name == "CRM"
    yanked = merge_plugin(CRM, catalog, [_release("2.6.1", yanked=True)])
    assert [r.yanked for r in yanked.releases] == [False, True]
    revoked = Lifecycle(status=LifecycleStatus.REVOKED)
    assert merge_plugin(CRM, catalog, [_release("2.6.1", lifecycle=revoked)]).releases[1].lifecycle == revoked
    assert merge_plugin(CRM, None, pushed).releases == tuple(pushed)


VERSIONS = st.sampled_from(["1.0.0", "1.0.1", "1.1.0", "2.0.0-security.1", "2.0.0"])


@given(st.lists(VERSIONS, unique=True), st.lists(VERSIONS, unique=True), st.lists(st.booleans()))
def test_a_merged_plugin_holds_each_version_of_either_source_once(
    ours: list[str], theirs: list[str], yanks: list[bool]
) -> None:
    catalog = Plugin(plugin_id=CRM, releases=tuple(_release(v) for v in ours))
    pushed = [_release(v, yanked=(yanks[i] if i < len(yanks) else False)) for i, v in enumerate(theirs)]
    merged = [r.version for r in merge_plugin(CRM, catalog, pushed).releases]
    assert sorted(merged) == sorted(set(ours) | set(theirs))

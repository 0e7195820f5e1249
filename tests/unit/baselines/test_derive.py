"""Derived baselines and drift (pure): eligibility per member from the policy engine, advisories,
conflicts naming who splits, and drift positions against versions and constraints."""

from __future__ import annotations

from powerx_governance.baselines.derive import derive, drift, explicit_baseline, members_of, runners_by_plugin
from powerx_governance.baselines.model import Baseline, BaselineStatus, DriftStatus, ExplicitBaseline
from powerx_governance.inventory.models import TenantManifest
from powerx_governance.policy.engine import PolicyEngine
from tests.unit.policy.builders import CRITICAL, HIGH, PLUGIN, advisory, build_engine, release, tenant


def _baseline(engine: PolicyEngine, *manifests: TenantManifest) -> Baseline:
    running = runners_by_plugin(members_of(engine, manifests))[PLUGIN]
    return derive(engine, engine.index.plugins[PLUGIN], running, {})


def test_the_highest_release_eligible_and_clean_for_every_member() -> None:
    engine = build_engine(
        [
            release("1.0.0"),
            release("1.1.0"),
            release("1.2.0", min_core="1.22.0"),
            release("1.3.0", channel="beta"),
        ],
        [advisory("PXSA-1", [{"introduced": "1.1.0"}, {"fixed": "1.2.0"}], vector=HIGH)],
    )
    old, new = (
        tenant("1.0.0", core="1.20.0", tenant_uuid="old"),
        tenant("1.0.0", core="1.24.0", tenant_uuid="new"),
    )
    baseline = _baseline(engine, old, new)
    # 1.2.0 needs core 1.22 (old is on 1.20), 1.3.0 is beta, 1.1.0 carries an advisory both can avoid
    assert (baseline.status, baseline.spec) == (BaselineStatus.SET, "1.0.0")
    alone = _baseline(engine, new)
    assert alone.spec == "1.2.0"


def test_a_conflict_names_the_subgroups_and_the_constraint() -> None:
    engine = build_engine([release("1.0.0", max_core="1.99.99"), release("2.0.0", min_core="2.0.0")])
    one, two = (
        tenant("1.0.0", core="1.24.0", tenant_uuid="one"),
        tenant("2.0.0", core="2.1.0", tenant_uuid="two"),
    )
    baseline = _baseline(engine, one, two)
    assert baseline.status is BaselineStatus.CONFLICT
    assert [(s.version, s.members) for s in baseline.subgroups] == [("2.0.0", ("two",)), ("1.0.0", ("one",))]
    assert [(s.version, s.constraint, s.members) for s in baseline.splits] == [
        ("2.0.0", "needs core >= 2.0.0 (min_core), members run core 1.24.0", ("one",)),
        ("1.0.0", "allows core <= 1.99.99 (max_core), members run core 2.1.0", ("two",)),
    ]


def test_the_matrix_and_the_channel_split_members_too() -> None:
    matrix = [{"host": "px.host.v2", "plugin": PLUGIN, "min_version": "1.1.0", "action": "block"}]
    engine = build_engine(
        [release("1.0.0"), release("1.1.0"), release("1.2.0", channel="lts")], matrix=matrix
    )
    v1, v2 = tenant("1.0.0", core="1.24.0", tenant_uuid="v1"), tenant("1.0.0", core="2.0.1", tenant_uuid="v2")
    lts = tenant("1.2.0", core="1.24.0", channel="lts", tenant_uuid="lts")
    baseline = _baseline(engine, v1, v2, lts)
    constraints = {s.constraint for s in baseline.splits}
    assert "is blocked on px.host.v2 by the compatibility matrix" in constraints
    assert "is on the stable channel, which members following lts do not take" in constraints


def test_when_no_release_avoids_everything_the_least_exposed_shared_one_is_the_baseline() -> None:
    engine = build_engine(
        [release("1.0.0"), release("1.1.0")],
        [
            advisory("PXSA-A", [{"introduced": "0"}, {"fixed": "1.1.0"}], vector=CRITICAL),
            advisory("PXSA-B", [{"introduced": "1.1.0"}], vector=HIGH),
        ],
    )
    baseline = _baseline(engine, tenant("1.0.0", tenant_uuid="a"), tenant("1.1.0", tenant_uuid="b"))
    assert (baseline.status, baseline.spec) == (BaselineStatus.SET, "1.1.0")
    assert "no eligible release avoids PXSA-B" in baseline.reason


def test_drift_against_a_version_and_a_constraint() -> None:
    engine = build_engine([release("1.0.0"), release("1.1.0"), release("2.0.0")])
    members = members_of(
        engine,
        [
            tenant("1.0.0", tenant_uuid="low"),
            tenant("1.1.0", tenant_uuid="mid"),
            tenant("2.0.0", tenant_uuid="high"),
        ],
    )
    running = runners_by_plugin(members)[PLUGIN]
    plugin = engine.index.plugins[PLUGIN]
    ids = [m.tenant_uuid for m in members] + ["none"]
    exact = explicit_baseline(PLUGIN, ExplicitBaseline("1.1.0", "pin", 1, "ops"))
    found = {(d.tenant_uuid, d.status) for d in drift("g", exact, plugin, ids, running)}
    assert found == {("low", DriftStatus.BEHIND), ("high", DriftStatus.AHEAD), ("none", DriftStatus.MISSING)}
    ranged = explicit_baseline(PLUGIN, ExplicitBaseline("^1.1.0", "1.x from 1.1", 2, "ops"))
    found = {(d.tenant_uuid, d.status) for d in drift("g", ranged, plugin, ids, running)}
    assert found == {("low", DriftStatus.BEHIND), ("high", DriftStatus.AHEAD), ("none", DriftStatus.MISSING)}
    spread = explicit_baseline(PLUGIN, ExplicitBaseline("*", "accept the spread", 3, "ops"))
    assert [d.status for d in drift("g", spread, plugin, ids, running)] == [DriftStatus.MISSING]

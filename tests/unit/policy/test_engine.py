"""DESIGN §5, clause by clause, through the pure policy engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from powerx_governance.domain import Action, Enforcement, LifecycleStatus, Severity, UpdateType
from powerx_governance.errors import InputError
from powerx_governance.inventory.models import Installation
from powerx_governance.policy.loader import rules_from_data
from tests.unit.policy.builders import (
    CRITICAL,
    HIGH,
    LOW,
    MEDIUM,
    NOW,
    advisory,
    build_engine,
    evaluate,
    release,
    tenant,
    verdict_for,
)

LINE = [release(v) for v in ("1.0.0", "1.0.1", "1.0.2", "1.1.0")]


# §5.1 affects ---------------------------------------------------------------------------------


def test_several_intervals_pick_the_fix_on_the_installed_line() -> None:
    releases = [release(v) for v in ("1.2.4", "1.2.5", "1.3.0", "1.3.1", "1.3.2")]
    adv = advisory(
        "A",
        ranges=[[{"introduced": "1.0.0"}, {"fixed": "1.2.5"}], [{"introduced": "1.3.0"}, {"fixed": "1.3.2"}]],
    )
    assert evaluate(releases, [adv], "1.2.4").target_version == "1.2.5"
    assert evaluate(releases, [adv], "1.3.1").target_version == "1.3.2"
    assert (
        evaluate(releases, [adv], "1.2.5").action is Action.NONE
        or evaluate(releases, [adv], "1.2.5").risk_level is Severity.NONE
    )


def test_events_out_of_order_are_walked_in_version_order() -> None:
    ordered = advisory("A", [{"introduced": "1.0.0"}, {"fixed": "1.1.0"}])
    shuffled = advisory("A", [{"fixed": "1.1.0"}, {"introduced": "1.0.0"}])
    for installed in ("1.0.0", "1.0.1", "1.0.2"):
        assert evaluate(LINE, [ordered], installed) == evaluate(LINE, [shuffled], installed)
    assert evaluate(LINE, [shuffled], "1.0.1").target_version == "1.1.0"


def test_last_affected_is_inclusive() -> None:
    adv = advisory("A", [{"introduced": "1.0.0"}, {"last_affected": "1.0.1"}])
    assert evaluate(LINE, [adv], "1.0.1").risk_level is Severity.CRITICAL
    assert evaluate(LINE, [adv], "1.0.1").target_version == "1.0.2"
    assert evaluate(LINE, [adv], "1.0.2").risk_level is Severity.NONE


def test_enumerated_versions_only() -> None:
    adv = advisory("A", None, versions=["1.0.1"])
    assert evaluate(LINE, [adv], "1.0.1").target_version == "1.0.2"
    assert evaluate(LINE, [adv], "1.0.0").risk_level is Severity.NONE


def test_withdrawn_advisory_affects_nothing() -> None:
    adv = advisory("A", [{"introduced": "0"}], withdrawn="2026-01-01T00:00:00Z")
    verdict = evaluate(LINE, [adv], "1.0.0")
    assert verdict.risk_level is Severity.NONE
    assert verdict.advisories == ()


def test_introduced_without_closing_event_covers_every_later_version() -> None:
    adv = advisory("A", [{"introduced": "1.0.1"}])
    verdict = evaluate(LINE, [adv], "1.0.2")
    assert (verdict.action, verdict.target_version, verdict.risk_level) == (
        Action.REVIEW,
        None,
        Severity.CRITICAL,
    )
    assert verdict.advisories[0].unavoidable


# §5.2 severity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "database_specific", "expected"),
    [
        (
            [{"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}],
            {},
            Severity.CRITICAL,
        ),
        ([{"type": "CVSS_V3", "score": MEDIUM}], {}, Severity.MEDIUM),
        (
            [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
            {},
            Severity.CRITICAL,
        ),
        (
            [
                {"type": "CVSS_V3", "score": CRITICAL},
                {
                    "type": "CVSS_V4",
                    "score": "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
                },
            ],
            {},
            Severity.LOW,
        ),
        ([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/XX:Y"}], {"severity": "MODERATE"}, Severity.MEDIUM),
        ([{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:C/I:C/A:C"}], {}, Severity.HIGH),
        ([], {"severity": "critical"}, Severity.CRITICAL),
        ([], {}, Severity.MEDIUM),
    ],
    ids=["v3.0", "v3.1", "v4.0", "v4-over-v3", "malformed-then-label", "v2-has-no-critical", "label", "none"],
)
def test_severity_sources(
    severity: list[dict[str, str]], database_specific: dict[str, str], expected: Severity
) -> None:
    adv = advisory(
        "A",
        [{"introduced": "0"}, {"fixed": "1.0.1"}],
        vector=None,
        severity=severity,
        database_specific=database_specific,
    )
    verdict = evaluate(LINE, [adv], "1.0.0")
    assert verdict.risk_level is expected


def test_unknown_severity_says_so() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=None)
    verdict = evaluate(LINE, [adv], "1.0.0")
    assert verdict.advisories[0].cvss is None
    assert any("severity unknown" in r for r in verdict.reasons)


# §5.3 eligibility -----------------------------------------------------------------------------


def test_security_release_on_stable_is_an_ordinary_stable_release() -> None:
    releases = [release("1.3.0"), release("1.3.1-security.1"), release("1.3.1")]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.3.1-security.1"}])
    assert evaluate(releases, [adv], "1.3.0").target_version == "1.3.1-security.1"


def test_prerelease_on_beta_channel_is_out_of_reach_of_stable_tenants() -> None:
    releases = [release("1.0.0"), release("1.1.0-beta.1", channel="beta")]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.1.0-beta.1"}])
    stable = evaluate(releases, [adv], "1.0.0")
    beta = evaluate(releases, [adv], "1.0.0", channel="beta")
    assert (stable.action, stable.target_version) == (Action.REVIEW, None)
    assert (beta.action, beta.target_version) == (Action.UPGRADE_NOW, "1.1.0-beta.1")


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("lts", "1.4.1"),
        ("stable", "1.5.0"),
        ("beta", "1.6.0-beta.1"),
        ("alpha", "1.7.0-alpha.1"),
        ("dev", "1.8.0-dev.1"),
    ],
)
def test_channel_ladder_for_latest_version(channel: str, expected: str) -> None:
    releases = [
        release("1.4.0", channel="lts"),
        release("1.4.1", channel="lts"),
        release("1.5.0", channel="stable"),
        release("1.6.0-beta.1", channel="beta"),
        release("1.7.0-alpha.1", channel="alpha"),
        release("1.8.0-dev.1", channel="dev"),
    ]
    assert evaluate(releases, [], "1.4.0", channel=channel).latest_version == expected


def test_release_without_channel_is_stable() -> None:
    releases = [{"version": "1.0.0"}, {"version": "1.0.1"}]
    assert evaluate(releases, [], "1.0.0", channel="lts").latest_version is None
    assert evaluate(releases, [], "1.0.0").latest_version == "1.0.1"


def test_core_range_yanked_lifecycle_and_release_time() -> None:
    releases = [
        release("1.0.0"),
        release("1.0.1", min_core="1.24.0"),
        release("1.0.2", max_core="1.19.0"),
        release("1.0.3", yanked=True),
        release("1.0.4", lifecycle={"status": "sunset"}),
        release("1.0.5", lifecycle={"status": "revoked"}),
        release("1.0.6", released_at="2026-12-15T00:00:00Z"),
        release("1.0.7", lifecycle={"status": "deprecated"}),
    ]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(releases, [adv], "1.0.0", core="1.20.0")
    assert verdict.target_version == "1.0.7"
    assert evaluate(releases, [adv], "1.0.0", core="1.24.0").target_version == "1.0.1"


def test_matrix_block_warn_and_specificity() -> None:
    matrix = [
        {
            "host": "px.host.v1",
            "plugin": "com.powerx.plugins.*",
            "min_version": "1.0.1",
            "max_version": "1.0.2",
            "action": "block",
        },
        {
            "host": "px.host.v1",
            "plugin": "com.powerx.plugins.test",
            "min_version": "1.0.2",
            "max_version": "1.0.2",
            "action": "warn",
            "notes": "slow migration on v1 hosts",
        },
    ]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(LINE, [adv], "1.0.0", matrix=matrix)
    assert verdict.target_version == "1.0.2"
    assert verdict.compatibility == ("slow migration on v1 hosts",)
    other_host = evaluate(LINE, [adv], "1.0.0", matrix=matrix, core="2.1.0")
    assert other_host.target_version == "1.0.1"


def test_unmet_dependency_does_not_make_a_release_ineligible() -> None:
    releases = [
        release("1.0.0"),
        release("1.0.1", dependencies=[{"id": "com.powerx.plugins.base", "version": ">=2.0.0"}]),
    ]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(releases, [adv], "1.0.0")
    assert verdict.target_version == "1.0.1"
    assert verdict.target_dependencies == (("com.powerx.plugins.base", ">=2.0.0"),)


# §5.4 security target ---------------------------------------------------------------------------


def test_lowest_clean_release_is_the_target_and_latest_is_separate() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(LINE, [adv], "1.0.0")
    assert (verdict.target_version, verdict.latest_version, verdict.update_type) == (
        "1.0.1",
        "1.1.0",
        UpdateType.PATCH,
    )


def test_partial_target_lists_what_it_still_carries() -> None:
    releases = [release(v) for v in ("1.0.0", "1.0.1", "1.1.0", "1.2.0")]
    a = advisory("A", [{"introduced": "0"}, {"fixed": "1.1.0"}])
    b = advisory("B", [{"introduced": "1.1.0"}], vector=LOW)
    verdict = evaluate(releases, [a, b], "1.0.0")
    assert (verdict.target_version, verdict.partial, verdict.critical_patch) == ("1.1.0", True, True)
    carried = {f.id: f.in_target for f in verdict.advisories}
    assert carried == {"A": False}
    assert any("still carries B" in r for r in verdict.reasons)


def test_partial_target_ties_go_to_the_lowest_version() -> None:
    releases = [release(v) for v in ("1.0.0", "1.1.0", "1.2.0")]
    a = advisory("A", [{"introduced": "0"}, {"fixed": "1.1.0"}])
    b = advisory("B", [{"introduced": "1.1.0"}, {"fixed": "1.2.0"}], vector=LOW)
    c = advisory("C", [{"introduced": "1.2.0"}], vector=LOW)
    verdict = evaluate(releases, [a, b, c], "1.0.0")
    assert (verdict.target_version, verdict.partial) == ("1.1.0", True)


def test_no_release_less_exposed_is_blocked() -> None:
    releases = [release(v) for v in ("1.0.0", "1.1.0", "1.2.0")]
    advs = [
        advisory("A", [{"introduced": "0"}, {"fixed": "1.1.0"}], vector=MEDIUM),
        advisory("C", [{"introduced": "1.1.0"}, {"fixed": "1.2.0"}]),
        advisory("D", [{"introduced": "1.2.0"}], vector=HIGH),
    ]
    verdict = evaluate(releases, advs, "1.0.0")
    assert (verdict.action, verdict.target_version, verdict.risk_level) == (
        Action.BLOCKED,
        None,
        Severity.MEDIUM,
    )
    assert any("less exposed" in r for r in verdict.reasons)


def test_unavoidable_advisories_do_not_stop_fixing_avoidable_ones() -> None:
    advs = [
        advisory("A", [{"introduced": "0"}], vector=LOW),
        advisory("B", [{"introduced": "0"}, {"fixed": "1.0.2"}]),
    ]
    verdict = evaluate(LINE, advs, "1.0.0")
    assert (verdict.target_version, verdict.partial, verdict.critical_patch) == ("1.0.2", False, True)
    assert {f.id: f.unavoidable for f in verdict.advisories} == {"B": False, "A": True}


def test_cooldown_applies_to_latest_never_to_the_security_target() -> None:
    fresh = (NOW - timedelta(hours=2)).isoformat()
    releases = [release("1.0.0"), release("1.0.1", released_at=fresh), release("1.0.2", released_at=fresh)]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    rules = {"defaults": {"release_age": "72h"}}
    verdict = evaluate(releases, [adv], "1.0.0", rules=rules)
    assert verdict.target_version == "1.0.1"
    assert verdict.latest_version is None
    no_advisory = evaluate(releases, [], "1.0.0", rules=rules)
    assert no_advisory.action is Action.NONE


# §5.5-5.7 risk, critical patch, action ----------------------------------------------------------


def test_exploited_high_is_a_critical_patch_but_exploited_medium_is_not() -> None:
    high = advisory(
        "A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=HIGH, database_specific={"exploited": True}
    )
    medium = advisory(
        "A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=MEDIUM, database_specific={"exploited": True}
    )
    assert evaluate(LINE, [high], "1.0.0").critical_patch
    low = evaluate(LINE, [medium], "1.0.0")
    assert (low.critical_patch, low.action) == (False, Action.SCHEDULE)


@pytest.mark.parametrize(
    ("installed", "expected"),
    [("1.1.0", Action.SCHEDULE), ("1.0.2", Action.REVIEW), ("0.9.0", Action.REVIEW), ("1.1.1", Action.NONE)],
    ids=["patch-update", "minor-update", "major-update", "up-to-date"],
)
def test_non_security_updates(installed: str, expected: Action) -> None:
    verdict = evaluate([*LINE, release("0.9.0"), release("1.1.1")], [], installed)
    assert verdict.action is expected
    assert verdict.risk_level is Severity.NONE


def test_deprecated_installation_is_scheduled_even_for_a_minor_update() -> None:
    releases = [
        release("1.0.0", lifecycle={"status": "deprecated", "replacement": "com.powerx.plugins.next"}),
        release("1.1.0"),
    ]
    verdict = evaluate(releases, [], "1.0.0")
    assert (verdict.action, verdict.lifecycle, verdict.replacement) == (
        Action.SCHEDULE,
        LifecycleStatus.DEPRECATED,
        "com.powerx.plugins.next",
    )


def test_sunset_plugin_with_replacement_is_flagged_even_when_up_to_date() -> None:
    plugin = {"lifecycle": {"status": "sunset", "replacement": "com.powerx.plugins.next"}}
    verdict = evaluate([release("1.0.0")], [], "1.0.0", plugin=plugin)
    assert verdict.action is Action.SCHEDULE
    assert verdict.reportable
    assert any("replacement: com.powerx.plugins.next" in r for r in verdict.reasons)


def test_yanked_installed_release_is_flagged_as_revoked() -> None:
    releases = [release("1.0.0", yanked=True), release("1.0.1")]
    verdict = evaluate(releases, [], "1.0.0")
    assert (verdict.action, verdict.lifecycle) == (Action.SCHEDULE, LifecycleStatus.REVOKED)
    assert any("yanked" in r for r in verdict.reasons)


def test_deprecated_without_anywhere_to_go_is_reviewed() -> None:
    releases = [release("1.0.0", lifecycle={"status": "deprecated"})]
    assert evaluate(releases, [], "1.0.0").action is Action.REVIEW


def test_sunset_plugin_gets_no_upgrades() -> None:
    plugin = {"lifecycle": {"status": "sunset", "replacement": "com.powerx.plugins.next"}}
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(LINE, [adv], "1.0.0", plugin=plugin)
    assert (verdict.action, verdict.target_version) == (Action.REVIEW, None)
    assert verdict.replacement == "com.powerx.plugins.next"


def test_target_that_brings_a_new_advisory_says_so() -> None:
    a = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    b = advisory("B", [{"introduced": "1.0.1"}], vector=LOW)
    verdict = evaluate(LINE, [a, b], "1.0.0")
    assert verdict.target_version == "1.0.1"
    assert any("1.0.1 carries B, which 1.0.0 does not have" in r for r in verdict.reasons)


def test_unfixed_advisory_names_the_fix_out_of_reach() -> None:
    releases = [release("1.0.0"), release("1.0.1", min_core="1.30.0")]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(releases, [adv], "1.0.0", core="1.20.0")
    assert verdict.action is Action.REVIEW
    assert any("1.0.1 does but is out of reach" in r and "min_core 1.30.0" in r for r in verdict.reasons)


def test_priority_puts_security_first() -> None:
    critical = evaluate(LINE, [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])], "1.0.0")
    medium = evaluate(
        LINE, [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=MEDIUM)], "1.0.0"
    )
    unfixable = evaluate(LINE, [advisory("A", [{"introduced": "0"}])], "1.0.0")
    outdated = evaluate(LINE, [], "1.0.2")
    assert critical.priority > medium.priority > outdated.priority
    assert critical.priority > unfixable.priority
    assert all(0 <= v.priority <= 100 for v in (critical, medium, unfixable, outdated))


def test_weights_are_configurable() -> None:
    adv = [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=MEDIUM)]
    heavy = evaluate(LINE, adv, "1.0.0", rules={"risk_weights": {"cvss": 10.0, "version_lag": 0}})
    light = evaluate(LINE, adv, "1.0.0", rules={"risk_weights": {"cvss": 1.0, "version_lag": 0}})
    assert (heavy.priority, light.priority) == (53, 5)


def test_sla_deadline_starts_when_the_fix_became_available() -> None:
    published = "2026-11-20T00:00:00Z"
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}], published=published)
    verdict = evaluate(LINE, [adv], "1.0.0")
    assert verdict.sla_deadline == datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=72)
    ruled = evaluate(
        LINE,
        [adv],
        "1.0.0",
        rules={"rules": [{"id": "crit-24h", "risk_levels": ["critical"], "sla_hours": 24}]},
    )
    assert ruled.sla_deadline == datetime(2026, 11, 21, tzinfo=UTC)
    assert "crit-24h" in ruled.rule_ids


# rules, exemptions, enforcement -----------------------------------------------------------------


def test_rules_matched_by_labels_and_tenant_tags_fire_and_are_named() -> None:
    releases = [
        release("1.0.0"),
        release("1.0.1", labels={"security": "critical"}),
        release("1.1.0", channel="lts"),
    ]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    rules = {
        "rules": [
            {
                "id": "critical-security",
                "labels": {"security": "critical"},
                "sla_hours": 24,
                "notification": {"route": "security-oncall"},
            },
            {"id": "finance-enforce", "tenant_tags": ["finance"], "enforcement": "enforce"},
        ]
    }
    engine = build_engine(releases, [adv], rules=rules)
    finance = verdict_for(engine, tenant("1.0.0", tags=("finance",)))
    retail = verdict_for(engine, tenant("1.0.0", tags=("retail",), tenant_uuid="t-2"))
    assert finance.rule_ids == ("default:critical-patch", "critical-security", "finance-enforce")
    assert finance.enforcement is Enforcement.ENFORCE
    assert retail.rule_ids == ("default:critical-patch", "critical-security")
    assert retail.notification == "security-oncall"


def test_channel_rule_narrows_eligibility_for_matching_tenants() -> None:
    releases = [
        release("1.0.0", channel="lts"),
        release("1.0.1", channel="stable"),
        release("1.0.2", channel="lts"),
    ]
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    rules = {"rules": [{"id": "finance-lts", "tenant_tags": ["finance"], "channel": "lts"}]}
    engine = build_engine(releases, [adv], rules=rules)
    assert verdict_for(engine, tenant("1.0.0", tags=("finance",))).target_version == "1.0.2"
    assert verdict_for(engine, tenant("1.0.0", tenant_uuid="t-2")).target_version == "1.0.1"


def test_rule_on_outcome_cannot_change_eligibility() -> None:
    with pytest.raises(InputError) as caught:
        rules_from_data({"rules": [{"id": "x", "risk_levels": ["high"], "channel": "lts"}]}, "rules.yaml")
    assert caught.value.problem.field == "rules[0]"


def _exemption(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "EX-1",
        "scope": {"plugin_id": "com.powerx.plugins.*", "advisory_id": "A"},
        "reason": "mitigated by WAF rule 7",
        "expires_at": "2026-12-31T00:00:00Z",
        "approver": "secops@example.invalid",
    }
    return {**base, **overrides}


def test_active_exemption_waives_the_advisory() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(LINE, [adv], "1.0.0", rules={"exemptions": [_exemption()]})
    assert verdict.risk_level is Severity.NONE
    assert "EX-1" in verdict.rule_ids
    assert verdict.action is Action.REVIEW  # what is left is the plain minor update to 1.1.0


def test_expired_exemption_no_longer_applies() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    verdict = evaluate(
        LINE, [adv], "1.0.0", rules={"exemptions": [_exemption(expires_at="2026-11-01T00:00:00Z")]}
    )
    assert (verdict.risk_level, verdict.action) == (Severity.CRITICAL, Action.UPGRADE_NOW)
    assert any("EX-1 expired" in r for r in verdict.reasons)


def test_whole_finding_exemption_keeps_the_finding_visible() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=MEDIUM)
    ex = _exemption(scope={"plugin_id": "com.powerx.plugins.test", "tenant_uuid": "t-1"})
    verdict = evaluate(LINE, [adv], "1.0.0", rules={"exemptions": [ex]})
    assert verdict.action is Action.NONE
    assert verdict.exempted is not None
    assert verdict.exempted.id == "EX-1"
    assert verdict.reportable


def test_enforce_refuses_critical_exemption_without_approver() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    rules = {"defaults": {"enforcement": "enforce"}, "exemptions": [_exemption(approver=None)]}
    verdict = evaluate(LINE, [adv], "1.0.0", rules=rules)
    assert verdict.risk_level is Severity.CRITICAL
    assert any("refused" in r for r in verdict.reasons)


# scale ------------------------------------------------------------------------------------------


def test_evaluation_is_shared_across_tenants_with_the_same_combination() -> None:
    adv = advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])
    engine = build_engine(LINE, [adv])
    verdicts = {
        id(verdict_for(engine, tenant("1.0.0", tenant_uuid=f"t-{i}", core=f"1.{20 + i % 3}.0")))
        for i in range(300)
    }
    assert len(verdicts) == 1
    assert engine.distinct_combinations == 1
    verdict_for(engine, tenant("1.0.1", tenant_uuid="other"))
    assert engine.distinct_combinations == 2


def test_evaluation_time_is_an_argument() -> None:
    releases = [release("1.0.0"), release("1.0.1", released_at="2026-12-15T00:00:00Z")]
    adv = [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])]
    before = verdict_for(build_engine(releases, adv), tenant("1.0.0"))
    after = verdict_for(build_engine(releases, adv, now=datetime(2026, 12, 16, tzinfo=UTC)), tenant("1.0.0"))
    assert (before.action, after.action) == (Action.REVIEW, Action.UPGRADE_NOW)


def test_one_engine_answers_each_core_channel_and_host_as_a_fresh_engine_does() -> None:
    """What evaluation keeps per plugin and core (the releases admitting that core) serves every
    channel and host after it, the compatibility matrix of a host included."""
    releases = [
        release("1.0.0", channel="lts"),
        release("1.0.1", channel="lts", max_core="1.21.0"),
        release("1.0.2", channel="stable", min_core="1.21.0"),
        release("1.1.0-beta.1", channel="beta"),
        release("1.1.0", channel="stable", min_core="2.0.0"),
    ]
    matrix = [
        {
            "host": "px.host.v2",
            "plugin": "com.powerx.plugins.test",
            "min_version": "1.1.0",
            "action": "block",
        },
        {"host": "px.host.v1", "plugin": "com.powerx.plugins.*", "min_version": "1.0.2", "action": "warn"},
    ]
    adv = [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])]
    situations = [
        (core, channel) for core in ("1.20.0", "1.21.0", "2.1.0") for channel in ("lts", "stable", "beta")
    ]
    shared = build_engine(releases, adv, matrix=matrix)
    for core, channel in situations * 2:
        manifest = tenant("1.0.0", core=core, channel=channel)
        alone = verdict_for(build_engine(releases, adv, matrix=matrix), manifest)
        assert verdict_for(shared, manifest) == alone, (core, channel)
    assert {
        (core, channel): verdict_for(shared, tenant("1.0.0", core=core, channel=channel)).latest_version
        for core, channel in situations
    } == {
        ("1.20.0", "lts"): "1.0.1",
        ("1.20.0", "stable"): "1.0.1",
        ("1.20.0", "beta"): "1.1.0-beta.1",
        ("1.21.0", "lts"): "1.0.1",
        ("1.21.0", "stable"): "1.0.2",
        ("1.21.0", "beta"): "1.1.0-beta.1",
        ("2.1.0", "lts"): None,  # 1.0.1 stops at core 1.21.0
        ("2.1.0", "stable"): "1.0.2",
        ("2.1.0", "beta"): "1.1.0-beta.1",
    }


@pytest.mark.parametrize("first", ["1.20.0", "2.1.0"])
def test_a_matrix_warning_on_one_host_stays_on_that_host(first: str) -> None:
    """Hosts with the same eligible releases share a verdict only when the matrix warns alike about
    them: the warning of a v1 host is not told to a v2 tenant, whichever is scanned first."""
    releases = [release("1.0.0"), release("1.0.1")]
    matrix = [
        {
            "host": "px.host.v1",
            "plugin": "com.powerx.plugins.test",
            "min_version": "1.0.1",
            "action": "warn",
            "notes": "careful on v1",
        }
    ]
    adv = [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])]
    engine = build_engine(releases, adv, matrix=matrix)
    told = {
        core: verdict_for(engine, tenant("1.0.0", core=core))
        for core in (first, *{"1.20.0", "2.1.0"} - {first})
    }
    assert {core: v.compatibility for core, v in told.items()} == {"1.20.0": ("careful on v1",), "2.1.0": ()}
    assert {v.target_version for v in told.values()} == {"1.0.1"}


def test_an_unknown_plugin_stays_unknown_and_spellings_of_a_version_share_its_verdict() -> None:
    """Each (tenant context, plugin, channel) is looked up once: a plugin the catalog lacks answers
    None every time, and a version spelt with a `v` gets the verdict of the same version."""
    engine = build_engine(LINE, [advisory("A", [{"introduced": "0"}, {"fixed": "1.0.1"}])])
    unknown = msgspec.structs.replace(
        tenant("1.0.0"), plugins=(Installation(plugin_id="com.powerx.plugins.gone", version="1.0.0"),)
    )
    ctx = engine.context(unknown)
    assert [engine.evaluate(ctx, unknown.plugins[0]) for _ in range(2)] == [None, None]
    plain = verdict_for(engine, tenant("1.0.0"))
    assert verdict_for(engine, tenant("v1.0.0")) is plain
    assert verdict_for(engine, tenant("1.0.0", core="1.21.0")) is plain
    assert engine.distinct_combinations == 1

"""The upgrade policy switched off (flag `plugin-upgrade-policy`): the plain behaviour, marked."""

from __future__ import annotations

from powerx_governance.domain import Action, Enforcement, Severity
from powerx_governance.policy.shaping import PLAIN_REASON
from powerx_governance.policy.verdict import PolicyMode
from tests.unit.policy.builders import CRITICAL, HIGH, advisory, build_engine, release, tenant, verdict_for

RELEASES = [release(v) for v in ("1.0.0", "1.0.1", "1.1.0", "2.0.0")]
FIXED_IN_101 = advisory("PXSA-1", [{"introduced": "0"}, {"fixed": "1.0.1"}], vector=CRITICAL)
RULES = {
    "defaults": {"release_age": "30d", "enforcement": "enforce"},
    "rules": [{"id": "finance-sla", "tenant_tags": ["finance"], "sla_hours": 1, "enforcement": "enforce"}],
    "exemptions": [
        {
            "id": "ex-1",
            "scope": {"plugin_id": "com.powerx.plugins.test"},
            "reason": "vendor hotfix pending",
            "approver": "ciso",
            "expires_at": "2030-01-01T00:00:00Z",
        }
    ],
}


def test_plain_targets_the_newest_eligible_release_without_rules_or_exemptions() -> None:
    governed = verdict_for(
        build_engine(RELEASES, [FIXED_IN_101], rules=RULES), tenant("1.0.0", tags=("finance",))
    )
    plain = verdict_for(
        build_engine(RELEASES, [FIXED_IN_101], rules=RULES, plain=True), tenant("1.0.0", tags=("finance",))
    )
    assert governed.action is Action.NONE  # the exemption silences it under the rules
    assert governed.policy_mode is PolicyMode.GOVERNED
    assert (plain.target_version, plain.latest_version) == ("2.0.0", "2.0.0")
    assert plain.action is Action.UPGRADE_NOW
    assert plain.risk_level is Severity.CRITICAL
    assert plain.critical_patch
    assert plain.sla_deadline is None
    assert plain.enforcement is Enforcement.ADVISORY
    assert plain.exempted is None
    assert plain.priority == 98  # ten points per CVSS point of 9.8, no weights
    assert plain.policy_mode is PolicyMode.PLAIN
    assert PLAIN_REASON in plain.reasons
    assert "finance-sla" not in plain.rule_ids


def test_plain_ignores_the_release_age_cooldown_for_updates_without_advisories() -> None:
    fresh = [*RELEASES[:-1], release("2.0.0", released_at="2026-11-29T00:00:00Z")]
    governed = verdict_for(build_engine(fresh, rules=RULES), tenant("1.1.0"))
    plain = verdict_for(build_engine(fresh, rules=RULES, plain=True), tenant("1.1.0"))
    assert governed.latest_version is None  # still cooling down under the rules
    assert plain.latest_version == "2.0.0"
    assert plain.priority == 0  # no advisory: no risk points


def test_plain_keeps_unavoidable_risk_visible() -> None:
    everywhere = advisory("PXSA-2", [{"introduced": "0"}], vector=HIGH)
    plain = verdict_for(build_engine(RELEASES, [everywhere], plain=True), tenant("2.0.0"))
    assert plain.risk_level is Severity.HIGH
    assert plain.action is Action.REVIEW
    assert plain.target_version is None

"""The report digest: order-independent, kept by adding and removing terms, and sensitive to every
field of every finding and to the states a decision sets."""

from __future__ import annotations

import copy
import random
from typing import Any

from powerx_governance.recommendations.digests import (
    FleetFindings,
    OpenFinding,
    OwnMembers,
    TenantFindings,
    VerdictParts,
    canonical_json,
    finding_bytes,
    finding_digest,
    fingerprint_term,
    report_finding,
    report_sha256,
    report_term,
    served_report_sha256,
)

HEAD: dict[str, Any] = {"schema": "powerx.scan-report/v1", "scan_id": "s-1", "status": "succeeded"}


def _finding(n: int, state: str = "open") -> dict[str, Any]:
    return {
        "tenant_uuid": f"t-{n % 3}",
        "plugin_id": f"com.example.p{n}",
        "recommendation_id": n + 1,
        "risk_level": "high" if n % 2 else "low",
        "action": "schedule",
        "cvss": 9.8,
        "advisories": [{"id": f"PXSA-{n}", "aliases": []}],
        "state": state,
        "manifest_age_seconds": None,
    }


def _report(findings: list[dict[str, Any]]) -> dict[str, Any]:
    return {**HEAD, "findings": findings}


def _open(f: dict[str, Any]) -> OpenFinding:
    digested = {k: v for k, v in f.items() if k not in ("state", "manifest_age_seconds")}
    term = fingerprint_term(f["plugin_id"], "fp", 1)
    return OpenFinding(term, finding_digest(digested, exact=True), f["risk_level"], f["action"])


def _kept(findings: list[dict[str, Any]]) -> TenantFindings:
    kept = TenantFindings()
    for f in findings:
        kept.add(_open(f))
    return kept


def test_the_digest_does_not_depend_on_the_order_of_the_findings() -> None:
    findings = [_finding(n) for n in range(20)]
    shuffled = random.Random(7).sample(findings, len(findings))  # noqa: S311 - a shuffle, not a secret
    assert served_report_sha256(_report(findings)) == served_report_sha256(_report(shuffled))


def test_kept_sums_adjusted_by_a_change_equal_the_sums_made_afresh() -> None:
    findings = [_finding(n) for n in range(10)]
    kept = _kept(findings)
    changed = {**findings[4], "risk_level": "critical"}
    kept.add(_open(findings[4]), -1)
    kept.add(_open(changed))
    assert kept == _kept([*findings[:4], changed, *findings[5:]])
    fleet = FleetFindings()
    fleet.add(kept)
    expected = served_report_sha256(_report([*findings[:4], changed, *findings[5:]]))
    assert report_sha256(HEAD, fleet, []) == expected


def test_any_field_of_any_finding_and_any_decided_state_change_the_digest() -> None:
    findings = [_finding(n) for n in range(5)]
    before = served_report_sha256(_report(findings))
    for i in range(len(findings)):
        for key in findings[i]:
            if key in ("state", "manifest_age_seconds"):
                continue
            changed = copy.deepcopy(findings)
            changed[i][key] = "something else"
            assert served_report_sha256(_report(changed)) != before, key
    decided = copy.deepcopy(findings)
    decided[2]["state"] = "decided"
    assert served_report_sha256(_report(decided)) != before
    assert served_report_sha256(_report(findings[:-1])) != before
    assert served_report_sha256({**_report(findings), "status": "incomplete"}) != before


def test_the_manifest_age_follows_the_report_time_and_is_not_digested() -> None:
    findings = [_finding(n) for n in range(3)]
    aged = copy.deepcopy(findings)
    aged[0]["manifest_age_seconds"] = 3600
    assert served_report_sha256(_report(aged)) == served_report_sha256(_report(findings))


def test_a_finding_encoded_from_its_verdict_members_is_its_canonical_json() -> None:
    facts = {"tenant_key": "acme", "channel": "stable", "compatibility": ["ok"], "manifest_stale": False}
    for verdict in (
        {"risk_level": "high", "sla_deadline": "2026-01-02T00:00:00Z", "advisories": [{"cvss": 9.8}]},
        {"risk_level": "low", "sla_deadline": None, "odd_numbers": [1e-05, 1e16, -0.0], "state": "x"},
    ):
        sla, first_seen = "2026-01-01T00:00:00Z", "2025-12-01T00:00:00Z"
        own: dict[str, Any] = {"tenant_uuid": "t", "plugin_id": "p", "sla_deadline": sla, **facts}
        own |= {"first_seen_at": first_seen, "policy_version": 3, "recommendation_id": 9}
        finding = report_finding(
            "t",
            "p",
            verdict,
            facts,
            sla_deadline=sla,
            first_seen_at=first_seen,
            policy_version=3,
            recommendation_id=9,
        )
        assert finding_bytes(VerdictParts(verdict), own) == canonical_json(finding).encode()


def test_findings_sharing_encoded_members_encode_as_their_canonical_json() -> None:
    verdict = {"risk_level": "high", "sla_deadline": None, "advisories": [{"cvss": 9.8}]}
    members, parts = OwnMembers(), VerdictParts(verdict)
    for n, (flag, stale) in enumerate([(True, 1), (1, True), (False, 0), (True, 1), (0, False)]):
        facts = {"compatibility": ["ok", str(n % 2)], "manifest_stale": stale, "co_upgrades": []}
        own: dict[str, Any] = {"tenant_uuid": f"t{n % 2}", "plugin_id": "p", "sla_deadline": None, **facts}
        own |= {"first_seen_at": None, "policy_version": flag, "recommendation_id": n}
        finding = report_finding(
            f"t{n % 2}",
            "p",
            verdict,
            facts,
            sla_deadline=None,
            first_seen_at=None,
            policy_version=flag,  # True and 1 are equal keys: their encodings must not meet
            recommendation_id=n,
        )
        assert finding_bytes(parts, own, members) == canonical_json(finding).encode()


def test_own_members_encoded_in_one_call_are_those_encoded_one_by_one() -> None:
    one_by_one, at_once = OwnMembers(), OwnMembers()
    for n in range(4):
        own: dict[str, Any] = {
            "tenant_uuid": f"t{n % 2}",
            "co_upgrades": [["a", "b"]] if n % 2 else ["a"],  # a list of lists is unhashable: never cached
            "manifest_stale": bool(n % 2),
            "policy_version": 1,
            "recommendation_id": n,
            "first_seen_at": None,
        }
        assert at_once.encode(own) == {key: one_by_one(key, value) for key, value in own.items()}


def test_a_finding_replaced_in_one_step_leaves_the_sums_counting_out_then_in_leaves() -> None:
    findings = [_finding(n) for n in range(10)]
    for changed in (
        {**findings[3], "cvss": 7.5},  # same risk and action
        {**findings[3], "risk_level": "critical"},
        {**findings[3], "risk_level": "critical", "action": "upgrade_now"},
    ):
        old, new = _open(findings[3]), _open(changed)
        stepwise, replaced = _kept(findings), _kept(findings)
        stepwise.add(old, -1)
        stepwise.add(new)
        replaced.replace(
            old.fingerprint_term,
            report_term(bytes.fromhex(old.digest)),
            (old.risk_level, old.action),
            new.fingerprint_term,
            report_term(bytes.fromhex(new.digest)),
            (new.risk_level, new.action),
        )
        assert replaced.row("t") == stepwise.row("t")

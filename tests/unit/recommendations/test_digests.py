"""The report digest: order-independent, kept by adding and removing terms, and sensitive to every
field of every finding and to the states a decision sets."""

from __future__ import annotations

import copy
import random
from typing import Any

from powerx_governance.recommendations.digests import (
    FleetFindings,
    OpenFinding,
    TenantFindings,
    finding_digest,
    fingerprint_term,
    report_sha256,
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

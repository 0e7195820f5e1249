"""What each tenant's open findings add up to, kept with them so a scan never re-reads the fleet.

Every open recommendation carries `report_digest`: the sha256 of its finding as the stored report
serves it (DESIGN §4), serialised by `canonical_json`, without `state` (a decision changes it, not
a scan) and `manifest_age_seconds` (it follows from `manifest_as_of` and the report's time). Per
tenant, `tenant_findings` keeps the number of open findings, their counts by risk and action, and
two order-independent sums that a write adjusts by what it adds and removes:

- `report_sum`: AdHash (Bellare-Micciancio) of the findings' digests: each digest expanded to 4096
  bits with SHAKE256, summed modulo 2^4096 (the size that keeps Wagner's k-sum attack out of reach);
- `fingerprints`: the sum modulo 2^256 of sha256(plugin, fingerprint, policy version) of the open
  findings, which a full scan compares with the findings it made to skip unchanged tenants.

`report_sha256` (the scan's audit record) hashes the report's head, the findings' count and sum,
and the states that are not `open`: see `report_sha256` below and docs/formats.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

SUM_BYTES: Final = 512  # 4096 bits
_REPORT_MOD: Final = 1 << (8 * SUM_BYTES)
FINGERPRINT_MOD: Final = 1 << 256
_REPORT_MASK: Final = _REPORT_MOD - 1
_FINGERPRINT_MASK: Final = FINGERPRINT_MOD - 1
# Columns a stored finding does not show (DESIGN §5.8: its state is shown, its bookkeeping is not).
DROPPED: Final = frozenset(("id", "revision", "state", "updated_at", "resolved_at", "scan_id"))
NOT_DIGESTED: Final = ("state", "manifest_age_seconds")
# msgspec writes the same canonical JSON as json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) except for floats printed in exponent form (|x| < 1e-4 or ≥ 1e16, NaN, ∞).
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def canonical_json(value: Any) -> str:
    """`value` as the report digest serialises it (keys sorted, no spaces, UTF-8 as is)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def msgspec_exact(doc: Any) -> bool:
    """Whether msgspec's canonical JSON of `doc` equals `json`'s (only some floats print apart)."""
    return _CANONICAL.encode(doc) == canonical_json(doc).encode()


def canonical_bytes(value: Any, *, exact: bool) -> bytes:
    """`canonical_json(value)` in UTF-8; through msgspec when `exact` says it writes the same."""
    return _CANONICAL.encode(value) if exact else canonical_json(value).encode()


def report_finding(
    tenant_uuid: str,
    plugin_id: str,
    verdict: Mapping[str, Any],
    facts: Mapping[str, Any],
    *,
    sla_deadline: str | None,
    first_seen_at: str | None,
    policy_version: int | None,
    recommendation_id: int,
) -> dict[str, Any]:
    """A stored finding as the report serves it, before its `state` and `manifest_age_seconds`."""
    finding = {
        "tenant_uuid": tenant_uuid,
        "plugin_id": plugin_id,
        **verdict,
        "sla_deadline": sla_deadline,  # counted from first sight (DESIGN §5.8), not the shared verdict's
        **facts,
        "first_seen_at": first_seen_at,
        "policy_version": policy_version,
    }
    for key in DROPPED.intersection(finding):
        del finding[key]
    finding["recommendation_id"] = recommendation_id
    return finding


def finding_digest(finding: Mapping[str, Any], *, exact: bool) -> str:
    """`report_digest` of a finding built by `report_finding` (no state, no manifest age)."""
    return hashlib.sha256(canonical_bytes(finding, exact=exact)).hexdigest()


class VerdictParts:
    """A verdict document's top-level members in canonical JSON, encoded once per verdict: a
    finding's canonical JSON is its members sorted by key, so each of the thousands of findings
    sharing a verdict only encodes its own few members (`finding_bytes`)."""

    def __init__(self, verdict: Mapping[str, Any]) -> None:
        exact = msgspec_exact(verdict)
        self.members = {key: _member(key, value, exact=exact) for key, value in verdict.items()}
        self._orders: dict[tuple[str, ...], list[str]] = {}

    def order(self, own: tuple[str, ...]) -> list[str]:
        """The shown keys of a finding with these `own` members, sorted (once per set of keys)."""
        found = self._orders.get(own)
        if found is None:
            found = self._orders[own] = sorted((self.members.keys() | set(own)) - DROPPED)
        return found


def _member(key: str, value: Any, *, exact: bool) -> bytes:
    return canonical_bytes(key, exact=True) + b":" + canonical_bytes(value, exact=exact)


class OwnMembers:
    """The members findings add beside their verdict's, each distinct (key, value) encoded once:
    a fleet's findings repeat the same tenant facts, deadlines and moments. One per write (the
    cache lives as long as it does); `UNSHARED` keys are never cached (one value per finding)."""

    UNSHARED: Final = frozenset(("recommendation_id",))

    def __init__(self) -> None:
        self._found: dict[tuple[str, type, Any], bytes] = {}

    def __call__(self, key: str, value: Any) -> bytes:
        if key in self.UNSHARED:
            return _member(key, value, exact=True)
        try:
            slot = (key, type(value), tuple(value) if type(value) is list else value)
            found = self._found.get(slot)
        except TypeError:  # unhashable members (lists of lists): encoded every time
            return _member(key, value, exact=True)
        if found is None:
            found = self._found[slot] = _member(key, value, exact=True)
        return found

    def encode(self, own: Mapping[str, Any]) -> dict[str, bytes]:
        """Each of `own`'s members encoded as `self(key, value)` encodes it, in one call: a write
        encodes a dozen members for each of its findings."""
        found, unshared, encoded = self._found, self.UNSHARED, {}
        for key, value in own.items():
            if key in unshared:
                encoded[key] = _member(key, value, exact=True)
                continue
            kind = type(value)
            try:
                slot = (key, kind, tuple(value) if kind is list else value)
                member = found.get(slot)
            except TypeError:  # unhashable members (lists of lists): encoded every time
                encoded[key] = _member(key, value, exact=True)
                continue
            if member is None:
                member = found[slot] = _member(key, value, exact=True)
            encoded[key] = member
        return encoded


def _own_member(key: str, value: Any) -> bytes:
    return _member(key, value, exact=True)


def finding_bytes(
    verdict: VerdictParts, own: Mapping[str, Any], members: Callable[[str, Any], bytes] = _own_member
) -> bytes:
    """`canonical_bytes(report_finding(…))` of a finding whose members beside its verdict's are `own`
    (tenant and plugin ids, sla_deadline, tenant facts, first_seen_at, policy_version,
    recommendation_id); `own` holds no floats (so msgspec writes it exactly as `json` does).
    `members` encodes one of `own`'s members (an `OwnMembers` shares the encodings of a write)."""
    if isinstance(members, OwnMembers):
        encoded = members.encode(own)
    else:
        encoded = {key: members(key, value) for key, value in own.items()}
    shared = verdict.members  # a finding's own member of the same name wins (never empty bytes)
    return b"{" + b",".join([encoded.get(key) or shared[key] for key in verdict.order(tuple(own))]) + b"}"


def _report_term(digest: str) -> int:
    return report_term(bytes.fromhex(digest))


def report_term(digest: bytes) -> int:
    """A finding's part of its tenant's `report_sum`, from its digest's bytes."""
    return int.from_bytes(hashlib.shake_256(digest).digest(SUM_BYTES), "big")


def fingerprint_term(plugin_id: str, fingerprint: str, policy_version: int | None) -> int:
    """One open finding's part of a tenant's `fingerprints`."""
    key = f"{plugin_id}\x1f{fingerprint}\x1f{policy_version}".encode()
    return int.from_bytes(hashlib.sha256(key).digest(), "big")


@dataclass
class TenantFindings:
    """A tenant's open findings summed up (a row of `tenant_findings`)."""

    findings: int = 0
    fingerprints: int = 0
    report_sum: int = 0
    by_risk: dict[str, int] = field(default_factory=dict)  # plain dicts: a Counter costs more to make
    by_action: dict[str, int] = field(default_factory=dict)

    def add(self, open_finding: OpenFinding, sign: int = 1) -> None:
        """Count `open_finding` in (sign 1) or out (sign -1)."""
        term = _report_term(open_finding.digest)
        self.count(open_finding.fingerprint_term, term, open_finding.risk_level, open_finding.action, sign)

    def count(self, fingerprint_term: int, report_term: int, risk: str, action: str, sign: int = 1) -> None:
        """`add` of a finding given by its terms (`fingerprint_term`, `report_term`)."""
        self.findings += sign
        # `& (mod - 1)` is `% mod` for a power of two (negative sums too), without a long division
        self.fingerprints = (self.fingerprints + sign * fingerprint_term) & _FINGERPRINT_MASK
        self.report_sum = (self.report_sum + sign * report_term) & _REPORT_MASK
        self.by_risk[risk] = self.by_risk.get(risk, 0) + sign
        self.by_action[action] = self.by_action.get(action, 0) + sign

    def replace(
        self,
        old_fingerprint_term: int,
        old_report_term: int,
        old_counted: tuple[str, str],
        fingerprint_term: int,
        report_term: int,
        counted: tuple[str, str],
    ) -> None:
        """`count` of a finding out, then of the one replacing it in (each counted as (risk, action)):
        a push rewrites 20,000 findings, most keeping their risk and action, in one step."""
        self.fingerprints = (self.fingerprints - old_fingerprint_term + fingerprint_term) & _FINGERPRINT_MASK
        self.report_sum = (self.report_sum - old_report_term + report_term) & _REPORT_MASK
        (old_risk, old_action), (risk, action) = old_counted, counted
        if old_risk != risk:
            self.by_risk[old_risk] = self.by_risk.get(old_risk, 0) - 1
            self.by_risk[risk] = self.by_risk.get(risk, 0) + 1
        if old_action != action:
            self.by_action[old_action] = self.by_action.get(old_action, 0) - 1
            self.by_action[action] = self.by_action.get(action, 0) + 1

    def row(self, tenant_uuid: str) -> dict[str, Any]:
        return {
            "tenant_uuid": tenant_uuid,
            "findings": self.findings,
            "fingerprints": f"{self.fingerprints:064x}",
            "report_sum": self.report_sum.to_bytes(SUM_BYTES, "big"),
            "by_risk": {k: n for k, n in sorted(self.by_risk.items()) if n},
            "by_action": {k: n for k, n in sorted(self.by_action.items()) if n},
        }

    @classmethod
    def from_row(
        cls,
        findings: int,
        fingerprints: str,
        report_sum: bytes,
        by_risk: dict[str, int],
        by_action: dict[str, int],
    ) -> TenantFindings:
        return cls(
            findings,
            int(fingerprints, 16),
            int.from_bytes(report_sum, "big"),
            dict(by_risk),
            dict(by_action),
        )


@dataclass(frozen=True, slots=True)
class OpenFinding:
    """What an open finding adds to its tenant's sums."""

    fingerprint_term: int
    digest: str
    risk_level: str
    action: str


@dataclass
class FleetFindings:
    """The sums of several tenants: what a report over them digests."""

    findings: int = 0
    report_sum: int = 0
    by_risk: dict[str, int] = field(default_factory=dict)
    by_action: dict[str, int] = field(default_factory=dict)

    def add(self, tenant: TenantFindings) -> None:
        self.add_sums(tenant.findings, tenant.report_sum)
        self.add_counts(tenant.by_risk, tenant.by_action)

    def add_sums(self, findings: int, report_sum: int) -> None:
        """Count in findings and their AdHash sum (several tenants' sums added up: reduced here)."""
        self.findings += findings
        self.report_sum = (self.report_sum + report_sum) % _REPORT_MOD

    def add_counts(self, by_risk: Mapping[str, int], by_action: Mapping[str, int], tenants: int = 1) -> None:
        """Count in counts by risk and by action, kept alike by `tenants` tenants."""
        for counts, more in ((self.by_risk, by_risk), (self.by_action, by_action)):
            for key, n in more.items():
                counts[key] = counts.get(key, 0) + n * tenants


def report_sha256(head: Mapping[str, Any], fleet: FleetFindings, states: Iterable[tuple[int, str]]) -> str:
    """The report digest: sha256 of the canonical JSON of the report's head (everything but its
    findings), the findings' count and AdHash sum, and `[recommendation_id, state]` of every finding
    whose state is not `open`, by id."""
    summary = {
        "head": dict(head),
        "findings": fleet.findings,
        "findings_sum": f"{fleet.report_sum:0{2 * SUM_BYTES}x}",
        "states": [[rec_id, state] for rec_id, state in sorted(states)],
    }
    return hashlib.sha256(canonical_json(summary).encode()).hexdigest()


def served_report_sha256(report: Mapping[str, Any]) -> str:
    """`report_sha256` computed from a served report (`GET …/scans/{id}/report`): how anyone
    holding the report checks the scan's audit record."""
    fleet, states = FleetFindings(), []
    for finding in report["findings"]:
        digested = {k: v for k, v in finding.items() if k not in NOT_DIGESTED}
        fleet.findings += 1
        fleet.report_sum = (
            fleet.report_sum + _report_term(finding_digest(digested, exact=False))
        ) % _REPORT_MOD
        if finding["state"] != "open":
            states.append((finding["recommendation_id"], finding["state"]))
    return report_sha256({k: v for k, v in report.items() if k != "findings"}, fleet, states)

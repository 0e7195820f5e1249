"""A finding: one installation with its verdict, and the verdict as the report and the store write it.

Shared by the scanner that makes findings, the reports that write them and the store that keeps
them, so none of those reaches into another for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from powerx_governance.domain import Channel
from powerx_governance.inventory.models import Installation, TenantManifest
from powerx_governance.policy.verdict import AdvisoryFinding, Verdict
from powerx_governance.times import iso


class Finding(msgspec.Struct, frozen=True, gc=False):
    """One installation's verdict. Not tracked by the cyclic GC: a fleet scan makes a million of
    them and none can be part of a reference cycle (they only point at immutable records)."""

    tenant: TenantManifest
    installation: Installation
    verdict: Verdict
    dependency_notes: tuple[str, ...]
    stale_since: datetime | None = None  # evaluated from the tenant's last good manifest, read then
    first_seen: datetime | None = None  # first seen with this finding (DESIGN §5.8); None: at this scan


class SharedVerdict(msgspec.Struct, frozen=True, eq=False, gc=False):
    """A verdict and the time its installations were first seen with it (the SLA clock counts from it).

    One object per distinct pair, compared and hashed by identity: reports render it once for
    every installation it applies to.
    """

    verdict: Verdict
    first_seen: datetime

    @property
    def risk_level(self) -> str:
        return self.verdict.risk_level.value

    @property
    def action(self) -> str:
        return self.verdict.action.value

    def document(self) -> dict[str, Any]:
        """The finding's members that depend on the verdict alone, plugin id first (DESIGN §4 order)."""
        return {
            "plugin_id": self.verdict.plugin_id,
            **verdict_document(self.verdict, self.first_seen),
            "first_seen_at": iso(self.first_seen),
        }


class SharedFinding(msgspec.Struct, frozen=True, eq=False, gc=False):
    """A finding without its tenant: what every installation with the same facts (verdict, channel,
    core version, co-upgrade situation) is told. One object per distinct set of facts, compared and
    hashed by identity, so that a fleet of a million installations renders a few thousand of them."""

    outcome: SharedVerdict
    channel: Channel
    core_version: str
    dependency_notes: tuple[str, ...]
    priority: int  # the verdict's, kept here for sorting a tenant's findings

    def context_document(self) -> dict[str, Any]:
        """The members after the verdict's: the installation's context (DESIGN §4 order)."""
        return {
            "core_version": self.core_version,
            "channel": self.channel.value,
            "compatibility": list(self.outcome.verdict.compatibility),
            "co_upgrades": list(self.dependency_notes),
        }


def _advisory(a: AdvisoryFinding) -> dict[str, Any]:
    return {
        "id": a.id,
        "cvss": a.cvss,
        "severity": a.severity.value,
        "fixed_in": a.fixed_in,
        "aliases": list(a.aliases),
        "summary": a.summary,
        "vector": a.vector,
        "exploited": a.exploited,
        "unavoidable": a.unavoidable,
        "in_target": a.in_target,
    }


def verdict_document(v: Verdict, first_seen: datetime | None = None) -> dict[str, Any]:
    """The tenant-independent part of a finding, built once per distinct verdict (and first-seen
    time: the SLA deadline counts from it, DESIGN §5.8; without it, from when the fix was actionable)."""
    return {
        "current_version": v.current_version,
        "target_version": v.target_version,
        "latest_version": v.latest_version,
        "update_type": v.update_type.value,
        "risk_level": v.risk_level.value,
        "priority": v.priority,
        "action": v.action.value,
        "critical_patch": v.critical_patch,
        "partial": v.partial,
        "sla_deadline": iso(v.sla_deadline if first_seen is None else v.sla_deadline_for(first_seen)),
        "advisories": [_advisory(a) for a in v.advisories],
        "changelog": [f"{n.version}: {n.changelog.strip()}" for n in v.release_notes if n.changelog],
        "release_notes": [{"version": n.version, "url": n.url} for n in v.release_notes if n.url],
        "reasons": list(v.reasons),
        "rule_ids": list(v.rule_ids),
        "policy_mode": v.policy_mode.value,
        "enforcement": v.enforcement.value,
        "notification": v.notification,
        "lifecycle": v.lifecycle.value,
        "replacement": v.replacement,
        "exempted": None
        if v.exempted is None
        else {
            "id": v.exempted.id,
            "reason": v.exempted.reason,
            "approver": v.exempted.approver,
            "expires_at": iso(v.exempted.expires_at),
        },
    }

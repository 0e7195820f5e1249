"""What the policy engine says about one distinct (plugin, version, eligibility, policy) combination."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from powerx_governance.domain import Action, Enforcement, LifecycleStatus, Severity, UpdateType


class PolicyMode(StrEnum):
    GOVERNED = "governed"  # the rules file's policies (DESIGN §5 and the rules)
    PLAIN = "plain"  # the upgrade policy is off: newest eligible release, no weights, SLAs or enforcement


@dataclass(frozen=True, slots=True)
class AdvisoryFinding:
    id: str
    aliases: tuple[str, ...]
    summary: str | None
    severity: Severity
    cvss: float | None
    vector: str | None
    exploited: bool
    fixed_in: str | None  # the lowest eligible release without it
    unavoidable: bool  # every eligible release carries it
    in_target: bool  # the recommended target still carries it (partial targets)


@dataclass(frozen=True, slots=True)
class Exempted:
    id: str
    reason: str
    approver: str | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ReleaseNote:
    version: str
    changelog: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    plugin_id: str
    current_version: str
    target_version: str | None
    latest_version: str | None
    update_type: UpdateType
    risk_level: Severity
    priority: int
    action: Action
    critical_patch: bool
    partial: bool
    sla_deadline: datetime | None
    advisories: tuple[AdvisoryFinding, ...]
    release_notes: tuple[ReleaseNote, ...]
    reasons: tuple[str, ...]
    rule_ids: tuple[str, ...]
    enforcement: Enforcement
    notification: str | None
    lifecycle: LifecycleStatus
    replacement: str | None
    compatibility: tuple[str, ...]
    exempted: Exempted | None
    target_dependencies: tuple[tuple[str, str], ...]  # (plugin id, constraint) of the target release
    reportable: bool  # an installation that is up to date and clean has no finding (DESIGN §4)
    policy_mode: PolicyMode = PolicyMode.GOVERNED

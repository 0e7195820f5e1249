"""`config/version/governance_rules.yaml`: PowerX's rules shape, extended as in DESIGN §5.

PowerX's file has `defaults`, `rules` (matched by release `labels` or `tenant_tags`, with
`target_version`, `sla_hours`, `notification`) and `risk_weights`. We add channels, release
age, exemptions, enforcement, more weights and SLA hours per risk level. Without a file the
built-in defaults below give exactly the DESIGN §5 semantics.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import msgspec

from powerx_governance.domain import Action, Channel, Enforcement, Plan, Severity, UpdateType
from powerx_governance.records import AwareDatetime

RULES_SCHEMA: Final = "powerx.governance-rules/v1"


class TargetTrack(StrEnum):
    """Which releases a rule's `target_version` takes the latest of."""

    LATEST = "latest"
    STABLE = "stable"
    LTS = "lts"


class SlaHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hours from the moment a fix is available to the deadline, per risk level."""

    critical: float = 72
    high: float = 168
    medium: float = 720
    low: float = 2160
    none: float | None = None

    def for_level(self, level: Severity) -> float | None:
        return {
            Severity.CRITICAL: self.critical,
            Severity.HIGH: self.high,
            Severity.MEDIUM: self.medium,
            Severity.LOW: self.low,
            Severity.NONE: self.none,
        }[level]


class NonSecurityActions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The action for an update that fixes no advisory (DESIGN §5.7, last clause)."""

    patch: Action = Action.SCHEDULE
    minor: Action = Action.REVIEW
    major: Action = Action.REVIEW
    prerelease: Action = Action.REVIEW
    lifecycle: Action = Action.SCHEDULE

    def for_update(self, update: UpdateType) -> Action:
        return {
            UpdateType.PATCH: self.patch,
            UpdateType.MINOR: self.minor,
            UpdateType.MAJOR: self.major,
            UpdateType.PRERELEASE: self.prerelease,
            UpdateType.NONE: self.lifecycle,
        }[update]


class RiskWeights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Points that add up to a priority, clamped to 0-100."""

    cvss: float = 7.0  # per CVSS point of the worst advisory affecting the installation
    exploited: float = 15.0
    critical_patch: float = 15.0
    deprecated: float = 5.0
    sunset: float = 10.0
    revoked: float = 15.0
    version_lag: float = 1.0  # per eligible release the installation is behind
    version_lag_cap: float = 10.0
    unknown_severity_cvss: float = 5.5  # CVSS stand-in for advisories scored by label only


class Defaults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    scan_interval: str = "5m"
    max_report_age: str = "24h"
    alert_channel: str | None = None
    escalation_after: int = 3
    min_coverage: float = 0.99
    enforcement: Enforcement = Enforcement.ADVISORY
    release_age: str = "0h"
    sla_hours: SlaHours = msgspec.field(default_factory=SlaHours)
    non_security_action: NonSecurityActions = msgspec.field(default_factory=NonSecurityActions)
    notification: str | None = None


class Notification(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    route: str
    immediate: bool = False


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named policy. Conditions are ANDed; an absent condition matches everything."""

    id: str
    description: str | None = None
    # conditions on the tenant and installation (decide before evaluation)
    tenant_tags: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()  # ids or globs
    plans: tuple[Plan, ...] = ()
    # conditions on the outcome (decide after evaluation)
    labels: dict[str, str] = msgspec.field(default_factory=dict)  # of the recommended release
    risk_levels: tuple[Severity, ...] = ()
    # effects
    target_version: TargetTrack | None = None
    channel: Channel | None = None
    release_age: str | None = None
    sla_hours: float | SlaHours | None = None
    enforcement: Enforcement | None = None
    notification: Notification | str | None = None
    non_security_action: NonSecurityActions | None = None

    @property
    def outcome_conditions(self) -> bool:
        return bool(self.labels or self.risk_levels)

    @property
    def changes_eligibility(self) -> bool:
        return self.channel is not None or self.release_age is not None or self.target_version is not None


class ExemptionScope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    plugin_id: str  # id or glob
    tenant_uuid: str | None = None
    tenant_tags: tuple[str, ...] = ()
    advisory_id: str | None = None  # an OSV id or alias; absent = the whole finding
    versions: str | None = None  # a constraint on the installed version


class Exemption(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    scope: ExemptionScope
    reason: str
    expires_at: AwareDatetime
    approver: str | None = None


class GovernanceRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    schema: str = RULES_SCHEMA
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    risk_weights: RiskWeights = msgspec.field(default_factory=RiskWeights)
    rules: tuple[Rule, ...] = ()
    exemptions: tuple[Exemption, ...] = ()


DEFAULT_RULES: Final = GovernanceRules()

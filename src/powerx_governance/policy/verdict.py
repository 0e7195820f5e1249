"""What the policy engine says about one distinct (plugin, version, eligibility, policy) combination.

The engine's records are frozen msgspec Structs, not frozen dataclasses: a fleet scan builds some
hundred thousand of them per process, and a Struct is built in C where a frozen dataclass sets each
field through `object.__setattr__` (a 25-field `Verdict`: ~2.5 µs instead of ~9.5 µs). Those here
hold only immutable values, never a cycle: the cyclic GC does not track them (`gc=False`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import msgspec

from powerx_governance.domain import Action, Enforcement, LifecycleStatus, Severity, UpdateType


class PolicyMode(StrEnum):
    GOVERNED = "governed"  # the rules file's policies (DESIGN §5 and the rules)
    PLAIN = "plain"  # the upgrade policy is off: newest eligible release, no weights, SLAs or enforcement


class AdvisoryFinding(msgspec.Struct, frozen=True, gc=False):
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


class Exempted(msgspec.Struct, frozen=True, gc=False):
    id: str
    reason: str
    approver: str | None
    expires_at: datetime


class ReleaseNote(msgspec.Struct, frozen=True, gc=False):
    version: str
    changelog: str | None
    url: str | None


class Verdict(msgspec.Struct, frozen=True, gc=False):
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
    sla_deadline: datetime | None  # from when the fix became actionable; see `sla_deadline_for`
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
    sla_hours: float | None = None  # the SLA the deadline counts (None: no deadline)

    def sla_deadline_for(self, first_seen: datetime) -> datetime | None:
        """DESIGN §5.8: the clock starts at the later of when the fix became actionable and when this
        installation was first seen with this finding; nobody is overdue the day they are first seen."""
        if self.sla_deadline is None or self.sla_hours is None:
            return self.sla_deadline
        return max(self.sla_deadline, first_seen + timedelta(hours=self.sla_hours))

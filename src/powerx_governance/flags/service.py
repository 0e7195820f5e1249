"""Feature flags: configured in the environment or the settings file, overridden by operators.

`plugin-version-governance` off: no scheduled scans, no notification or event deliveries,
scan and decision requests refused with a clear answer; queued work waits and runs when the
flag is on again. `plugin-upgrade-policy` off: the policy engine falls back to the plain
behaviour (newest eligible release, risk from advisories, no rules, weights, SLAs or
enforcement), marked on every finding. An operator's change is stored (it survives restarts)
and audited; `reset` returns a flag to its configured value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.feature_flags import ConfiguredFlag, Flag, FlagSource
from powerx_governance.flags.tables import FeatureFlagRow
from powerx_governance.kernel import Rescan


@dataclass(frozen=True, slots=True)
class FlagState:
    flag: Flag
    enabled: bool
    source: FlagSource
    configured: bool  # what the environment / settings file / default says
    reason: str | None = None
    changed_by: str | None = None
    changed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.flag.value,
            "enabled": self.enabled,
            "source": self.source.value,
            "configured": self.configured,
            "reason": self.reason,
            "changed_by": self.changed_by,
            "changed_at": self.changed_at,
        }


def flag_states(session: Session, configured: Mapping[Flag, ConfiguredFlag]) -> dict[Flag, FlagState]:
    overrides = {row.name: row for row in session.execute(select(FeatureFlagRow)).scalars()}
    states: dict[Flag, FlagState] = {}
    for flag in Flag:
        base, row = configured[flag], overrides.get(flag.value)
        if row is None:
            states[flag] = FlagState(flag, base.enabled, base.source, base.enabled)
        else:
            states[flag] = FlagState(
                flag,
                row.enabled,
                FlagSource.OPERATOR,
                base.enabled,
                row.reason,
                row.changed_by,
                row.changed_at,
            )
    return states


_OVERRIDES: Final = select(FeatureFlagRow.name, FeatureFlagRow.enabled)


def flags_enabled(db: Session | Connection, configured: Mapping[Flag, ConfiguredFlag]) -> dict[Flag, bool]:
    """Whether each flag is on (`flag_states`' `enabled`), read without building ORM objects: every
    API request reads it (on the connection that authenticated it)."""
    overrides: dict[str, bool] = dict(db.execute(_OVERRIDES).all())
    return {flag: bool(overrides.get(flag.value, configured[flag].enabled)) for flag in Flag}


def is_enabled(session: Session, configured: Mapping[Flag, ConfiguredFlag], flag: Flag) -> bool:
    enabled = session.execute(
        select(FeatureFlagRow.enabled).where(FeatureFlagRow.name == flag.value)
    ).scalar()
    return configured[flag].enabled if enabled is None else bool(enabled)


def _flag_event(
    flag: Flag, before: FlagState, after: FlagState, actor: str, reason: str | None, *, reset: bool
) -> AuditEvent:
    return AuditEvent(
        source="governance",
        operation="flag.reset" if reset else "flag.changed",
        resource_type="feature_flag",
        resource_id=flag.value,
        actor=actor,
        severity="warning" if not after.enabled else "info",
        changes={
            "before": {"enabled": before.enabled, "source": before.source.value},
            "after": {"enabled": after.enabled, "source": after.source.value},
        },
        meta={"reason": reason},
    )


def change_flag(
    session: Session,
    configured: Mapping[Flag, ConfiguredFlag],
    flag: Flag,
    enabled: bool | None,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    rescan: Rescan,
) -> tuple[FlagState, str | None]:
    """Override a flag (None: back to its configured value), audited; switching the upgrade
    policy queues a full re-scan. Returns the new state and that scan's id (None when none)."""
    before = flag_states(session, configured)[flag]
    session.execute(delete(FeatureFlagRow).where(FeatureFlagRow.name == flag.value))
    if enabled is not None:
        session.add(
            FeatureFlagRow(name=flag.value, enabled=enabled, reason=reason, changed_by=actor, changed_at=now)
        )
    session.flush()
    after = flag_states(session, configured)[flag]
    record(session, _flag_event(flag, before, after, actor, reason, reset=enabled is None), now)
    scan_id = None
    if flag is Flag.UPGRADE_POLICY and before.enabled != after.enabled:
        scan_id = rescan(session, actor, now)
    return after, scan_id

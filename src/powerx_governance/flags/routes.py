"""Feature flags over HTTP: anyone signed in may read them; operators change them (audited)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from powerx_governance.api.deps import Operator, Reader, ServiceDep, SessionDep
from powerx_governance.db.session import transaction
from powerx_governance.feature_flags import Flag
from powerx_governance.flags.service import change_flag, flag_states

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

router = APIRouter(prefix="/internal/version/governance/flags", tags=["flags"])
FlagName = Annotated[Flag, Path(description="plugin-version-governance | plugin-upgrade-policy")]


class FlagChange(BaseModel):
    enabled: bool
    reason: str | None = Field(default=None, max_length=1000)


@router.get("")
def list_flags(_: Reader, svc: ServiceDep, session: SessionDep) -> dict[str, Any]:
    return {"items": [s.as_dict() for s in flag_states(session, svc.settings.flags).values()]}


def _change(
    svc: GovernanceService, flag: Flag, enabled: bool | None, actor: str, reason: str | None
) -> dict[str, Any]:
    with transaction(svc.factory) as session:  # committed before the answer: the caller may act on it
        state, scan_id = change_flag(
            session,
            svc.settings.flags,
            flag,
            enabled,
            actor=actor,
            reason=reason,
            now=svc.clock(),
            rescan=svc.rescan,
        )
    svc.wake()
    return state.as_dict() | {"scan_id": scan_id}


@router.put("/{name}")
def set_flag(name: FlagName, body: FlagChange, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Turn a flag on or off at run time (kept across restarts until reset)."""
    return _change(svc, name, body.enabled, who.name, body.reason)


@router.delete("/{name}")
def reset_flag(name: FlagName, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Drop the operator's override: the flag follows the environment / settings file again."""
    return _change(svc, name, None, who.name, None)

"""Policy versions over HTTP (operators): list, show, diff, submit a new version, roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from powerx_governance.api.deps import Operator, ServiceDep, SessionDep
from powerx_governance.api.problems import declared
from powerx_governance.db.rows import MAX_ID
from powerx_governance.db.session import transaction
from powerx_governance.policy_versions import service as policies
from powerx_governance.policy_versions.model import PolicySource

router = APIRouter(prefix="/internal/version/governance/policy", tags=["policy"])


class NewVersion(BaseModel):
    content: str = Field(
        min_length=1, max_length=policies.MAX_POLICY_BYTES, description="governance_rules.yaml"
    )
    note: str | None = Field(default=None, max_length=1000)


class Rollback(BaseModel):
    version: int = Field(ge=1, le=MAX_ID)
    reason: str | None = Field(default=None, max_length=1000)


@router.get("/versions")
def list_versions(_: Operator, session: SessionDep) -> dict[str, Any]:
    current = policies.current_number(session)
    return {
        "current_version": current,
        "items": [policies.version_dict(v, current) for v in policies.versions(session)],
    }


@router.get("/versions/{number}", responses=declared(404))
def show_version(
    number: Annotated[int, Path(ge=1, le=MAX_ID)], _: Operator, session: SessionDep
) -> dict[str, Any]:
    row = policies.get_version(session, number)
    return policies.version_dict(row, policies.current_number(session), content=True)


@router.get("/diff", responses=declared(404))
def diff_versions(
    _: Operator,
    session: SessionDep,
    older: Annotated[int, Query(alias="from", ge=1, le=MAX_ID)],
    newer: Annotated[int, Query(alias="to", ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    a, b = policies.get_version(session, older), policies.get_version(session, newer)
    return {"from": older, "to": newer, "diff": policies.diff(a, b)}


@router.post("/versions", status_code=201, responses=declared(409))
def add_version(body: NewVersion, who: Operator, svc: ServiceDep) -> JSONResponse:
    """Store a valid rules document as the next version: it becomes current and a full re-scan is queued."""
    with transaction(svc.factory) as session:  # committed before the answer
        row = policies.add_version(
            session,
            body.content,
            source=PolicySource.API,
            author=who.name,
            now=svc.clock(),
            rescan=svc.policies.rescan,
            note=body.note,
        )
        found = policies.version_dict(row, row.number)
    svc.wake()
    return JSONResponse(
        found | {"created_at": found["created_at"].isoformat()},
        status_code=201,
        headers={"Location": f"{router.prefix}/versions/{found['number']}"},
    )


@router.post("/rollback", responses=declared(404, 409))
def rollback(body: Rollback, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Make an earlier version current again and queue a full re-scan."""
    with transaction(svc.factory) as session:  # committed before the answer
        previous, scan_id = policies.rollback(
            session,
            body.version,
            actor=who.name,
            now=svc.clock(),
            rescan=svc.policies.rescan,
            reason=body.reason,
        )
    svc.wake()
    return {"current_version": body.version, "previous_version": previous, "scan_id": scan_id}

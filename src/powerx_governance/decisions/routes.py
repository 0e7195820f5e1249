"""`POST /internal/version/governance/decision` and friends: tenant admins and operators decide."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from powerx_governance.api.bounds import Instant
from powerx_governance.api.deps import GovernanceOn, Reader, ServiceDep, TenantScope
from powerx_governance.api.problems import declared
from powerx_governance.db.rows import MAX_ID  # integer columns on PostgreSQL
from powerx_governance.db.session import transaction
from powerx_governance.decisions.group_commit import group_commit
from powerx_governance.decisions.model import DecisionKind, IgnoreScope
from powerx_governance.decisions.queries import BulkSelection
from powerx_governance.decisions.service import (
    DecisionRequest,
    ReopenRequest,
    decide_many,
    decision_dict,
    decisions_for,
    reopen,
)

router = APIRouter(prefix="/internal/version/governance", tags=["decisions"])


class DecisionBody(BaseModel):
    recommendation_id: int = Field(ge=1, le=MAX_ID)
    revision: int = Field(ge=1, le=MAX_ID)
    decision: DecisionKind
    reason: Annotated[str, Field(max_length=2000)] | None = None
    scheduled_for: Instant | None = None
    scope: IgnoreScope | None = None
    until: Instant | None = None
    approver: Annotated[str, Field(max_length=256)] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    correlation_id: Annotated[str, Field(max_length=128)] | None = None


class ReopenBody(BaseModel):
    revision: int = Field(ge=1, le=MAX_ID)
    reason: Annotated[str, Field(max_length=2000)] | None = None


class BulkBody(BaseModel):
    plugin_id: str
    tenant_tags: list[str] = Field(default_factory=list)
    tenant_uuids: list[str] = Field(default_factory=list)
    target_version: str | None = None
    decision: DecisionKind
    reason: Annotated[str, Field(max_length=2000)] | None = None
    scheduled_for: Instant | None = None
    scope: IgnoreScope | None = None
    until: Instant | None = None
    approver: str | None = None
    idempotency_key: str | None = None


def _request(
    body: DecisionBody | BulkBody, key: str | None, rec_id: int = 0, revision: int = 0
) -> DecisionRequest:
    return DecisionRequest(
        recommendation_id=getattr(body, "recommendation_id", rec_id),
        revision=getattr(body, "revision", revision),
        kind=body.decision,
        reason=body.reason,
        scheduled_for=body.scheduled_for,
        scope=body.scope,
        until=body.until,
        approver=body.approver,
        idempotency_key=body.idempotency_key or key,
        correlation_id=getattr(body, "correlation_id", None),
    )


@router.post(
    "/decision",
    status_code=201,
    dependencies=[GovernanceOn],
    responses={
        200: {"description": "the decision this caller made earlier under the same key"},
        **declared(404, 409, 503),
    },
)
async def post_decision(
    body: DecisionBody,
    who: Reader,
    svc: ServiceDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Upgrade, schedule or ignore one recommendation at the revision the caller saw (stale → 409).

    Decisions posted at the same time share a transaction and its commit (`group_commit`); async, so a
    request awaits its batch's commit without holding a worker thread."""
    decisions = group_commit(svc.factory, svc.notifications, svc.clock)
    result, created = await decisions.decide(_request(body, idempotency_key), who)
    if created:
        svc.metrics.decisions_taken(result["decision"], result["scope"])
    return JSONResponse(result, status_code=201 if created else 200)


@router.post(
    "/recommendations/{recommendation_id}/reopen",
    dependencies=[GovernanceOn],
    responses=declared(404, 409, 503),
)
def post_reopen(
    recommendation_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: ReopenBody, who: Reader, svc: ServiceDep
) -> dict[str, Any]:
    """Withdraw the standing decision of a decided or ignored recommendation: it is open again (audited)."""
    req = ReopenRequest(recommendation_id, body.revision, body.reason)
    with transaction(svc.factory) as session:
        rec, withdrawn = reopen(session, req, who, svc.clock())
        return {
            "recommendation_id": rec.id,
            "state": rec.state,
            "withdrawn": decision_dict(withdrawn) if withdrawn else None,
        }


@router.post("/decisions/bulk", dependencies=[GovernanceOn], responses=declared(409, 503))
def post_bulk(body: BulkBody, who: Reader, svc: ServiceDep) -> dict[str, Any]:
    """One decision per selected tenant (operators): e.g. schedule X → 2.4.1 for every `finance` tenant."""
    selection = BulkSelection(
        plugin_id=body.plugin_id,
        tenant_tags=tuple(body.tenant_tags),
        tenant_uuids=tuple(body.tenant_uuids),
        target_version=body.target_version,
    )
    with transaction(svc.factory) as session:
        batch_id, rows = decide_many(
            session, svc.notifications, selection, _request(body, None), who, svc.clock()
        )
        made = [decision_dict(r) for r in rows]
    svc.metrics.decisions_taken(body.decision.value, body.scope, len(made))
    return {"batch_id": batch_id, "count": len(made), "decisions": made}


@router.get("/decisions")
def get_decisions(
    svc: ServiceDep,
    scope: TenantScope,
    recommendation_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    with svc.factory() as session:
        rows = decisions_for(session, tenant_uuid=scope, recommendation_id=recommendation_id, limit=limit)
        return {"items": [decision_dict(r) for r in rows]}

"""Scan trigger, status and report."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from powerx_governance.api.deps import (
    GovernanceOn,
    Operator,
    Reader,
    ServiceDep,
    SessionDep,
    require,
    scoped_tenant,
)
from powerx_governance.api.problems import ProblemError, declared
from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.scans.model import AlertState, ScanKind, ScanTrigger
from powerx_governance.scans.queries import get_scan, list_alerts, recent_scans, resolve_tenants, scan_summary
from powerx_governance.scans.store_report import stored_report

router = APIRouter(prefix="/internal/version/governance", tags=["scans"])
OperatorOnly = Annotated[Principal, Depends(require(Role.OPERATOR))]  # people on call, not service tokens


class ScanKindName(StrEnum):
    FULL = "full"
    DELTA = "delta"


class ScanRequest(BaseModel):
    kind: ScanKindName = ScanKindName.FULL
    tenants: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list, max_length=20_000
    )


@router.post("/scan", status_code=202, dependencies=[GovernanceOn], responses=declared(503))
def trigger_scan(body: ScanRequest, who: Operator, svc: ServiceDep, session: SessionDep) -> JSONResponse:
    """Queue a full or delta scan (optionally for some tenants, by uuid or key); 202 with the scan id.

    Tenants the store does not know are a 422 naming them: nothing is queued."""
    if body.kind is ScanKindName.DELTA and body.tenants:
        raise ProblemError(
            422,
            "Invalid request",
            "tenants: a delta scan takes no tenant list",
            errors=[{"field": "tenants", "error": "not allowed with kind=delta"}],
        )
    tenants = resolve_tenants(session, body.tenants)
    scan_id = svc.request_scan(
        ScanKind(body.kind.value), ScanTrigger.API, tenants=tuple(tenants), requested_by=who.name
    )
    location = f"/internal/version/governance/scans/{scan_id}"
    return JSONResponse(
        {"scan_id": scan_id, "status": "queued", "status_url": location, "report_url": f"{location}/report"},
        status_code=202,
        headers={"Location": location},
    )


@router.get("/scans")
def scans(
    who: Operator, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> dict[str, Any]:
    return {"items": [scan_summary(r) for r in recent_scans(session, limit=limit)]}


@router.get("/scans/{scan_id}")
def scan_status(scan_id: str, who: Operator, session: SessionDep) -> dict[str, Any]:
    row = get_scan(session, scan_id)
    if row is None:
        raise ProblemError(404, "Not found", f"no scan {scan_id}")
    return scan_summary(row)


@router.get("/scans/{scan_id}/report")
def scan_report(scan_id: str, who: Reader, session: SessionDep, request: Request) -> dict[str, Any]:
    """The DESIGN §4 report of a finished scan: its coverage and the current findings it covered."""
    row = get_scan(session, scan_id)
    if row is None:
        raise ProblemError(404, "Not found", f"no scan {scan_id}")
    return stored_report(session, row, tenant_uuid=scoped_tenant(who, None, request.url.path))


@router.get("/alerts")
def alerts(
    who: OperatorOnly,
    session: SessionDep,
    state: AlertState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Operational alerts, newest first, with their state (firing | resolved), cause and times."""
    return {"items": list_alerts(session, state=state.value if state else None, limit=limit)}

"""`DELETE /internal/version/governance/smoke/tenants/{tenant_uuid}`: end of a smoke run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from powerx_governance.api.deps import Operator, ServiceDep
from powerx_governance.db.session import transaction
from powerx_governance.workflows.smoke_tenants import (
    Cleanup,
    remove_smoke_tenant,
)

router = APIRouter(prefix="/internal/version/governance/smoke", tags=["workflows"])


class CleanupBody(BaseModel):
    correlation_id: str | None = Field(default=None, max_length=128)


@router.delete("/tenants/{tenant_uuid}")
def remove_tenant(tenant_uuid: str, body: CleanupBody, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Remove a smoke tenant (uuid `powerx-smoke-…`) and everything stored for it (audited)."""
    with transaction(svc.factory) as session:
        removed = remove_smoke_tenant(
            session, tenant_uuid, Cleanup(who.name, body.correlation_id), svc.clock()
        )
    return {"tenant_uuid": tenant_uuid, "removed": removed}

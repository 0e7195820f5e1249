"""The queue for operators: stats (depth, jobs by state, oldest waiting) and the dead letters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from powerx_governance.api.deps import Operator, ServiceDep

router = APIRouter(prefix="/internal/version/governance/jobs", tags=["jobs"])


@router.get("/stats")
def queue_stats(_: Operator, svc: ServiceDep) -> dict[str, Any]:
    """The queue now: its backend, due jobs waiting, jobs by state, the longest wait in seconds."""
    return svc.queue.stats().as_dict()


@router.get("/dead")
def dead_letters(
    _: Operator, svc: ServiceDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    """Jobs that failed for good (retries exhausted, or a non-transient error), newest first, with
    their last error."""
    return {"items": [letter.as_dict() for letter in svc.queue.dead_letters(limit)]}

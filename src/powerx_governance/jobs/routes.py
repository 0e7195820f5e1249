"""The queue for operators: stats (depth, jobs by state, oldest waiting) and the dead letters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from powerx_governance.api.deps import Operator, ServiceDep
from powerx_governance.api.problems import ProblemError, declared
from powerx_governance.db.session import transaction
from powerx_governance.jobs.prune import clear_dead

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


@router.delete("/dead/{job_id}", responses=declared(404))
def clear_dead_letter(job_id: int, who: Operator, svc: ServiceDep) -> dict[str, Any]:
    """Clear a dead letter an operator has dealt with (logged with who); 404 when it is not a dead letter."""
    with transaction(svc.factory) as session:
        cleared = clear_dead(session, [job_id], actor=who.name)
    if not cleared:
        raise ProblemError(404, "Not found", f"job {job_id} is not a dead letter")
    return {"cleared": cleared}

"""Per-shard progress of a sharded full scan."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from powerx_governance.api.deps import Operator, SessionDep
from powerx_governance.api.problems import ProblemError, declared
from powerx_governance.scans.shards import shard_progress

router = APIRouter(prefix="/internal/version/governance", tags=["scans"])


@router.get("/scans/{scan_id}/shards", responses=declared(404))
def scan_shards(scan_id: str, _: Operator, session: SessionDep) -> dict[str, Any]:
    """Each shard's state, attempts, worker and time; 404 when the scan was not sharded (yet)."""
    progress = shard_progress(session, scan_id)
    if progress is None:
        raise ProblemError(404, "Not found", f"scan {scan_id} has no shards (not sharded, or not started)")
    return progress

"""Scans at run time: the `scan` task (the scan runtime itself is built by the service, which gathers
every component's change hook for it), and the pruning of old shard rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from powerx_governance.db.session import transaction
from powerx_governance.kernel import Contribution, InstallContext, Throttled
from powerx_governance.scans.runner import SCAN_TASK, run_scan
from powerx_governance.scans.shards import FINISH_TASK, SHARD_TASK, prune_plans, run_finish, run_shard

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

PRUNE_EVERY: Final = timedelta(hours=1)


def _prune_plans(service: GovernanceService, now: datetime) -> None:
    """Drop the plans and shard rows of scans finished longer ago than the jobs ledger's retention."""
    with transaction(service.factory) as session:
        prune_plans(session, now - service.jobs_settings().retention)


def install(ctx: InstallContext) -> Contribution:
    """The scan (or a sharded scan's coordinator), its shards, and its finish; shard rows pruned after
    the jobs ledger's retention."""
    host = ctx.host
    return Contribution(
        periodic=(Throttled(PRUNE_EVERY, _prune_plans),),
        tasks={
            SCAN_TASK: lambda payload: run_scan(host.runtime, payload["scan_id"]),
            SHARD_TASK: lambda payload: run_shard(host.runtime, payload["scan_id"], int(payload["shard"])),
            FINISH_TASK: lambda payload: run_finish(host.runtime, payload["scan_id"]),
        },
    )

"""Scans at run time: the `scan` task (the scan runtime itself is built by the service, which gathers
every component's change hook for it), and the pruning of old shard rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from powerx_governance.db.session import transaction
from powerx_governance.kernel import Contribution, InstallContext
from powerx_governance.scans.runner import SCAN_TASK, run_scan
from powerx_governance.scans.shards import FINISH_TASK, SHARD_TASK, prune_plans, run_finish, run_shard

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

PRUNE_EVERY: Final = timedelta(hours=1)


@dataclass
class PlanPruner:
    """The periodic follow-up dropping the plans and shard rows of scans finished longer ago than the
    jobs ledger's retention (at most hourly here)."""

    last_run: datetime | None = None

    def __call__(self, service: GovernanceService) -> None:
        now = service.clock()
        if self.last_run is not None and now - self.last_run < PRUNE_EVERY:
            return
        with transaction(service.factory) as session:
            prune_plans(session, now - service.jobs_settings().retention)
        self.last_run = now


def install(ctx: InstallContext) -> Contribution:
    """The scan (or a sharded scan's coordinator), its shards, and its finish; shard rows pruned after
    the jobs ledger's retention."""
    host = ctx.host
    return Contribution(
        periodic=(PlanPruner(),),
        tasks={
            SCAN_TASK: lambda payload: run_scan(host.runtime, payload["scan_id"]),
            SHARD_TASK: lambda payload: run_shard(host.runtime, payload["scan_id"], int(payload["shard"])),
            FINISH_TASK: lambda payload: run_finish(host.runtime, payload["scan_id"]),
        },
    )

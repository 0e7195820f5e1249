"""Scans at run time: the `scan` task (the scan runtime itself is built by the service, which gathers
every component's change hook for it)."""

from __future__ import annotations

from powerx_governance.kernel import Contribution, InstallContext
from powerx_governance.scans.runner import SCAN_TASK, run_scan
from powerx_governance.scans.shards import FINISH_TASK, SHARD_TASK, run_finish, run_shard


def install(ctx: InstallContext) -> Contribution:
    """The scan (or a sharded scan's coordinator), its shards, and its finish."""
    host = ctx.host
    return Contribution(
        tasks={
            SCAN_TASK: lambda payload: run_scan(host.runtime, payload["scan_id"]),
            SHARD_TASK: lambda payload: run_shard(host.runtime, payload["scan_id"], int(payload["shard"])),
            FINISH_TASK: lambda payload: run_finish(host.runtime, payload["scan_id"]),
        }
    )

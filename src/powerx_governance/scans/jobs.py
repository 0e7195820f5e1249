"""Scans at run time: the `scan` task (the scan runtime itself is built by the service, which gathers
every component's change hook for it)."""

from __future__ import annotations

from powerx_governance.kernel import Contribution, InstallContext
from powerx_governance.scans.runner import SCAN_TASK, run_scan


def install(ctx: InstallContext) -> Contribution:
    host = ctx.host
    return Contribution(tasks={SCAN_TASK: lambda payload: run_scan(host.runtime, payload["scan_id"])})

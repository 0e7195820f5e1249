"""Baselines at run time: the change hook, the after-scan re-evaluation task and its periodic trigger.

Every scan with changes re-evaluates, in its own transaction, the groups with a member among the
changed tenants (so a manifest push that makes a member drift announces it within the push's
delta scan). A scan that changes no recommendation (a plugin installed at its latest release, a
plugin removed) runs no change hooks: for those, a scheduler follow-up queues one re-evaluation of
every group after each finished scan (`baselines_evaluate`, idempotent per scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from powerx_governance.baselines.config import BaselineSettings
from powerx_governance.baselines.evaluation import Evaluator, evaluate
from powerx_governance.db.session import transaction
from powerx_governance.jobs import queue
from powerx_governance.kernel import ChangeStage, Contribution, InstallContext
from powerx_governance.notifications.runtime import NotificationRuntime
from powerx_governance.recommendations.store import ChangeSet
from powerx_governance.scans.tables import ScanRow

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

EVALUATE_TASK: Final = "baselines_evaluate"


@dataclass
class AfterScans:
    """The periodic follow-up: one re-evaluation of every group after each finished scan (scans that
    finish together share one; the job's key is the newest of them, the same on every instance)."""

    seen: set[str] = field(default_factory=set)
    since: datetime | None = None

    def __call__(self, service: GovernanceService) -> None:
        stmt = select(ScanRow.scan_id, ScanRow.finished_at).where(ScanRow.finished_at.is_not(None))
        if self.since is not None:
            stmt = stmt.where(ScanRow.finished_at >= self.since)
        with service.factory() as session:
            finished = session.execute(stmt.order_by(ScanRow.finished_at, ScanRow.scan_id)).all()
        new = [(scan_id, at) for scan_id, at in finished if scan_id not in self.seen]
        if not new:
            return
        newest, at = new[-1]
        with transaction(service.factory) as session:
            key = f"{EVALUATE_TASK}:scan:{newest}"
            queue.enqueue(session, EVALUATE_TASK, {"scan_id": newest}, key=key, now=service.clock())
        self.seen = {scan_id for scan_id, finished_at in finished if finished_at == at}
        self.since = at


@dataclass(frozen=True)
class Runner:
    service: GovernanceService
    evaluator: Evaluator

    def run(self, payload: dict[str, Any]) -> None:
        """The `baselines_evaluate` task: every group, in one transaction."""
        with transaction(self.service.factory) as session:
            evaluate(session, self.evaluator, self.service.clock())

    def on_changes(self, session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime) -> None:
        """Change hook, in the scan's transaction: the baselines and drift of the plugins whose findings
        changed, in the groups of the changed tenants (the after-scan task re-evaluates everything)."""
        tenants = {c.tenant_uuid for c in changes.changes}
        if tenants:
            plugins = {c.plugin_id for c in changes.changes}
            evaluate(session, self.evaluator, now, tenants=tenants, only_plugins=plugins)


def install(ctx: InstallContext) -> Contribution:
    """The evaluation task, its after-scan trigger and the change hook; offers the `Evaluator`."""
    settings: BaselineSettings = ctx.settings
    host = ctx.host
    evaluator = Evaluator(
        settings=settings,
        catalog=host.catalog_cache.index,
        policy=host.policies.current,
        notifications=ctx.require(NotificationRuntime),
    )
    runner = Runner(host, evaluator)
    return Contribution(
        tasks={EVALUATE_TASK: runner.run},
        periodic=(AfterScans(),),
        change_hook=runner.on_changes,
        change_stage=ChangeStage.PUBLISH,
        provides=(evaluator,),
    )

"""Baselines at run time: the change hook, the after-scan re-evaluation task and its periodic trigger.

Every scan with changes re-evaluates, in its own transaction, the groups with a member among the
changed tenants (so a manifest push that makes a member drift announces it within the push's
delta scan). A scan that changes no recommendation (a plugin installed at its latest release, a
plugin removed) runs no change hooks: for those, a scheduler follow-up queues one re-evaluation of
every group after each finished scan (`baselines_evaluate`, idempotent per scan).
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """The periodic follow-up: one re-evaluation of every group after each finished scan."""

    last_scan: str | None = None

    def __call__(self, service: GovernanceService) -> None:
        with service.factory() as session:
            newest = session.execute(
                select(ScanRow.scan_id)
                .where(ScanRow.finished_at.is_not(None))
                .order_by(ScanRow.finished_at.desc(), ScanRow.requested_at.desc())
                .limit(1)
            ).scalar_one_or_none()
        if newest is None or newest == self.last_scan:
            return
        with transaction(service.factory) as session:
            key = f"{EVALUATE_TASK}:scan:{newest}"
            queue.enqueue(session, EVALUATE_TASK, {"scan_id": newest}, key=key, now=service.clock())
        self.last_scan = newest


@dataclass(frozen=True)
class Runner:
    service: GovernanceService
    evaluator: Evaluator

    def run(self, payload: dict[str, Any]) -> None:
        """The `baselines_evaluate` task: every group, in one transaction."""
        with transaction(self.service.factory) as session:
            evaluate(session, self.evaluator, self.service.clock())

    def on_changes(self, session: Session, changes: ChangeSet, now: datetime, triggered_at: datetime) -> None:
        """Change hook: the groups of the changed tenants, in the scan's transaction."""
        tenants = {c.tenant_uuid for c in changes.changes}
        if tenants:
            evaluate(session, self.evaluator, now, tenants=tenants)


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

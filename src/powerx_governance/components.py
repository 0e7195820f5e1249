"""The composition root's list of components, in the order they are installed.

This is the one place that names them. Order matters twice, and only here: a component's
`install` may require what a component listed before it provides (decisions, events and scans
need the notifications' runtime), and change hooks of the same stage run in this order.
Adding a component is one new package with a `component.py`, plus one line below.
"""

from __future__ import annotations

from typing import Final

from powerx_governance.audit.component import COMPONENT as AUDIT
from powerx_governance.auth.component import COMPONENT as AUTH
from powerx_governance.baselines.component import COMPONENT as BASELINES
from powerx_governance.catalog.component import COMPONENT as CATALOG
from powerx_governance.console.component import COMPONENT as CONSOLE
from powerx_governance.decisions.component import COMPONENT as DECISIONS
from powerx_governance.events.component import COMPONENT as EVENTS
from powerx_governance.flags.component import COMPONENT as FLAGS
from powerx_governance.inventory.component import COMPONENT as INVENTORY
from powerx_governance.jobs.component import COMPONENT as JOBS
from powerx_governance.kernel import Component
from powerx_governance.notifications.component import COMPONENT as NOTIFICATIONS
from powerx_governance.policy_versions.component import COMPONENT as POLICY_VERSIONS
from powerx_governance.recommendations.component import COMPONENT as RECOMMENDATIONS
from powerx_governance.scans.component import COMPONENT as SCANS
from powerx_governance.sources.component import COMPONENT as SOURCES
from powerx_governance.workflows.component import COMPONENT as WORKFLOWS

COMPONENTS: Final[tuple[Component, ...]] = (
    JOBS,
    INVENTORY,
    AUTH,
    CATALOG,
    FLAGS,
    POLICY_VERSIONS,
    RECOMMENDATIONS,
    NOTIFICATIONS,
    SCANS,
    DECISIONS,
    EVENTS,
    AUDIT,
    SOURCES,
    WORKFLOWS,
    BASELINES,
    CONSOLE,
)

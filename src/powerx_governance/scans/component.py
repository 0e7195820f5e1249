"""The scans component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="scans",
    summary="Full and delta scans: request, run, finish, coverage, failure alerts.",
    tables=("powerx_governance.scans.tables", "powerx_governance.scans.shard_tables"),
    routers=("powerx_governance.scans.routes:router", "powerx_governance.scans.shard_routes:router"),
    commands={"alerts": "powerx_governance.scans.cli:alerts_app"},
    install="powerx_governance.scans.jobs:install",
)

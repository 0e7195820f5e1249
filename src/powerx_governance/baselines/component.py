"""The baselines component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component, NavEntry

COMPONENT = Component(
    name="baselines",
    summary="Tenant groups, their baselines and drift; fleet inventory; CycloneDX SBOM and VEX exports.",
    tables=("powerx_governance.baselines.tables",),
    routers=("powerx_governance.baselines.routes:router",),
    console_routers=("powerx_governance.baselines.console:router",),
    console_nav=(
        NavEntry("groups", "Groups", "/console/groups"),
        NavEntry("fleet", "Plugins", "/console/fleet/plugins"),
    ),
    commands={
        "groups": "powerx_governance.baselines.cli:groups_app",
        "inventory": "powerx_governance.baselines.cli:inventory_app",
        "export": "powerx_governance.baselines.cli:export_command",
    },
    settings="powerx_governance.baselines.config:read_settings",
    install="powerx_governance.baselines.jobs:install",
)

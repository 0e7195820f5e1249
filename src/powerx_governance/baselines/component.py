"""The baselines component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="baselines",
    summary="Tenant groups, their baselines and drift; fleet inventory; CycloneDX SBOM and VEX exports.",
    tables=("powerx_governance.baselines.tables",),
    routers=("powerx_governance.baselines.routes:router",),
    console_routers=("powerx_governance.baselines.console:router",),
    commands={
        "groups": "powerx_governance.baselines.cli:groups_app",
        "inventory": "powerx_governance.baselines.cli:inventory_app",
        "export": "powerx_governance.baselines.cli:export_command",
    },
    settings="powerx_governance.baselines.config:read_settings",
    install="powerx_governance.baselines.jobs:install",
)

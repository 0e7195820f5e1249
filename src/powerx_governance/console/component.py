"""The console component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component, NavEntry

COMPONENT = Component(
    name="console",
    summary="The web console for tenant admins and operators.",
    console_routers=("powerx_governance.console.routes:router",),
    console_nav=(
        NavEntry("overview", "Overview", "/console"),
        NavEntry("adoption", "Adoption", "/console/adoption"),
        NavEntry("tenants", "Tenants", "/console/tenants", fleet_wide=True),
        NavEntry("bulk", "Bulk decisions", "/console/bulk", fleet_wide=True),
        NavEntry("scans", "Scans", "/console/scans", fleet_wide=True),
    ),
    settings="powerx_governance.console.config:read_settings",
)

"""The console component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="console",
    summary="The web console for tenant admins and operators.",
    console_routers=("powerx_governance.console.routes:router",),
    settings="powerx_governance.console.config:read_settings",
)

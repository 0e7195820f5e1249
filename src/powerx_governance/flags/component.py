"""The flags component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="flags",
    summary="Feature flags: configured, overridden at run time, audited.",
    tables=("powerx_governance.flags.tables",),
    routers=("powerx_governance.flags.routes:router",),
    commands={"flags": "powerx_governance.flags.cli:flags_app"},
)

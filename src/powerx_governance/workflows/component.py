"""The workflows component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="workflows",
    summary="Smoke tests, reconciliation and metrics reports over the other components.",
    routers=("powerx_governance.workflows.routes:router",),
    commands={
        "smoke": "powerx_governance.workflows.cli:smoke_command",
        "reconcile": "powerx_governance.workflows.cli:reconcile_command",
        "metrics": "powerx_governance.workflows.cli:metrics_command",
    },
)

"""The decisions component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="decisions",
    summary="Admin decisions (upgrade, schedule, ignore), their follow-ups and SLA breaches.",
    tables=("powerx_governance.decisions.tables",),
    routers=("powerx_governance.decisions.routes:router",),
    commands={
        "decide": "powerx_governance.decisions.cli:decide_command",
        "reopen": "powerx_governance.decisions.cli:reopen_command",
    },
    install="powerx_governance.decisions.jobs:install",
)

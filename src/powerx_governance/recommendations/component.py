"""The recommendations component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="recommendations",
    summary="Findings per installation with their revisions and verdicts.",
    tables=("powerx_governance.recommendations.tables",),
    routers=("powerx_governance.recommendations.routes:router",),
)

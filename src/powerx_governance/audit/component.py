"""The audit component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="audit",
    summary="The tamper-evident audit trail: chain, verify, export, prune, ship.",
    tables=("powerx_governance.audit.tables",),
    routers=("powerx_governance.audit.routes:router",),
    root_commands={"audit": "powerx_governance.audit.cli:audit_app"},
    settings="powerx_governance.audit.sink:read_settings",
    install="powerx_governance.audit.sink:install",
)

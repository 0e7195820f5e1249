"""The policy versions component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="policy_versions",
    summary="Versioned governance rules: file sync, history, diff, rollback.",
    tables=("powerx_governance.policy_versions.tables",),
    routers=("powerx_governance.policy_versions.routes:router",),
    commands={"policy": "powerx_governance.policy_versions.cli:policy_app"},
)

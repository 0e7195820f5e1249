"""The auth component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="auth",
    summary="API tokens, roles and tenant scope; failed-authentication throttling.",
    tables=("powerx_governance.auth.tables",),
    commands={"token": "powerx_governance.auth.cli:token_app"},
)

"""The notifications component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="notifications",
    summary="Outbox, routing, digests and delivery over console, notify service, SMTP and IM webhooks.",
    tables=("powerx_governance.notifications.tables",),
    settings="powerx_governance.notifications.jobs:read_settings",
    install="powerx_governance.notifications.jobs:install",
)

"""The events component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="events",
    summary="CloudEvents log, subscriptions and signed webhook delivery.",
    tables=("powerx_governance.events.tables",),
    routers=("powerx_governance.events.routes:router",),
    commands={"events": "powerx_governance.events.cli:events_app"},
    settings="powerx_governance.events.jobs:read_settings",
    install="powerx_governance.events.jobs:install",
)

"""The sources component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="sources",
    summary="Push webhooks: manifests, releases and advisories pushed by PowerX.",
    routers=("powerx_governance.sources.webhooks:router",),
)

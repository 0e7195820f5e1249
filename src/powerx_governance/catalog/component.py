"""The catalog component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="catalog",
    summary="Plugin releases and advisories: the catalog source merged with pushed records.",
    tables=("powerx_governance.catalog.tables",),
    commands={"pushes": "powerx_governance.catalog.cli:pushes_app"},
)

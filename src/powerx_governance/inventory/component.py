"""The inventory component's declaration (see `powerx_governance.kernel`)."""

from powerx_governance.kernel import Component

COMPONENT = Component(
    name="inventory",
    summary="Tenants and their installed plugins as last read from the inventory.",
    tables=("powerx_governance.inventory.tables",),
)

"""How a component's command opens the running service without importing the composition root.

Components never import `powerx_governance.service` at run time (it imports them); like the
root names components by "module:attribute" references, a command names the root the same way
and resolves it when it runs. Settings are read once, from the environment, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from powerx_governance.kernel import resolve

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

SERVICE_OPENER: Final = "powerx_governance.service:open_service"


def open_service() -> GovernanceService:
    """The service configured by this process's environment (migrated, components installed)."""
    opener = resolve(SERVICE_OPENER, "command line")
    service: GovernanceService = opener()
    return service

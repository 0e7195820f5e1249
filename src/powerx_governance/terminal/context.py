"""How a component's command opens the running service without importing the composition root.

Components never import `powerx_governance.service` at run time (it imports them); like the
root names components by "module:attribute" references, a command names the root the same way
and resolves it when it runs. Settings are read once, from the environment, here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from powerx_governance.kernel import resolve

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

SERVICE_OPENER: Final = "powerx_governance.service:open_service"


@contextmanager
def opened_service() -> Iterator[GovernanceService]:
    """`open_service` for one command: stopped (connections closed) when the command ends."""
    service = open_service()
    try:
        yield service
    finally:
        service.stop()


def open_service() -> GovernanceService:
    """The service configured by this process's environment (migrated, components installed)."""
    opener = resolve(SERVICE_OPENER, "command line")
    service: GovernanceService = opener()
    return service

"""What notification code needs besides a session: settings, routes and compiled templates.

Built once at start from the notifications' settings section (`component.install`) and handed
explicitly to every function that routes, composes or retries; other components receive it as
a collaborator (`InstallContext.require(NotificationRuntime)`), never through the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from powerx_governance.notifications.config import NotificationSettings
from powerx_governance.notifications.routes_file import RoutesConfig
from powerx_governance.notifications.templates import TemplateSet


@dataclass(frozen=True, slots=True)
class NotificationRuntime:
    """What notification code needs besides a session: settings, routes and compiled templates."""

    settings: NotificationSettings
    routes: RoutesConfig
    templates: TemplateSet

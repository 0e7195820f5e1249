"""What notification code needs besides a session, and where it finds it.

The runtime (routes, templates, settings) travels in `session.info` of the service's sessions
(`jobs.install` puts it there); on a session without it notification functions do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.orm import Session

from powerx_governance.notifications.config import NotificationSettings, RoutesConfig
from powerx_governance.notifications.templates import TemplateSet

RUNTIME_KEY: Final = "powerx.notifications.runtime"


@dataclass(frozen=True, slots=True)
class NotificationRuntime:
    """What notification code needs besides a session: settings, routes and compiled templates."""

    settings: NotificationSettings
    routes: RoutesConfig
    templates: TemplateSet


def runtime_of(session: Session) -> NotificationRuntime | None:
    """The runtime attached to this session's factory, if notifications are installed."""
    found = session.info.get(RUNTIME_KEY)
    return found if isinstance(found, NotificationRuntime) else None

"""Notification configuration: the environment section, the channel kinds and the templates file.

The routes file (`notification_routes.yaml`) is read by `routes_file`; the webhook allow-list
lives in `http.allow_list` (event subscriptions use it too). Files are refused as a whole when
invalid; errors name the file and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import msgspec

from powerx_governance.errors import InputError, InputProblem
from powerx_governance.records import convert_record
from powerx_governance.safe_yaml import load_document

TEMPLATES_SCHEMA: Final = "powerx.notification-templates/v1"
CONFIG_DIR: Final = Path(__file__).resolve().parents[3] / "config" / "version"
DEFAULT_TEMPLATES: Final = CONFIG_DIR / "notification_templates.yaml"
_LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})


class ChannelType(StrEnum):
    CONSOLE = "console"
    NOTIFY_SERVICE = "notify_service"
    EMAIL = "email"
    WECOM = "wecom"
    FEISHU = "feishu"
    DINGTALK = "dingtalk"
    SLACK = "slack"


WEBHOOK_CHANNELS: Final = frozenset(
    {ChannelType.WECOM, ChannelType.FEISHU, ChannelType.DINGTALK, ChannelType.SLACK}
)


class DigestPeriod(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"
    NONE = "none"  # findings not sent at once are not sent to this recipient at all


# -- environment ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str  # POWERX_SMTP_HOST
    port: int  # POWERX_SMTP_PORT
    sender: str  # POWERX_SMTP_FROM
    user: str | None  # POWERX_SMTP_USER
    password: str | None  # POWERX_SMTP_PASSWORD
    starttls: bool  # POWERX_SMTP_STARTTLS


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    templates_path: Path  # POWERX_NOTIFICATION_TEMPLATES
    routes_path: Path | None  # POWERX_NOTIFICATION_ROUTES; None: console only
    smtp: SmtpSettings | None  # None without POWERX_SMTP_HOST
    notify_url: str | None  # POWERX_NOTIFY_URL: base URL of the PowerX notification service
    notify_token: str | None  # POWERX_NOTIFY_TOKEN: bearer token for it
    console_url: str  # POWERX_CONSOLE_URL: base of the links in messages


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _smtp(env: Mapping[str, str]) -> SmtpSettings | None:
    host = env.get("POWERX_SMTP_HOST")
    if not host:
        return None
    user = env.get("POWERX_SMTP_USER") or None
    starttls = _flag(env.get("POWERX_SMTP_STARTTLS"), default=False)
    if user and not starttls and host not in _LOOPBACK_HOSTS:
        raise ValueError(
            "POWERX_SMTP_USER is set: refusing to send SMTP credentials without POWERX_SMTP_STARTTLS=1"
        )
    port = env.get("POWERX_SMTP_PORT", "25")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"POWERX_SMTP_PORT must be a TCP port, got {port!r}")
    return SmtpSettings(
        host=host,
        port=int(port),
        sender=env.get("POWERX_SMTP_FROM", "powerx-governance@localhost"),
        user=user,
        password=env.get("POWERX_SMTP_PASSWORD") or None,
        starttls=starttls,
    )


def load_notification_settings(env: Mapping[str, str]) -> NotificationSettings:
    """Notification settings from the environment snapshot; ValueError names the bad variable."""
    routes = env.get("POWERX_NOTIFICATION_ROUTES")
    return NotificationSettings(
        templates_path=Path(env.get("POWERX_NOTIFICATION_TEMPLATES") or DEFAULT_TEMPLATES),
        routes_path=Path(routes) if routes else None,
        smtp=_smtp(env),
        notify_url=(env.get("POWERX_NOTIFY_URL") or "").rstrip("/") or None,
        notify_token=env.get("POWERX_NOTIFY_TOKEN") or None,
        console_url=(env.get("POWERX_CONSOLE_URL") or "http://127.0.0.1:8717/console").rstrip("/"),
    )


# -- the templates file ---------------------------------------------------------------------------


class TemplatesFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`notification_templates.yaml` as data; `templates.TemplateSet` compiles and checks it."""

    schema: str
    actions: dict[str, str] = msgspec.field(default_factory=dict)
    messages: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)


def load_templates_file(path: Path) -> TemplatesFile:
    """Read and type-check the templates file; InputError names the file and field."""
    source = str(path)
    parsed = convert_record(
        load_document(path), TemplatesFile, source=source, record="notification templates"
    )
    if isinstance(parsed, InputProblem):
        raise InputError(parsed)
    if parsed.schema != TEMPLATES_SCHEMA:
        raise InputError(
            InputProblem(
                source,
                "notification templates",
                "schema",
                f"unsupported schema {parsed.schema!r} (expected {TEMPLATES_SCHEMA})",
            )
        )
    return parsed

"""`notification_routes.yaml`: who hears about what.

Named recipients (a channel, its address, and a per-recipient priority filter: which risk levels
go out at once and where the rest go), the routes the governance rules name
(`defaults.notification`, `rules[].notification.route`) mapped to recipients, delivery retries,
digest timing and the webhook allow-list. Without a routes file every event goes to the console
(the embedded default: no external service). Refused as a whole when invalid; errors name the
file and the field.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from powerx_governance.domain import Severity
from powerx_governance.durations import parse_duration
from powerx_governance.errors import InputError, InputProblem
from powerx_governance.http.allow_list import AllowList
from powerx_governance.notifications.config import (
    WEBHOOK_CHANNELS,
    ChannelType,
    DigestPeriod,
    NotificationSettings,
)
from powerx_governance.notifications.model import EntryMode, EventKind
from powerx_governance.records import convert_record
from powerx_governance.safe_yaml import load_document

ROUTES_SCHEMA: Final = "powerx.notification-routes/v1"
DEFAULT_ROUTE: Final = "default"
_RECIPIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PLACEHOLDERS: Final = frozenset({"tenant_key", "tenant_uuid"})


class _Recipient(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: ChannelType
    to: tuple[str, ...] = ()
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    audience: str | None = None
    format: Literal["card", "post"] | None = None
    tenants: tuple[str, ...] = ()
    events: tuple[EventKind, ...] = tuple(EventKind)
    immediate: tuple[Severity, ...] = (Severity.CRITICAL,)
    digest: DigestPeriod = DigestPeriod.DAILY
    min_risk: Severity = Severity.NONE


class _Delivery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_attempts: int = 8
    backoff_base: str = "30s"
    backoff_cap: str = "1h"
    max_retry_after: str = "6h"
    max_items_per_message: int = 50
    connect_timeout: str = "3s"
    read_timeout: str = "10s"


class _Digests(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    daily_at: str = "08:00"


class _Webhooks(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allow_hosts: tuple[str, ...] = ()
    require_https: bool = True


class _RoutesFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    schema: str
    delivery: _Delivery = msgspec.field(default_factory=_Delivery)
    digests: _Digests = msgspec.field(default_factory=_Digests)
    webhooks: _Webhooks = msgspec.field(default_factory=_Webhooks)
    recipients: dict[str, Any] = msgspec.field(default_factory=dict)  # checked one by one: errors name the id
    routes: dict[str, Any] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone (or something) a message goes to, and which messages they want when."""

    id: str
    channel: ChannelType
    to: tuple[str, ...] = ()  # email addresses; `{tenant_key}`/`{tenant_uuid}` placeholders
    url: str | None = None  # webhook URL
    secret: str | None = None  # DingTalk / Feishu signing secret
    audience: str = "tenant_admins"  # notify service audience; placeholders as in `to`
    format: str = "card"  # Feishu: interactive card or rich-text post
    tenants: frozenset[str] = frozenset()  # tenant uuids or keys; empty: every tenant
    events: frozenset[EventKind] = frozenset(EventKind)
    immediate: frozenset[Severity] = frozenset({Severity.CRITICAL})
    digest: DigestPeriod = DigestPeriod.DAILY
    min_risk: Severity = Severity.NONE

    def covers(self, tenant_uuid: str | None, tenant_key: str | None) -> bool:
        """This recipient hears about this tenant (tenant-less events only reach unrestricted ones)."""
        if not self.tenants:
            return True
        return tenant_uuid in self.tenants or (tenant_key is not None and tenant_key in self.tenants)

    def mode_for(self, kind: EventKind, risk: Severity) -> EntryMode | None:
        """At once, in a digest, or not at all. Events other than findings always go at once."""
        if kind not in self.events:
            return None
        if kind is not EventKind.FINDING:
            return EntryMode.IMMEDIATE
        if risk.rank < self.min_risk.rank:
            return None
        if risk in self.immediate:
            return EntryMode.IMMEDIATE
        return None if self.digest is DigestPeriod.NONE else EntryMode.DIGEST


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    max_attempts: int = 8
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0
    max_retry_after: float = 6 * 3600.0
    max_items_per_message: int = 50
    connect_timeout: float = 3.0
    read_timeout: float = 10.0


CONSOLE_RECIPIENT: Final = Recipient(
    id="console", channel=ChannelType.CONSOLE, immediate=frozenset(Severity), digest=DigestPeriod.NONE
)


@dataclass(frozen=True, slots=True)
class RoutesConfig:
    recipients: Mapping[str, Recipient]
    routes: Mapping[str, tuple[str, ...]]
    delivery: DeliveryPolicy = DeliveryPolicy()
    daily_at: time = time(8, 0)
    allow: AllowList = AllowList(frozenset(), (), ())
    require_https: bool = True
    source: str = "built-in defaults"

    def recipients_for(self, route: str | None) -> tuple[Recipient, ...]:
        """The recipients of a rules route name; unknown or absent routes use the `default` route."""
        ids = self.routes.get(route) if route is not None else None
        if ids is None:
            ids = self.routes.get(DEFAULT_ROUTE, ())
        return tuple(self.recipients[i] for i in ids)

    def knows(self, route: str | None) -> bool:
        return route is not None and route in self.routes


BUILT_IN_ROUTES: Final = RoutesConfig(
    recipients={CONSOLE_RECIPIENT.id: CONSOLE_RECIPIENT}, routes={DEFAULT_ROUTE: (CONSOLE_RECIPIENT.id,)}
)


def _problem(source: str, field: str | None, error: str) -> InputError:
    return InputError(InputProblem(source, "notification routes", field, error))


def _seconds(source: str, field: str, text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise _problem(source, field, str(exc)) from exc


def _delivery(source: str, d: _Delivery) -> DeliveryPolicy:
    for name in ("max_attempts", "max_items_per_message"):
        if getattr(d, name) < 1:
            raise _problem(source, f"delivery.{name}", "must be at least 1")
    seconds = {
        name: _seconds(source, f"delivery.{name}", getattr(d, name))
        for name in ("backoff_base", "backoff_cap", "max_retry_after", "connect_timeout", "read_timeout")
    }
    if min(seconds["connect_timeout"], seconds["read_timeout"]) <= 0:
        raise _problem(source, "delivery.read_timeout", "timeouts must be positive")
    return DeliveryPolicy(
        max_attempts=d.max_attempts,
        max_items_per_message=d.max_items_per_message,
        **seconds,
    )


def _daily_at(source: str, text: str) -> time:
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text.strip())
    if match is None:
        raise _problem(source, "digests.daily_at", f"{text!r} is not a UTC time of day like 08:00")
    return time(int(match[1]), int(match[2]))


def _check_placeholders(source: str, field: str, text: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise _problem(source, field, f"bad placeholder: {exc}") from exc
    unknown = names - _PLACEHOLDERS
    if unknown:
        raise _problem(
            source,
            field,
            f"unknown placeholder {sorted(unknown)[0]!r}; use {{tenant_key}} or {{tenant_uuid}}",
        )


def _env_value(source: str, field: str, name: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if not value:
        raise _problem(source, field, f"environment variable {name} is not set")
    return value


@dataclass(frozen=True, slots=True)
class _Context:
    """What recipient validation needs besides the recipient itself."""

    source: str
    settings: NotificationSettings
    allow: AllowList
    require_https: bool
    env: Mapping[str, str]


def _check_webhook_url(ctx: _Context, field: str, url: str) -> None:
    parts = urlsplit(url)
    allowed_schemes = ("https",) if ctx.require_https else ("https", "http")
    if parts.scheme not in allowed_schemes:
        raise _problem(ctx.source, field, f"scheme must be {' or '.join(allowed_schemes)}")
    if not parts.hostname:
        raise _problem(ctx.source, field, "URL has no host")
    if not ctx.allow.allows_host(parts.hostname):
        raise _problem(ctx.source, field, f"host {parts.hostname!r} is not on webhooks.allow_hosts")


_FIELDS_BY_CHANNEL: Final = {
    ChannelType.CONSOLE: frozenset(),
    ChannelType.NOTIFY_SERVICE: frozenset({"audience"}),
    ChannelType.EMAIL: frozenset({"to"}),
    ChannelType.WECOM: frozenset({"url", "url_env"}),
    ChannelType.SLACK: frozenset({"url", "url_env"}),
    ChannelType.DINGTALK: frozenset({"url", "url_env", "secret_env"}),
    ChannelType.FEISHU: frozenset({"url", "url_env", "secret_env", "format"}),
}
_CHANNEL_FIELDS: Final = frozenset({"to", "url", "url_env", "secret_env", "audience", "format"})


def _check_channel_fields(ctx: _Context, where: str, spec: _Recipient) -> None:
    allowed = _FIELDS_BY_CHANNEL[spec.channel]
    for name in sorted(_CHANNEL_FIELDS - allowed):
        if getattr(spec, name) not in (None, ()):
            raise _problem(ctx.source, f"{where}.{name}", f"not used by the {spec.channel.value} channel")


def _address(ctx: _Context, where: str, spec: _Recipient) -> dict[str, Any]:
    """The channel-specific fields of a recipient, checked."""
    if spec.channel is ChannelType.EMAIL:
        if ctx.settings.smtp is None:
            raise _problem(ctx.source, f"{where}.channel", "email needs POWERX_SMTP_HOST")
        if not spec.to:
            raise _problem(ctx.source, f"{where}.to", "at least one address is required")
        for i, address in enumerate(spec.to):
            if "@" not in address or any(c in address for c in "\r\n,;<> "):
                raise _problem(ctx.source, f"{where}.to[{i}]", f"{address!r} is not one email address")
            _check_placeholders(ctx.source, f"{where}.to[{i}]", address)
        return {"to": spec.to}
    if spec.channel is ChannelType.NOTIFY_SERVICE:
        if ctx.settings.notify_url is None:
            raise _problem(ctx.source, f"{where}.channel", "notify_service needs POWERX_NOTIFY_URL")
        audience = spec.audience or "tenant_admins"
        _check_placeholders(ctx.source, f"{where}.audience", audience)
        return {"audience": audience}
    if spec.channel in WEBHOOK_CHANNELS:
        return _webhook_address(ctx, where, spec)
    return {}


def _webhook_address(ctx: _Context, where: str, spec: _Recipient) -> dict[str, Any]:
    if (spec.url is None) == (spec.url_env is None):
        raise _problem(ctx.source, f"{where}.url", "give exactly one of url and url_env")
    field = f"{where}.url" if spec.url is not None else f"{where}.url_env"
    url = spec.url if spec.url is not None else _env_value(ctx.source, field, spec.url_env or "", ctx.env)
    _check_webhook_url(ctx, field, url)
    secret = None
    if spec.secret_env is not None:
        secret = _env_value(ctx.source, f"{where}.secret_env", spec.secret_env, ctx.env)
    return {"url": url, "secret": secret, "format": spec.format or "card"}


def _recipient(ctx: _Context, rid: str, raw: Any) -> Recipient:
    where = f"recipients.{rid}"
    if not _RECIPIENT_ID.match(rid):
        raise _problem(ctx.source, where, "recipient ids are 1-64 letters, digits, '.', '_' or '-'")
    spec = convert_record(raw, _Recipient, source=ctx.source, record="notification routes")
    if isinstance(spec, InputProblem):
        raise _problem(ctx.source, f"{where}.{spec.field}" if spec.field else where, spec.error)
    _check_channel_fields(ctx, where, spec)
    return Recipient(
        id=rid,
        channel=spec.channel,
        tenants=frozenset(spec.tenants),
        events=frozenset(spec.events),
        immediate=frozenset(spec.immediate),
        digest=spec.digest,
        min_risk=spec.min_risk,
        **_address(ctx, where, spec),
    )


def _routes(
    source: str, raw: Mapping[str, Any], recipients: Mapping[str, Recipient]
) -> dict[str, tuple[str, ...]]:
    routes: dict[str, tuple[str, ...]] = {}
    for name, ids in raw.items():
        if not str(name).strip():
            raise _problem(source, "routes", "route names must not be empty")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise _problem(source, f"routes.{name}", "expected a list of recipient ids")
        for i, rid in enumerate(ids):
            if rid not in recipients:
                raise _problem(source, f"routes.{name}[{i}]", f"unknown recipient {rid!r}")
        routes[str(name)] = tuple(ids)
    return routes


def routes_from_data(
    raw: Any, source: str, settings: NotificationSettings, env: Mapping[str, str]
) -> RoutesConfig:
    """Validate a routes document given as plain data; InputError names the field."""
    parsed = convert_record(raw, _RoutesFile, source=source, record="notification routes")
    if isinstance(parsed, InputProblem):
        raise InputError(parsed)
    if parsed.schema != ROUTES_SCHEMA:
        raise _problem(source, "schema", f"unsupported schema {parsed.schema!r} (expected {ROUTES_SCHEMA})")
    try:
        allow = AllowList.parse(parsed.webhooks.allow_hosts)
    except ValueError as exc:
        raise _problem(source, "webhooks.allow_hosts", str(exc)) from exc
    ctx = _Context(source, settings, allow, parsed.webhooks.require_https, env)
    recipients = {str(rid): _recipient(ctx, str(rid), raw) for rid, raw in parsed.recipients.items()}
    return RoutesConfig(
        recipients=recipients,
        routes=_routes(source, parsed.routes, recipients),
        delivery=_delivery(source, parsed.delivery),
        daily_at=_daily_at(source, parsed.digests.daily_at),
        allow=allow,
        require_https=parsed.webhooks.require_https,
        source=source,
    )


def load_routes(settings: NotificationSettings, env: Mapping[str, str]) -> RoutesConfig:
    """The routes file named by the settings, or the built-in console-only routes."""
    if settings.routes_path is None:
        return BUILT_IN_ROUTES
    path = settings.routes_path
    return routes_from_data(load_document(path), str(path), settings, env)

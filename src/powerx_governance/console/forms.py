"""Console forms: url-encoded bodies, and the decision and bulk forms as service requests.

Date/time pickers send local wall-clock times (`datetime-local`); the page's script adds the
viewer's IANA time zone in a hidden `tz` field, without which the times are read as UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Final
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerx_governance.api.bounds import parse_id, to_utc
from powerx_governance.decisions.model import DecisionKind, IgnoreScope
from powerx_governance.decisions.queries import BulkSelection
from powerx_governance.decisions.service import DecisionRequest

MAX_FIELDS: Final = 100
FORM_TYPE: Final = "application/x-www-form-urlencoded"
MAX_TEXT: Final = 2000


class FormError(ValueError):
    """A form value that cannot be used; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class FormData:
    values: dict[str, list[str]]

    def get(self, name: str) -> str | None:
        """The first value of `name`, stripped; None when missing or blank."""
        found = self.values.get(name) or [""]
        return found[0].strip() or None

    def all(self, name: str) -> list[str]:
        return [v.strip() for v in self.values.get(name, []) if v.strip()]


def parse_form(content_type: str, body: bytes) -> FormData:
    """An url-encoded body; anything else (multipart, JSON) gives an empty form."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() != FORM_TYPE:
        return FormData({})
    try:
        text = body.decode("utf-8")
        return FormData(
            parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False)
        )
    except (UnicodeDecodeError, ValueError):
        return FormData({})


def zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_datetime(
    value: str | None, tz_name: str | None, field: str, *, end_of_day: bool = False
) -> datetime | None:
    """`2026-12-01T09:30` (or a bare date) in the viewer's zone, as an aware UTC time."""
    if value is None:
        return None
    try:
        parsed = (
            datetime.combine(datetime.fromisoformat(value).date(), time(23, 59, 59) if end_of_day else time())
            if len(value) == 10
            else datetime.fromisoformat(value)
        )
    except ValueError as exc:
        raise FormError(field, "enter a date and time like 2026-12-01 09:30") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz_name) or UTC)
    in_utc = to_utc(parsed)
    if in_utc is None:
        raise FormError(field, "that date is out of range")
    return in_utc


def _text(form: FormData, name: str, limit: int = MAX_TEXT) -> str | None:
    value = form.get(name)
    if value is not None and len(value) > limit:
        raise FormError(name, f"at most {limit} characters")
    return value


def _kind(form: FormData) -> DecisionKind:
    try:
        return DecisionKind(form.get("decision") or "")
    except ValueError as exc:
        raise FormError("decision", "choose upgrade now, schedule or ignore") from exc


def _scope(form: FormData) -> IgnoreScope | None:
    value = form.get("scope")
    try:
        return IgnoreScope(value) if value else None
    except ValueError as exc:
        raise FormError("scope", "choose one of the listed scopes") from exc


def _template(form: FormData, kind: DecisionKind, recommendation_id: int, revision: int) -> DecisionRequest:
    tz_name = form.get("tz")
    ignore = kind is DecisionKind.IGNORE
    return DecisionRequest(
        recommendation_id=recommendation_id,
        revision=revision,
        kind=kind,
        reason=_text(form, "reason") if ignore else None,
        scheduled_for=local_datetime(form.get("scheduled_for"), tz_name, "scheduled_for")
        if kind is DecisionKind.SCHEDULE
        else None,
        scope=_scope(form) if ignore else None,
        until=local_datetime(form.get("until"), tz_name, "until", end_of_day=True) if ignore else None,
        approver=_text(form, "approver", 256) if ignore else None,
        idempotency_key=_text(form, "idempotency_key", 200),
    )


def decision_request(form: FormData, recommendation_id: int) -> DecisionRequest:
    """One card's decision form as a request at the revision the admin saw."""
    kind = _kind(form)
    revision = parse_id(form.get("revision"))
    if revision is None:
        raise FormError("revision", "the form lost its revision: reload the card")
    return _template(form, kind, recommendation_id, revision)


def bulk_selection(form: FormData) -> BulkSelection:
    plugin_id = form.get("plugin")
    if plugin_id is None:
        raise FormError("plugin", "choose the plugin the decision is about")
    tags = tuple(t.strip() for value in form.all("tags") for t in value.split(",") if t.strip())
    tenants = tuple(t.strip() for value in form.all("tenants") for t in value.split() if t.strip())
    return BulkSelection(
        plugin_id=plugin_id,
        tenant_tags=tags,
        tenant_uuids=tenants,
        target_version=form.get("target"),
        advisory_id=form.get("advisory"),
    )


def bulk_template(form: FormData) -> DecisionRequest:
    return _template(form, _kind(form), 0, 0)


def new_form_key() -> str:
    """The idempotency key a rendered form carries: submitting it twice records one decision."""
    return f"console:{uuid.uuid4()}"

"""Audit events and their validation: PowerX's audit fields, normalised, masked JSON, the errors.

See `audit.service` for the trail as a whole.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Final, Protocol

from powerx_governance.observability.logging import mask

LIMITS: Final = {  # column widths of audit_events
    "event_id": 64,
    "tenant_uuid": 128,
    "correlation_id": 128,
    "source": 64,
    "operation": 64,
    "resource_type": 64,
    "resource_id": 256,
    "outcome": 16,
    "severity": 16,
    "actor": 256,
}
_REQUIRED: Final = ("source", "operation", "resource_type", "actor", "outcome", "severity")
_OPTIONAL: Final = ("tenant_uuid", "correlation_id", "resource_id")
_EVENT_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_CHANGE_KEYS: Final = frozenset({"before", "after"})


class StoredEvent(Protocol):
    """A stored record: an AuditEventRow, or a Core row of the audit_events columns."""

    seq: int
    event_id: str
    occurred_at: datetime
    recorded_at: datetime
    tenant_uuid: str | None
    correlation_id: str | None
    source: str
    operation: str
    resource_type: str
    resource_id: str | None
    outcome: str
    severity: str
    actor: str
    changes: dict[str, Any]
    meta: dict[str, Any]
    prev_hash: str
    hash: str


class AuditError(Exception):
    """The audit trail refused an operation."""


class AuditEventError(AuditError, ValueError):
    """An event that cannot be recorded; `field` names the field at fault (dotted path)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class EventConflictError(AuditError):
    """An event id that is already recorded with different content."""

    def __init__(self, event_id: str, seq: int | None) -> None:
        where = f" (seq {seq})" if seq is not None else " earlier in the same batch"
        super().__init__(f"event {event_id} is already recorded{where} with different content")
        self.event_id = event_id
        self.seq = seq


class RetentionError(AuditError, ValueError):
    """A retention period or pruning date that would delete records kept for less than a year."""


class ChainBrokenError(AuditError):
    """Pruning refused: the records it would delete do not verify (deleting them hides tampering)."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"the audit chain is broken at seq {result.first_bad_seq}: {result.problem}")
        self.result = result


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of `verify`: how many records were checked and the first bad one, if any."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event in PowerX's field names; `event_id` is a new uuid4 when not given."""

    source: str
    operation: str
    resource_type: str
    resource_id: str | None
    actor: str
    outcome: str = "success"
    severity: str = "info"
    tenant_uuid: str | None = None
    correlation_id: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)  # optional "before" / "after"
    meta: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None  # default: the time it is recorded
    event_id: str | None = None

    def __post_init__(self) -> None:
        """Check the fields; `changes` and `meta` become normalised, masked JSON (what is stored)."""
        if self.event_id is None:
            object.__setattr__(self, "event_id", str(uuid.uuid4()))
        _check_event(self)
        object.__setattr__(self, "changes", mask(_json_value(self.changes, "changes")))
        object.__setattr__(self, "meta", mask(_json_value(self.meta, "meta")))


def _check_text(name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise AuditEventError(name, "must be a non-empty string")
    if len(value) > LIMITS[name]:
        raise AuditEventError(name, f"is longer than {LIMITS[name]} characters")
    _check_chars(value, name)


def _check_event(event: AuditEvent) -> None:
    for name in _REQUIRED:
        _check_text(name, getattr(event, name), required=True)
    for name in _OPTIONAL:
        _check_text(name, getattr(event, name), required=False)
    _check_text("event_id", event.event_id, required=True)
    if not _EVENT_ID.fullmatch(str(event.event_id)):
        raise AuditEventError("event_id", "may hold only letters, digits and . _ : -")
    if event.occurred_at is not None and event.occurred_at.tzinfo is None:
        raise AuditEventError("occurred_at", "needs a time zone")
    if not isinstance(event.changes, Mapping):
        raise AuditEventError("changes", "must be an object")
    for key, value in event.changes.items():
        if key not in _CHANGE_KEYS:
            raise AuditEventError(f"changes.{key}", "unknown key (changes holds 'before' and 'after')")
        if value is not None and not isinstance(value, Mapping):
            raise AuditEventError(f"changes.{key}", "must be an object or null")
    if not isinstance(event.meta, Mapping):
        raise AuditEventError("meta", "must be an object")


def rfc3339(moment: datetime) -> str:
    """The canonical timestamp: UTC, microseconds, `Z` (what the hash covers)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _json_number(value: float, path: str) -> float | int:
    if not math.isfinite(value):
        raise AuditEventError(path, "is not a finite number")
    if value == 0:
        return 0.0
    if value.is_integer() and "e" in repr(value):
        return int(value)
    return value


def _json_value(value: Any, path: str) -> Any:
    """`value` as plain JSON data that reads back identically from SQLite and PostgreSQL."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        _check_chars(value, path)
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_number(value, path)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise AuditEventError(path, "is a datetime without a time zone")
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {_json_key(k, path): _json_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise AuditEventError(path, f"a {type(value).__name__} is not a JSON value")


def _json_key(key: Any, path: str) -> str:
    name = str(key.value if isinstance(key, Enum) else key)
    _check_chars(name, f"{path} (a key)")
    return name


def _check_chars(text: str, path: str) -> None:
    """Text both stores keep: no NUL (PostgreSQL refuses it), no lone surrogates (not UTF-8)."""
    if "\x00" in text:
        raise AuditEventError(path, "contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditEventError(path, "is not valid Unicode text") from exc

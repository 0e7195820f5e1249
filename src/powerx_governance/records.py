"""Typed decoding of untrusted records with errors that name the record and the field."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec

from powerx_governance.errors import InputProblem

T = TypeVar("T")

# Timestamps must carry a zone: a naive time in a multi-region fleet is a bug waiting.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

_PATH = re.compile(r"^(?P<msg>.*?) - at `\$(?P<path>[^`]*)`$")


_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def split_validation_error(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """(field path, message) from msgspec's `... - at `$.a.b[0]`` form; a missing field is named too."""
    match = _PATH.match(str(error))
    path, message = (match["path"].lstrip(".") or None, match["msg"]) if match else (None, str(error))
    missing = _MISSING.search(message)
    if missing is not None:
        path = f"{path}.{missing['name']}" if path else missing["name"]
    return path, message


def convert_record(
    raw: Any, kind: type[T], *, source: str, record: str, tenant_uuid: str | None = None
) -> T | InputProblem:
    """Convert plain data to `kind`, or describe precisely why it cannot be."""
    if not isinstance(raw, dict):
        return InputProblem(
            source, record, None, f"expected a mapping, got {type(raw).__name__}", tenant_uuid
        )
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        field, message = split_validation_error(exc)
        return InputProblem(source, record, field, message, tenant_uuid)

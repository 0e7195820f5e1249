"""Structured JSON logs with sensitive values masked (tokens, emails, webhook secrets)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

_SENSITIVE_KEYS: Final = re.compile(r"(token|secret|password|authorization|api[_-]?key|signature)", re.I)
# stable identifiers that name a secret without revealing it: a token's row id, a token's hash prefix
_IDENTIFIERS: Final = frozenset({"token_id", "token_fingerprint"})
_SECRET_PARAMS: Final = re.compile(
    r"(token|secret|password|passwd|pwd|key|sig|signature|auth|credential|code)", re.I
)
_URL_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]+)(:[^/\s@]*)?@")
_PATTERNS: Final = (
    (re.compile(r"pxg_[A-Za-z0-9_-]{8,}"), "pxg_***"),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer ***"),
    (re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})"), r"\1***@\2"),
)
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_url(url: str) -> str:
    """A URL fit to show or audit: its password (or lone user name) and secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if has_password else f"***@{host}"
    query = "&".join(_masked_param(param) for param in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _masked_param(param: str) -> str:
    name, has_value, _ = param.partition("=")
    return f"{name}=***" if has_value and _SECRET_PARAMS.search(unquote(name)) else param


def mask_text(text: str) -> str:
    if "@" not in text and "pxg_" not in text and "bearer" not in text.lower():
        return text  # each pattern needs one of these (every audit record's every string comes here)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _URL_CREDENTIALS.sub(_mask_credentials, text)


def _mask_credentials(found: re.Match[str]) -> str:
    scheme, user, password = found.group(1), found.group(2), found.group(3)
    return f"{scheme}{user}:***@" if password else f"{scheme}***@"


def mask(value: Any, key: str = "") -> Any:
    """Mask a value for logs or exports: sensitive keys entirely, emails and tokens inside text."""
    if key and _SENSITIVE_KEYS.search(key) and key not in _IDENTIFIERS:
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        entry |= {k: mask(v, k) for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exception"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("powerx")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False

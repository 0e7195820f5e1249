"""The console's settings section, read once at start from the settings' environment snapshot.

- `POWERX_SESSION_SECRET` (default: a random key kept in `$POWERX_VAR_DIR/console-session.key`)
  signs session cookies and CSRF tokens; set it (32+ characters) when several instances serve
  the console.
- `POWERX_SESSION_TTL` (default `8h`): how long a console session lasts after sign-in.
- `POWERX_SESSION_COOKIE_SECURE` (default `auto`): `1` always marks the cookie `Secure`, `0`
  never, `auto` when the request came over https (directly or per `X-Forwarded-Proto`).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from powerx_governance.durations import parse_duration

if TYPE_CHECKING:
    from powerx_governance.settings import Settings

log = logging.getLogger("powerx.console")
KEY_FILE: Final = "console-session.key"
MIN_SECRET_CHARS: Final = 32


class CookieSecurity(StrEnum):
    ALWAYS = "1"
    NEVER = "0"
    AUTO = "auto"


class ConsoleConfigError(ValueError):
    """A console setting that cannot be used."""


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    secret: bytes  # POWERX_SESSION_SECRET, or the key file under var/
    session_ttl: timedelta  # POWERX_SESSION_TTL
    cookie_secure: CookieSecurity  # POWERX_SESSION_COOKIE_SECURE


def _key_file_secret(var_dir: Path) -> bytes:
    """The per-installation key, created once (mode 0600); a per-process key if var/ is read-only."""
    path = var_dir / KEY_FILE
    try:
        if not path.exists():
            var_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32))
        return path.read_text(encoding="ascii").strip().encode()
    except FileExistsError:  # another process created it between our check and open
        return path.read_text(encoding="ascii").strip().encode()
    except OSError as exc:
        log.warning(
            "console session key not stored, sessions end with this process", extra={"error": str(exc)}
        )
        return secrets.token_hex(32).encode()


def load_console_settings(env: Mapping[str, str], var_dir: Path) -> ConsoleSettings:
    given = env.get("POWERX_SESSION_SECRET", "")
    if given and len(given) < MIN_SECRET_CHARS:
        raise ConsoleConfigError(f"POWERX_SESSION_SECRET must be at least {MIN_SECRET_CHARS} characters")
    ttl = parse_duration(env.get("POWERX_SESSION_TTL", "8h"))
    if ttl <= timedelta(0):
        raise ConsoleConfigError("POWERX_SESSION_TTL must be positive")
    secure = env.get("POWERX_SESSION_COOKIE_SECURE", "auto").strip().lower()
    try:
        cookie_secure = CookieSecurity(secure)
    except ValueError as exc:
        raise ConsoleConfigError("POWERX_SESSION_COOKIE_SECURE must be 1, 0 or auto") from exc
    return ConsoleSettings(
        secret=given.encode() if given else _key_file_secret(var_dir),
        session_ttl=ttl,
        cookie_secure=cookie_secure,
    )


def read_settings(settings: Settings) -> ConsoleSettings:
    """The console's section, read at start (the key file is created then when no secret is set)."""
    return load_console_settings(settings.environ, settings.var_dir)

"""Post/redirect/get for errors: a refused form's message and values ride a short-lived signed
cookie to the page the browser is redirected to, so a reload never re-submits the form."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from powerx_governance.console.sessions import COOKIE_PATH

FLASH_COOKIE: Final = "powerx_console_flash"
FLASH_SECONDS: Final = 120
MAX_BYTES: Final = 3000  # a cookie stays well under the browsers' 4 KiB


def _sign(secret: bytes, binding: str, payload: str) -> str:
    return hmac.new(secret, f"flash:{binding}:{payload}".encode(), hashlib.sha256).hexdigest()


def set_flash(response: Response, secret: bytes, binding: str, data: dict[str, Any]) -> Response:
    """Attach `data` for the next page of this session (`binding`: the session id)."""
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    if len(payload) > MAX_BYTES:  # long form values are dropped, the message stays
        payload = base64.urlsafe_b64encode(json.dumps({**data, "values": {}}).encode()).decode()
    response.set_cookie(
        FLASH_COOKIE,
        f"{payload}.{_sign(secret, binding, payload)}",
        max_age=FLASH_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
    )
    return response


def read_flash(request: Request, secret: bytes, binding: str) -> dict[str, Any] | None:
    """The flash this session left (None: none, or not this session's); clear it with `clear_flash`."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    payload, _, mac = raw.rpartition(".")
    if not hmac.compare_digest(mac, _sign(secret, binding, payload)):
        return None
    try:
        found = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def clear_flash(request: Request, response: Response) -> None:
    """Shown once: the page that read it deletes it."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

"""Console sessions: a signed, expiring cookie naming an API token, and per-session CSRF tokens.

The cookie holds no secret of its own: `{sid, token id, issued, expires}` signed with HMAC-SHA256.
Every request re-reads the token row, so revoking the token ends its console sessions, and looks
for the session's sign-out record in the audit trail, so a signed-out cookie is refused by every
instance sharing the store. Sign-in and sign-out are audited with the hash of the session id as
correlation id (the id itself never leaves the cookie).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy.orm import Session

from powerx_governance.audit.queries import has_record
from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.auth.model import Role
from powerx_governance.auth.queries import token_principal
from powerx_governance.auth.tokens import Principal

SESSION_COOKIE: Final = "powerx_console"
LOGIN_COOKIE: Final = "powerx_console_login"  # binds the sign-in form to this browser (login CSRF)
COOKIE_PATH: Final = "/console"
SIGN_IN: Final = "console.sign_in"
SIGN_OUT: Final = "console.sign_out"
CONSOLE_ROLES: Final = frozenset({Role.OPERATOR, Role.TENANT_ADMIN, Role.VIEWER})


@dataclass(frozen=True, slots=True)
class SessionClaims:
    sid: str
    token_id: int
    issued_at: int  # epoch seconds
    expires_at: int

    @property
    def reference(self) -> str:
        """What the audit trail knows the session by: a hash of its id."""
        return "console-" + hashlib.sha256(self.sid.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """A signed-in person: the token's principal, the session, and its CSRF token."""

    principal: Principal
    claims: SessionClaims
    csrf: str

    @property
    def fleet_wide(self) -> bool:
        return self.principal.fleet_wide

    @property
    def may_decide(self) -> bool:
        return self.principal.role in (Role.OPERATOR, Role.TENANT_ADMIN)

    @property
    def tenant_uuid(self) -> str | None:
        return self.principal.tenant_uuid


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, message: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}\x1f{message}".encode(), hashlib.sha256).digest())


def new_claims(token_id: int, now: datetime, ttl_seconds: int) -> SessionClaims:
    issued = int(now.timestamp())
    return SessionClaims(secrets.token_urlsafe(24), token_id, issued, issued + ttl_seconds)


def encode_session(secret: bytes, claims: SessionClaims) -> str:
    body = {"sid": claims.sid, "tid": claims.token_id, "iat": claims.issued_at, "exp": claims.expires_at}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, 'session', payload)}"


def decode_session(secret: bytes, value: str | None, now: datetime) -> SessionClaims | None:
    """The claims of a cookie signed with `secret` that has not expired; None otherwise."""
    if not value or value.count(".") != 1:
        return None
    payload, signature = value.split(".")
    if not hmac.compare_digest(signature, _mac(secret, "session", payload)):
        return None
    try:
        body = json.loads(_unb64(payload))
        claims = SessionClaims(str(body["sid"]), int(body["tid"]), int(body["iat"]), int(body["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return claims if claims.expires_at > now.timestamp() else None


def csrf_token(secret: bytes, binding: str) -> str:
    """The CSRF token of a session (or of a sign-in form's nonce)."""
    return _mac(secret, "csrf", binding)


def csrf_matches(secret: bytes, binding: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(secret, binding), given or "")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def resume(session: Session, claims: SessionClaims) -> Principal | None:
    """The principal of a session whose token is still valid and that was not signed out."""
    who = token_principal(session, claims.token_id)
    if who is None or who.role not in CONSOLE_ROLES:
        return None
    if has_record(session, correlation_id=claims.reference, operation=SIGN_OUT):
        return None
    return who


def record_session_event(
    session: Session, operation: str, who: Principal, claims: SessionClaims, now: datetime, client: str | None
) -> None:
    """Audit a sign-in or sign-out in the caller's transaction."""
    record(
        session,
        AuditEvent(
            source="console",
            operation=operation,
            resource_type="console_session",
            resource_id=claims.reference,
            actor=who.name,
            tenant_uuid=who.tenant_uuid,
            correlation_id=claims.reference,
            meta={"role": who.role.value, "client": client or "unknown"},
        ),
        now,
    )

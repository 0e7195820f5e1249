"""Bearer tokens: random, shown once, stored as SHA-256; roles and tenant binding checked at creation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.orm import Session

from powerx_governance.auth.model import Role
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.inventory.queries import tenants_named

TOKEN_PREFIX = "pxg_"  # noqa: S105 - a public prefix, not a secret
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is a hint, not worth a write per request


class TokenError(ValueError):
    """A token cannot be created or revoked as asked."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, resolved once per request."""

    token_id: int
    name: str
    role: Role
    tenant_uuid: str | None  # the one tenant of a tenant_admin or viewer

    @property
    def fleet_wide(self) -> bool:
        return self.role in (Role.SERVICE, Role.OPERATOR)

    def may_read(self, tenant_uuid: str) -> bool:
        return self.fleet_wide or tenant_uuid == self.tenant_uuid


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def resolve_tenant(session: Session, tenant: str) -> str:
    """The uuid of the stored tenant `tenant` names (its uuid or its key); TokenError naming it otherwise."""
    uuids = tenants_named(session, tenant)
    if len(uuids) == 1:
        return uuids[0]
    if uuids:
        raise TokenError(
            f"tenant key {tenant!r} names {len(uuids)} tenants ({', '.join(uuids)}); give the uuid"
        )
    raise TokenError(
        f"unknown tenant {tenant!r}: no tenant has this uuid or key"
        " (a tenant is known once a scan or a manifest push has stored it)"
    )


def create_token(
    session: Session, *, name: str, role: Role, tenant: str | None, now: datetime
) -> tuple[ApiTokenRow, str]:
    """A new token; the plaintext is returned once and never stored.

    `tenant` (a tenant_admin's or viewer's) is a stored tenant's uuid or key; the uuid is kept.
    """
    if role in (Role.TENANT_ADMIN, Role.VIEWER) and not tenant:
        raise TokenError(f"role {role} needs a tenant (--tenant)")
    if role in (Role.SERVICE, Role.OPERATOR) and tenant:
        raise TokenError(f"role {role} is fleet-wide and takes no tenant")
    tenant_uuid = resolve_tenant(session, tenant) if tenant else None
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiTokenRow(
        name=name,
        token_hash=hash_token(plaintext),
        prefix=plaintext[:12],
        role=role.value,
        tenant_uuid=tenant_uuid,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def revoke_token(session: Session, token_id: int, now: datetime) -> ApiTokenRow:
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        raise TokenError(f"no token with id {token_id}")
    row.revoked_at = row.revoked_at or now
    return row


# the columns a request needs, read without building an ORM object (once per request)
_PRESENTED: Final = select(
    ApiTokenRow.token_hash,
    ApiTokenRow.id,
    ApiTokenRow.name,
    ApiTokenRow.role,
    ApiTokenRow.tenant_uuid,
    ApiTokenRow.revoked_at,
    ApiTokenRow.last_used_at,
).where(ApiTokenRow.token_hash.in_(bindparam("token_hashes", expanding=True)))


def authenticate(db: Session | Connection, plaintext: str, now: datetime) -> Principal | None:
    """The principal of a valid, unrevoked token; None otherwise (compared by hash)."""
    return authenticate_many(db, [plaintext], now).get(plaintext)


def authenticate_many(
    db: Session | Connection, plaintexts: Iterable[str], now: datetime
) -> dict[str, Principal]:
    """The principal of each valid, unrevoked token of `plaintexts` (compared by hash; the others are
    missing), with one statement to read them and one to touch those last used over a minute ago. The
    API reads them on a bare connection (no session to build per request), for the requests of a
    moment together (`api.authentication`)."""
    presented = {hash_token(plaintext): plaintext for plaintext in plaintexts}
    rows = [
        row for row in db.execute(_PRESENTED, {"token_hashes": list(presented)}) if row.revoked_at is None
    ]
    stale = [row.id for row in rows if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY]
    if stale:
        db.execute(update(ApiTokenRow).where(ApiTokenRow.id.in_(stale)).values(last_used_at=now))
    return {
        presented[row.token_hash]: Principal(row.id, row.name, Role(row.role), row.tenant_uuid)
        for row in rows
    }


def list_tokens(session: Session) -> list[ApiTokenRow]:
    return list(session.execute(select(ApiTokenRow).order_by(ApiTokenRow.id)).scalars())

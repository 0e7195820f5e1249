"""Reads of the stored API tokens shared by the API, the console and the CLI."""

from __future__ import annotations

from sqlalchemy.orm import Session

from powerx_governance.auth.model import Role
from powerx_governance.auth.tables import ApiTokenRow
from powerx_governance.auth.tokens import Principal


def token_principal(session: Session, token_id: int) -> Principal | None:
    """Who the token with this id speaks for; None when there is no such token or it was revoked."""
    row = session.get(ApiTokenRow, token_id)
    if row is None or row.revoked_at is not None:
        return None
    return Principal(row.id, row.name, Role(row.role), row.tenant_uuid)

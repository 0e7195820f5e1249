"""`powerx version token ...`: API tokens (stored hashed; the token is shown once)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import TokenError, create_token, list_tokens, revoke_token
from powerx_governance.db.session import transaction
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode
from powerx_governance.times import utc_now

token_app = typer.Typer(help="API tokens (stored hashed; the token is shown once).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses the token.")],
    role: Annotated[Role, typer.Option(help="service | operator | tenant_admin | viewer")],
    tenant: Annotated[
        str | None, typer.Option(help="The tenant of a tenant_admin or viewer: its uuid or its key.")
    ] = None,
) -> None:
    """Create a token and print it once."""
    service = open_service()
    try:
        with transaction(service.factory) as session:
            row, plaintext = create_token(session, name=name, role=role, tenant=tenant, now=utc_now())
            token_id, tenant_uuid = row.id, row.tenant_uuid
    except TokenError as exc:
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    err.print(
        f"token {token_id} ({role}{' of ' + tenant_uuid if tenant_uuid else ''}) created;"
        " it is shown only once:",
        highlight=False,
    )
    out.print(plaintext, highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list() -> None:
    """Tokens with their role, tenant and state (never the token itself)."""
    service = open_service()
    table = Table("id", "name", "prefix", "role", "tenant", "created", "last used", "revoked")
    with service.factory() as session:
        for row in list_tokens(session):
            table.add_row(
                str(row.id),
                row.name,
                row.prefix + "…",
                row.role,
                row.tenant_uuid or "",
                row.created_at.isoformat(timespec="seconds"),
                row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "",
                row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "",
            )
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(help="The token id from `token list`.")]) -> None:
    """Revoke a token; requests with it are refused from now on."""
    service = open_service()
    try:
        with transaction(service.factory) as session:
            revoke_token(session, token_id, utc_now())
    except TokenError as exc:
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    err.print(f"token {token_id} revoked", highlight=False)

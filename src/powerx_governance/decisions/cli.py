"""`powerx version decide`: take a decision from the command line (acts as an operator on the store)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import Principal
from powerx_governance.db.session import transaction
from powerx_governance.decisions.model import DecisionKind, IgnoreScope
from powerx_governance.decisions.service import (
    DecisionError,
    DecisionRequest,
    ReopenRequest,
    StaleRevisionError,
    decide,
    decision_dict,
    reopen,
)
from powerx_governance.terminal.context import opened_service
from powerx_governance.terminal.exit_codes import ExitCode

err = Console(stderr=True)


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"--{name}: {text!r} is not an RFC 3339 timestamp") from exc
    if moment.tzinfo is None:
        raise typer.BadParameter(f"--{name}: {text!r} has no time zone")
    return moment


def decide_command(
    recommendation: Annotated[int, typer.Option(help="Recommendation id.")],
    revision: Annotated[int, typer.Option(help="The revision you saw (a newer one gets exit code 4).")],
    decision: Annotated[DecisionKind, typer.Option(help="upgrade | schedule | ignore")],
    reason: Annotated[str | None, typer.Option(help="Why (required to ignore).")] = None,
    scheduled_for: Annotated[str | None, typer.Option(help="When to upgrade (schedule), RFC 3339.")] = None,
    scope: Annotated[IgnoreScope | None, typer.Option(help="target | until | plugin_until (ignore).")] = None,
    until: Annotated[str | None, typer.Option(help="Ignore until, RFC 3339.")] = None,
    approver: Annotated[
        str | None, typer.Option(help="Approver (needed to ignore critical patches under enforce).")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key.")] = None,
    actor: Annotated[str | None, typer.Option(help="Who decides (default: the OS user).")] = None,
) -> None:
    """Record an upgrade, schedule or ignore decision with its audit event."""
    who = Principal(0, f"cli:{actor or getpass.getuser()}", Role.OPERATOR, None)
    req = DecisionRequest(
        recommendation_id=recommendation,
        revision=revision,
        kind=decision,
        reason=reason,
        scheduled_for=_moment(scheduled_for, "scheduled-for"),
        scope=scope,
        until=_moment(until, "until"),
        approver=approver,
        idempotency_key=idempotency_key,
    )
    try:
        with opened_service() as service, transaction(service.factory) as session:
            row, _ = decide(session, service.notifications, req, who, service.clock())
            result = decision_dict(row)
    except DecisionError as exc:
        err.print(f"error: {exc.field or 'decision'}: {exc}", highlight=False)
        raise typer.Exit(ExitCode.STALE if isinstance(exc, StaleRevisionError) else ExitCode.USAGE) from exc
    typer.echo(json.dumps(result, indent=2))


def reopen_command(
    recommendation: Annotated[int, typer.Option(help="Recommendation id.")],
    revision: Annotated[int, typer.Option(help="The revision you saw (a newer one gets exit code 4).")],
    reason: Annotated[str | None, typer.Option(help="Why the decision is withdrawn.")] = None,
    actor: Annotated[str | None, typer.Option(help="Who reopens (default: the OS user).")] = None,
) -> None:
    """Withdraw the standing decision of a recommendation: it is open again, with an audit record."""
    who = Principal(0, f"cli:{actor or getpass.getuser()}", Role.OPERATOR, None)
    try:
        with opened_service() as service, transaction(service.factory) as session:
            rec, withdrawn = reopen(
                session, ReopenRequest(recommendation, revision, reason), who, service.clock()
            )
            result = {"recommendation_id": rec.id, "state": rec.state}
            result["withdrawn"] = decision_dict(withdrawn) if withdrawn else None
    except DecisionError as exc:
        err.print(f"error: {exc.field or 'reopen'}: {exc}", highlight=False)
        raise typer.Exit(ExitCode.STALE if isinstance(exc, StaleRevisionError) else ExitCode.USAGE) from exc
    typer.echo(json.dumps(result, indent=2))

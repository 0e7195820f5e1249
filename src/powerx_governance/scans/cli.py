"""`powerx version alerts list`: the operational alerts in the store, with their state and cause."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from powerx_governance.scans.queries import list_alerts
from powerx_governance.terminal.context import opened_service
from powerx_governance.terminal.exit_codes import ExitCode

alerts_app = typer.Typer(help="Operational alerts (e.g. full scans failing in a row).", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class StateChoice(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@alerts_app.command("list")
def alerts_list(
    state: Annotated[StateChoice | None, typer.Option(help="Only alerts in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Alerts, newest first: kind, state (firing | resolved), raised and resolved times, cause."""
    try:
        with opened_service() as service, service.factory() as session:
            items = list_alerts(session, state=state.value if state else None, limit=limit)
    except (SQLAlchemyError, ValueError) as exc:
        err.print(f"error: cannot read the store: {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    if as_json:
        typer.echo(json.dumps({"items": items}, indent=2))
        return
    table = Table("id", "kind", "state", "raised", "resolved", "cause")
    for a in items:
        table.add_row(
            str(a["id"]), a["kind"], a["state"], a["raised_at"], a["resolved_at"] or "", a["cause"] or ""
        )
    out.print(table if items else "no alerts")

"""`powerx version pushes list | remove-advisory ID | remove-release PLUGIN VERSION` (removals audited)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from powerx_governance.catalog import pushes
from powerx_governance.db.session import transaction
from powerx_governance.terminal.consoles import stdout_console
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode
from powerx_governance.times import utc_now

pushes_app = typer.Typer(
    help="What the push source (release and advisory webhooks) holds; operators remove records.",
    no_args_is_help=True,
)
out = stdout_console()
err = Console(stderr=True)
Reason = Annotated[str, typer.Option(help="Why (kept in the audit trail).")]
Actor = Annotated[str | None, typer.Option(help="Who removes it (default: the OS user).")]


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


@pushes_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Pushed advisories and releases, each in force, withdrawn or overridden by the catalog source."""
    service = open_service()
    with service.factory() as session:
        listing = {
            "advisories": pushes.pushed_advisory_items(session),
            "releases": pushes.pushed_release_items(session),
        }
    if as_json:
        typer.echo(json.dumps(listing, indent=2, default=str))
        return
    advisories = Table("advisory", "plugins", "state", "modified", "withdrawn", "pushed at", "pushed by")
    for a in listing["advisories"]:
        advisories.add_row(
            a["advisory_id"],
            ", ".join(a["plugins"]),
            a["state"],
            _when(a["modified"]),
            _when(a["withdrawn"]),
            _when(a["pushed_at"]),
            a["pushed_by"],
        )
    releases = Table("plugin", "version", "state", "pushed at", "pushed by")
    for r in listing["releases"]:
        releases.add_row(r["plugin_id"], r["version"], r["state"], _when(r["pushed_at"]), r["pushed_by"])
    out.print(advisories)
    out.print(releases)


def _remove(
    what: str, remove: Callable[[Session, pushes.Removal], frozenset[str]], reason: str, actor: str | None
) -> None:
    service = open_service()
    removal = pushes.Removal(actor=f"cli:{actor or getpass.getuser()}", reason=reason)
    try:
        with transaction(service.factory) as session:
            plugins = remove(session, removal)
            scan_id = service.request_delta(session, removal.actor)
    except pushes.PushNotFoundError as exc:
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    err.print(
        f"{what} removed from the push source; plugins {', '.join(sorted(plugins)) or 'none'}"
        f" are re-evaluated by delta scan {scan_id}",
        highlight=False,
    )


@pushes_app.command("remove-advisory")
def remove_advisory_command(
    advisory_id: Annotated[str, typer.Argument(help="The OSV id.")], reason: Reason, actor: Actor = None
) -> None:
    """Take a pushed advisory out (audited); the catalog source's record, if any, is in force."""
    _remove(
        f"advisory {advisory_id}",
        lambda s, r: pushes.remove_advisory(s, advisory_id, r, utc_now()),
        reason,
        actor,
    )


@pushes_app.command("remove-release")
def remove_release_command(
    plugin_id: Annotated[str, typer.Argument(help="The plugin id.")],
    version: Annotated[str, typer.Argument(help="The version as pushed.")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Take a pushed release out (audited); the catalog source's record, if any, is in force."""
    _remove(
        f"release {version} of {plugin_id}",
        lambda s, r: pushes.remove_release(s, plugin_id, version, r, utc_now()),
        reason,
        actor,
    )

"""`powerx version flags list | set NAME on|off | reset NAME` (changes are audited)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from powerx_governance.db.session import transaction
from powerx_governance.errors import InputError
from powerx_governance.feature_flags import Flag, parse_switch
from powerx_governance.flags.service import FlagState, change_flag, flag_states
from powerx_governance.terminal.consoles import stdout_console
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode
from powerx_governance.times import utc_now

flags_app = typer.Typer(help="Feature flags (changes are stored and audited).", no_args_is_help=True)
out = stdout_console()
err = Console(stderr=True)


def _row(state: FlagState) -> tuple[str, ...]:
    changed = state.changed_at.isoformat(timespec="seconds") if state.changed_at else ""
    return (
        state.flag.value,
        "on" if state.enabled else "off",
        state.source.value,
        "on" if state.configured else "off",
        state.changed_by or "",
        changed,
        state.reason or "",
    )


@flags_app.command("list")
def list_command() -> None:
    """Every flag, whether it is on, and where that comes from."""
    service = open_service()
    table = Table("flag", "state", "source", "configured", "changed by", "changed at", "reason")
    with service.factory() as session:
        for state in flag_states(session, service.settings.flags).values():
            table.add_row(*_row(state))
    out.print(table)


def _change(flag: Flag, enabled: bool | None, reason: str | None, actor: str | None) -> None:
    service = open_service()
    who = f"cli:{actor or getpass.getuser()}"
    with transaction(service.factory) as session:
        state, scan_id = change_flag(
            session,
            service.settings.flags,
            flag,
            enabled,
            actor=who,
            reason=reason,
            now=utc_now(),
            rescan=service.rescan,
        )
    err.print(
        f"{flag.value} is {'on' if state.enabled else 'off'} ({state.source.value})"
        + (f"; full re-scan {scan_id} queued" if scan_id else ""),
        highlight=False,
    )


@flags_app.command("set")
def set_command(
    name: Annotated[Flag, typer.Argument(help="plugin-version-governance | plugin-upgrade-policy")],
    value: Annotated[str, typer.Argument(help="on | off")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who changes it (default: the OS user).")] = None,
) -> None:
    """Turn a flag on or off at run time; kept across restarts until `reset`."""
    try:
        enabled = parse_switch(value, "command line", "value")
    except InputError as exc:
        err.print(f"error: {exc.problem.error}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    _change(name, enabled, reason, actor)


@flags_app.command("reset")
def reset_command(
    name: Annotated[Flag, typer.Argument(help="plugin-version-governance | plugin-upgrade-policy")],
    actor: Annotated[str | None, typer.Option(help="Who resets it (default: the OS user).")] = None,
) -> None:
    """Drop the run-time override: the flag follows the environment / settings file again."""
    _change(name, None, None, actor)

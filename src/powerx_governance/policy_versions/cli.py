"""`powerx version policy list | show N | diff N M | apply FILE | rollback N`."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from powerx_governance.db.session import transaction
from powerx_governance.errors import InputError
from powerx_governance.kernel import Rescan
from powerx_governance.policy_versions import service as policies
from powerx_governance.policy_versions.model import PolicySource, PolicyVersionError
from powerx_governance.terminal.consoles import stdout_console
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode
from powerx_governance.times import utc_now

policy_app = typer.Typer(
    help="Policy versions of governance_rules.yaml: history, diff, rollback.", no_args_is_help=True
)
out = stdout_console()
err = Console(stderr=True)
T = TypeVar("T")


def _in_transaction(work: Callable[[Session], T]) -> T:
    """Run `work` in one transaction; refusals become a message and exit code 2."""
    return _with_rescan(lambda session, _: work(session))


def _with_rescan(work: Callable[[Session, Rescan], T]) -> T:
    """`_in_transaction` for changes that queue a full re-scan (the service's)."""
    service = open_service()
    try:
        with transaction(service.factory) as session:
            return work(session, service.policies.rescan)
    except (PolicyVersionError, InputError) as exc:
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc


def _actor(actor: str | None) -> str:
    return f"cli:{actor or getpass.getuser()}"


@policy_app.command("list")
def list_command() -> None:
    """Every version, newest last; the current one is marked."""

    def rows(session: Session) -> Table:
        current = policies.current_number(session)
        table = Table("version", "current", "created", "source", "author", "hash", "note")
        for v in policies.versions(session):
            table.add_row(
                str(v.number),
                "*" if v.number == current else "",
                v.created_at.isoformat(timespec="seconds"),
                v.source,
                v.author,
                v.content_hash[:12],
                v.note or "",
            )
        return table

    out.print(_in_transaction(rows))


@policy_app.command("show")
def show_command(number: Annotated[int, typer.Argument(help="The version number.")]) -> None:
    """A version's rules document as it was stored."""
    content = _in_transaction(lambda session: policies.get_version(session, number).content)
    out.print(content, highlight=False, markup=False, end="")


@policy_app.command("diff")
def diff_command(
    older: Annotated[int, typer.Argument(help="From this version …")],
    newer: Annotated[int, typer.Argument(help="… to this one.")],
) -> None:
    """A unified diff between two versions."""
    text = _in_transaction(
        lambda session: policies.diff(
            policies.get_version(session, older), policies.get_version(session, newer)
        )
    )
    out.print(text or "(no difference)", highlight=False, markup=False, end="" if text else "\n")


@policy_app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Argument(help="A governance_rules.yaml to make the next version.")],
    note: Annotated[str | None, typer.Option(help="Why (kept with the version).")] = None,
    actor: Annotated[str | None, typer.Option(help="Author (default: the OS user).")] = None,
) -> None:
    """Validate a rules document and make it the next, current version (a full re-scan is queued)."""
    try:
        content = file.read_text(encoding="utf-8")
    except OSError as exc:
        err.print(f"error: {file}: {exc.strerror}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    number = _with_rescan(
        lambda session, rescan: (
            policies.add_version(
                session,
                content,
                source=PolicySource.API,
                author=_actor(actor),
                now=utc_now(),
                rescan=rescan,
                note=note,
            ).number
        )
    )
    err.print(f"policy version {number} is current; a full re-scan is queued", highlight=False)


@policy_app.command("rollback")
def rollback_command(
    number: Annotated[int, typer.Argument(help="The version to make current again.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who rolls back (default: the OS user).")] = None,
) -> None:
    """Make an earlier version current again and queue a full re-scan."""
    previous, scan_id = _with_rescan(
        lambda session, rescan: policies.rollback(
            session, number, actor=_actor(actor), now=utc_now(), rescan=rescan, reason=reason
        )
    )
    err.print(
        f"policy version {number} is current again (was {previous}); full re-scan {scan_id} queued",
        highlight=False,
    )

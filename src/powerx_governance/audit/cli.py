"""`powerx audit verify | export | prune`: the audit trail from the command line.

Exit codes: 0 done (chain intact), 1 the chain is broken (verify names the first bad record;
prune refuses to delete records that do not verify), 2 usage error or unusable input (bad
dates, a retention under 365 days, a database that cannot be opened).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TextIO

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from powerx_governance.audit.service import (
    MIN_RETENTION_DAYS,
    AuditError,
    ChainBrokenError,
    RetentionError,
    export,
    prune,
    verify,
)
from powerx_governance.db.session import make_engine, session_factory, transaction
from powerx_governance.settings import load_settings
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService
from powerx_governance.times import utc_now

audit_app = typer.Typer(help="The tamper-evident audit trail: verify, export, prune.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
RETENTION_ENV = "POWERX_AUDIT_RETENTION_DAYS"
CHAIN_BROKEN = ExitCode.FINDINGS  # verify: the chain is broken (a finding about the trail itself)


class ExportFormatName(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


def parse_time(text: str, option: str) -> datetime:
    """RFC 3339 with a zone, or a plain date (midnight UTC)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an RFC 3339 time or a date", param_hint=option) from exc
    if moment.tzinfo is None:
        if len(text) != 10:  # a bare date means midnight UTC; a bare time needs its zone
            raise typer.BadParameter(f"{text!r} has no time zone; add Z or an offset", param_hint=option)
        moment = moment.replace(tzinfo=UTC)
    return moment


def _fail(message: str, code: ExitCode) -> NoReturn:
    err.print(f"error: {message}")
    raise typer.Exit(code)


@contextmanager
def _service() -> Iterator[GovernanceService]:
    """The configured store; an unusable database or setting is a usage error (exit 2)."""
    try:
        service = open_service()
    except (SQLAlchemyError, ValueError) as exc:
        _fail(f"cannot open the store: {exc}", ExitCode.USAGE)
    try:
        yield service
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc}", ExitCode.USAGE)
    finally:
        service.stop()


@contextmanager
def _store() -> Iterator[sessionmaker[Session]]:
    """Only the configured store, as it is: verify and export read, so they need neither migrations
    nor the service's components (more than a second of start-up)."""
    try:
        engine = make_engine(load_settings().database_url)
    except (SQLAlchemyError, ValueError) as exc:
        _fail(f"cannot open the store: {exc}", ExitCode.USAGE)
    try:
        yield session_factory(engine)
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc}", ExitCode.USAGE)
    finally:
        engine.dispose()


@audit_app.command("verify")
def verify_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes checking ranges in parallel (default: automatic).")
    ] = None,
) -> None:
    """Check the hash chain; exit 1 and name the first bad record when it is broken."""
    with _store() as factory, factory() as session:
        result = verify(session, workers=workers)
    if as_json:
        out.print(json.dumps(asdict(result)))
    elif result.ok:
        through = f" (through seq {result.last_seq})" if result.last_seq is not None else ""
        out.print(f"audit chain OK: {result.checked} records verified{through}")
    else:
        event = f" (event {result.first_bad_event_id})" if result.first_bad_event_id else ""
        out.print(f"audit chain BROKEN at seq {result.first_bad_seq}{event}: {result.problem}")
        out.print(f"{result.checked} records before it verified")
    raise typer.Exit(ExitCode.CLEAN if result.ok else CHAIN_BROKEN)


@audit_app.command("export")
def export_command(
    start: Annotated[str, typer.Option(help="From this time (inclusive), RFC 3339 or a date.")],
    end: Annotated[str, typer.Option(help="Up to this time (exclusive), RFC 3339 or a date.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's records.")] = None,
    fmt: Annotated[ExportFormatName, typer.Option("--format", help="jsonl or csv.")] = ExportFormatName.JSONL,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export the records that occurred in [start, end), as JSON lines or CSV."""
    since, until = parse_time(start, "--start"), parse_time(end, "--end")
    if until <= since:
        raise typer.BadParameter("--end must be later than --start", param_hint="--end")
    with _store() as factory, factory() as session:
        lines = export(session, start=since, end=until, tenant_uuid=tenant, fmt=fmt.value)
        if output is None:
            written = _write(lines, sys.stdout)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            with output.open("w", encoding="utf-8", newline="") as target:
                written = _write(lines, target)
    records = written - (1 if fmt is ExportFormatName.CSV else 0)
    err.print(f"{records} audit records exported" + (f" to {output}" if output else ""))


def _write(lines: Iterator[str], target: TextIO) -> int:
    count = 0
    for line in lines:
        target.write(line)
        count += 1
    return count


@audit_app.command("prune")
def prune_command(
    before: Annotated[str, typer.Option(help="Delete records older than this (RFC 3339 or a date).")],
    retention_days: Annotated[
        int,
        typer.Option(
            envvar=RETENTION_ENV, help=f"The retention period in days (at least {MIN_RETENTION_DAYS})."
        ),
    ] = MIN_RETENTION_DAYS,
) -> None:
    """Delete the oldest records, keeping the chain verifiable; never records younger than the retention."""
    cut = parse_time(before, "--before")
    try:
        with _service() as service, transaction(service.factory) as session:
            result = prune(session, before=cut, retention_days=retention_days, now=utc_now(), actor=_actor())
            checkpoint = result.checkpoint_event.seq if result.checkpoint_event else None
    except RetentionError as exc:
        _fail(str(exc), ExitCode.USAGE)
    except ChainBrokenError as exc:
        _fail(f"{exc}; nothing was deleted", CHAIN_BROKEN)
    except AuditError as exc:
        _fail(str(exc), ExitCode.USAGE)
    if result.pruned == 0:
        out.print("nothing to prune")
        return
    out.print(
        f"pruned {result.pruned} audit records through seq {result.through_seq};"
        f" checkpoint recorded as seq {checkpoint}"
    )


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return "cli"

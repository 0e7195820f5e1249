"""`powerx version jobs stats | dead`: the queue as operators see it."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from powerx_governance.db.session import transaction
from powerx_governance.jobs.prune import clear_dead
from powerx_governance.terminal.context import opened_service
from powerx_governance.terminal.exit_codes import ExitCode

jobs_app = typer.Typer(help="The job queue: stats and dead letters.", no_args_is_help=True)
ACTOR_HELP = "Who clears them (logged); default cli:<user>."
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@jobs_app.command("stats")
def jobs_stats(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Backend, due jobs waiting (depth), jobs by state, and the oldest waiting job's wait."""
    try:
        with opened_service() as service:
            stats = service.queue.stats().as_dict()
    except (SQLAlchemyError, ValueError) as exc:
        err.print(f"error: cannot read the queue: {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    out.print(
        f"backend {stats['backend']}: {stats['depth']} waiting, oldest {stats['oldest_waiting_seconds']}s"
    )
    for state, count in sorted(stats["by_state"].items()):
        out.print(f"  {state}: {count}")


@jobs_app.command("dead")
def jobs_dead(
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Dead letters: jobs that failed for good, with their task, attempts and last error."""
    try:
        with opened_service() as service:
            items = [letter.as_dict() for letter in service.queue.dead_letters(limit)]
    except (SQLAlchemyError, ValueError) as exc:
        err.print(f"error: cannot read the queue: {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    if as_json:
        typer.echo(json.dumps({"items": items}, indent=2))
        return
    table = Table("id", "task", "key", "attempts", "failed", "error")
    for item in items:
        table.add_row(
            str(item["id"]),
            item["task"],
            item["key"],
            str(item["attempts"]),
            item["failed_at"] or "",
            (item["error"] or "")[:200],
        )
    out.print(table)


@jobs_app.command("clear")
def jobs_clear(
    job_ids: Annotated[list[int], typer.Argument(help="Dead letters to clear (ids from `jobs dead`).")],
    actor: Annotated[str | None, typer.Option(help=ACTOR_HELP)] = None,
) -> None:
    """Clear dead letters an operator has dealt with (logged); exit 2 when one is not a dead letter."""
    try:
        with opened_service() as service, transaction(service.factory) as session:
            cleared = clear_dead(session, job_ids, actor=actor or _actor())
    except (SQLAlchemyError, ValueError) as exc:
        err.print(f"error: cannot clear dead letters: {exc}")
        raise typer.Exit(ExitCode.USAGE) from exc
    out.print(f"cleared {len(cleared)} dead letter(s)")
    missing = sorted(set(job_ids) - set(cleared))
    if missing:
        err.print(f"error: not dead letters: {', '.join(map(str, missing))}")
        raise typer.Exit(ExitCode.USAGE)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return "cli"

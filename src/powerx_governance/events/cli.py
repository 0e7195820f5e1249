"""`powerx version events subscribe | list | show | pause | resume | replay | delete`.

The commands open the configured store (like `token`) and act as an operator; every change is
audited with the actor `cli:<OS user>`. Exit codes: 0 done, 2 usage error, unknown
subscription, refused URL or an unusable store.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from powerx_governance.db.session import transaction
from powerx_governance.events import service
from powerx_governance.events.jobs import EventsConfig
from powerx_governance.events.model import EventType
from powerx_governance.events.outbox import newest_seq
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode

if TYPE_CHECKING:
    from powerx_governance.service import GovernanceService

events_app = typer.Typer(help="CloudEvents subscriptions of downstream services.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
Ref = Annotated[str, typer.Argument(help="The subscription's id or name.")]


def _fail(message: str) -> NoReturn:
    err.print(f"error: {message}")
    raise typer.Exit(ExitCode.USAGE)


@contextmanager
def _service() -> Iterator[GovernanceService]:
    """The configured store; subscription errors and an unusable database exit 2."""
    try:
        svc = open_service()
    except (SQLAlchemyError, ValueError) as exc:
        _fail(f"cannot open the store: {exc}")
    try:
        yield svc
    except service.SubscriptionError as exc:
        _fail(f"{exc.field or 'subscription'}: {exc}")
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc}")
    finally:
        svc.stop()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry for this uid (containers)
        return "cli"


def _print(view: dict[str, Any]) -> None:
    out.print(json.dumps(view, indent=2))


@events_app.command("subscribe")
def subscribe_command(
    name: Annotated[str, typer.Option(help="A unique name.")],
    url: Annotated[str, typer.Option(help="The webhook URL (must pass the webhook allow-list).")],
    event_type: Annotated[
        list[EventType] | None,
        typer.Option("--type", help="Only this event type; repeatable (default: all)."),
    ] = None,
    tenant: Annotated[list[str] | None, typer.Option(help="Only this tenant_uuid; repeatable.")] = None,
    batch_size: Annotated[int, typer.Option(help="Events per request (more than 1: batch mode).")] = 1,
    max_attempts: Annotated[
        int, typer.Option(help="Failures in a row before suspension.")
    ] = service.DEFAULT_MAX_ATTEMPTS,
    secret: Annotated[str | None, typer.Option(help="A whsec_ secret (default: generated).")] = None,
) -> None:
    """Subscribe a webhook; prints the subscription and its signing secret, shown only this once."""
    spec = service.SubscriptionSpec(
        name=name,
        url=url,
        types=tuple(event_type or ()),
        tenants=tuple(tenant or ()),
        batch_size=batch_size,
        max_attempts=max_attempts,
        secret=secret,
    )
    with _service() as svc, transaction(svc.factory) as session:
        row, plaintext = service.create(
            session, spec, svc.require(EventsConfig).destinations, _actor(), svc.clock()
        )
        view = service.view(row, row.cursor)
    _print({**view, "secret": plaintext})
    err.print("the secret is shown only once: store it with the subscriber")


@events_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Subscriptions with their status, cursor and lag (never the secret)."""
    with _service() as svc, svc.factory() as session:
        items = service.listing(session)
    if as_json:
        _print({"items": items})
        return
    table = Table("id", "name", "status", "cursor", "lag", "failures", "url", "last error")
    for item in items:
        table.add_row(
            item["id"],
            item["name"],
            item["status"],
            str(item["cursor"]),
            str(item["lag"]),
            str(item["failures"]),
            item["url"],
            item["last_error"] or "",
        )
    out.print(table)


@events_app.command("show")
def show_command(ref: Ref) -> None:
    """One subscription: status, cursor, lag, failures, last error."""
    with _service() as svc, svc.factory() as session:
        _print(service.show(session, ref))


@events_app.command("pause")
def pause_command(ref: Ref) -> None:
    """Stop delivering; the cursor stays."""
    with _service() as svc, transaction(svc.factory) as session:
        row = service.pause(session, ref, _actor(), svc.clock())
        view = service.view(row, newest_seq(session))
    _print(view)


@events_app.command("resume")
def resume_command(ref: Ref) -> None:
    """Deliver again from the cursor (a paused or suspended subscription)."""
    with _service() as svc, transaction(svc.factory) as session:
        row = service.resume(session, ref, _actor(), svc.clock())
        view = service.view(row, newest_seq(session))
    _print(view)


@events_app.command("replay")
def replay_command(
    ref: Ref, after: Annotated[int, typer.Option(min=0, help="Deliver every matching event after this seq.")]
) -> None:
    """Move the cursor back (or forward) to `--after` and deliver from there."""
    with _service() as svc, transaction(svc.factory) as session:
        row = service.replay(session, ref, after, _actor(), svc.clock())
        view = service.view(row, newest_seq(session))
    _print(view)


@events_app.command("delete")
def delete_command(ref: Ref) -> None:
    """Delete a subscription."""
    with _service() as svc, transaction(svc.factory) as session:
        deleted = service.remove(session, ref, _actor(), svc.clock())
    err.print(f"subscription {deleted} deleted")

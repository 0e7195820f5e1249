"""`powerx version smoke | reconcile | metrics`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from powerx_governance.db.session import transaction
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode
from powerx_governance.workflows.figures import workflow_figures
from powerx_governance.workflows.reconcile import reconcile
from powerx_governance.workflows.smoke import SmokeRun, smoke

out = Console()
err = Console(stderr=True)


def smoke_command(
    url: Annotated[str, typer.Option(help="Base URL of the running service.")] = "http://127.0.0.1:8717",
    operator_token: Annotated[
        str | None, typer.Option(envvar="POWERX_OPERATOR_TOKEN", help="Operator token.")
    ] = None,
    service_token: Annotated[
        str | None, typer.Option(envvar="POWERX_SERVICE_TOKEN", help="Service token.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each scan.")] = 120.0,
) -> None:
    """Drive a running service end to end; exit 0 when every step passes, 1 naming the failed step."""
    operator, service = operator_token, service_token
    if not operator or not service:
        err.print("error: an operator and a service token are needed (--operator-token, --service-token)")
        raise typer.Exit(ExitCode.USAGE)
    run = SmokeRun(url.rstrip("/"), operator, service, timeout=timeout)
    ok = smoke(run)
    for name, passed, detail in run.steps:
        out.print(f"{'PASS' if passed else 'FAIL'} {name}: {detail}", highlight=False)
    raise typer.Exit(ExitCode.CLEAN if ok else ExitCode.FINDINGS)


def reconcile_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; change nothing.")] = False,
) -> None:
    """Find (and repair) misalignment; exit 0 when aligned, 1 when something was found."""
    service = open_service()
    with transaction(service.factory) as session:
        report = reconcile(session, service.clock(), repair=not dry_run, notifications=service.notifications)
    for item in report.findings:
        verb = "repaired" if item.repaired else "found"
        out.print(f"{verb}: {item.kind} {item.resource}: {item.detail}", highlight=False)
    out.print("aligned" if report.clean else f"{len(report.findings)} misalignments", highlight=False)
    raise typer.Exit(ExitCode.CLEAN if report.clean else ExitCode.FINDINGS)


def metrics_command(
    days: Annotated[int, typer.Option(help="Window in days.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Workflow metrics: coverage, push latency percentiles, accept rate, ignore totals, SLA misses."""
    service = open_service()
    with service.factory() as session:
        figures = workflow_figures(session, service.clock(), days=days)
    if as_json:
        typer.echo(json.dumps(figures, indent=2, default=str))
        return
    table = Table("figure", "value", title=f"PowerX version governance, last {days} days")
    for key, value in figures.items():
        table.add_row(key, json.dumps(value, default=str))
    out.print(table)

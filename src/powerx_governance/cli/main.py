"""`powerx`: Typer commands stay thin (parse, call a service, render); exit codes live in ExitCode."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from powerx_governance.cli.lazy import lazy_group, root_commands, version_commands
from powerx_governance.domain import Severity
from powerx_governance.errors import InputError
from powerx_governance.reports import TOP, ReportFormat, report_writer
from powerx_governance.reports.output import open_report
from powerx_governance.scans.parallel import default_workers
from powerx_governance.scans.scanner import ScanResult
from powerx_governance.scans.service import FileScanRequest, StreamedScan, known_tenants, stream_file_scan
from powerx_governance.settings import load_settings
from powerx_governance.terminal.consoles import stdout_console
from powerx_governance.terminal.exit_codes import ExitCode

app = typer.Typer(
    name="powerx",
    help="PowerX platform tools.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=lazy_group(root_commands()),
)
# The service's commands are imported only when run: a file scan never loads the service.
version_app = typer.Typer(
    help="Plugin version governance.",
    no_args_is_help=True,
    cls=lazy_group(
        {
            "demo": "powerx_governance.cli.demo:demo_command",
            "serve": "powerx_governance.cli.service_commands:serve_command",
            **version_commands(),
        }
    ),
)
app.add_typer(version_app, name="version")
err = Console(stderr=True)


@dataclass
class _Ending:
    """How the `powerx` process ends once its command is done. After a file scan the heap holds
    millions of objects (the catalog, the engine's and the writers' caches) that the interpreter
    would free one by one on its way out: 0.3-1 s on the reference fleet, for nothing, as the
    report is written and closed. mypy ends the same way (`mypy.util.hard_exit`)."""

    immediate: bool = False  # set by a command whose outputs are all written and closed


_ENDING = _Ending()


def main() -> None:
    """The `powerx` console script: `app`, then the end `_Ending` allows."""
    try:
        app()
    except SystemExit as done:
        if not _ENDING.immediate or not isinstance(done.code, int):
            raise
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # e.g. a closed pipe: the interpreter's own exit reports it
            raise done from None
        os._exit(done.code)


class FailOn(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


def parse_now(text: str | None) -> datetime:
    """`--now` as RFC 3339 with a zone; defaults to the current time."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{text!r} is not an RFC 3339 timestamp (e.g. 2026-11-30T00:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no time zone; add Z or an offset")
    return moment


def exit_code(result: ScanResult, worst: Severity, fail_on: FailOn, min_coverage: float) -> ExitCode:
    if not result.complete(min_coverage):
        return ExitCode.INCOMPLETE
    if fail_on is not FailOn.NONE and worst.rank >= Severity(fail_on.value).rank:
        return ExitCode.FINDINGS
    return ExitCode.CLEAN


def _progress() -> Progress:
    return Progress(
        TextColumn("scanning tenants"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not sys.stderr.isatty(),
    )


@version_app.command("scan")
def scan_command(
    catalog: Annotated[Path, typer.Option(help="Catalog file (powerx.catalog/v1, YAML or JSON).")],
    manifests: Annotated[Path, typer.Option(help="Manifest directory, JSON-lines file, or CycloneDX SBOM.")],
    rules: Annotated[
        Path | None, typer.Option(help="governance_rules.yaml (default: $POWERX_RULES, else built-in).")
    ] = None,
    compat: Annotated[Path | None, typer.Option(help="compat_matrix.yaml (default: $POWERX_COMPAT).")] = None,
    tenant: Annotated[
        list[str] | None, typer.Option(help="Only these tenants (uuid or key); repeatable.")
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="Report format.")] = ReportFormat.TABLE,
    output: Annotated[Path | None, typer.Option(help="Write the report here instead of stdout.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Table: every finding, not only the {TOP} of highest priority.")
    ] = False,
    fail_on: Annotated[
        FailOn, typer.Option(help="Exit 1 when a finding's risk is at or above this.")
    ] = FailOn.NONE,
    now: Annotated[str | None, typer.Option(help="Evaluation time, RFC 3339 (default: now).")] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(help="The previous json/jsonl report: SLA clocks of findings it had keep running."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Processes to split the scan across (default: $POWERX_SCAN_WORKERS, else one per usable"
            " CPU, at most 4); 1: this process alone. The report is the same.",
        ),
    ] = None,
) -> None:
    """Scan tenant manifests against the catalog and report what needs action."""
    settings = load_settings()
    request = FileScanRequest(
        catalog=catalog,
        manifests=manifests,
        now=parse_now(now),
        rules=rules or settings.rules_path,
        compat=compat or settings.compat_path,
        tenants=frozenset(tenant or ()),
        baseline=baseline,
    )
    _check_tenants(request)
    try:
        processes = workers or settings.scan_workers or default_workers()
        done = _stream_scan(request, fmt, output, limit=None if show_all else TOP, workers=processes)
    except InputError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    if output is not None:  # errors and repairs named here too: a CSV report carries findings only
        r = done.result
        err.print(
            f"report written to {output}: {r.tenants_total:,} tenants, {r.installations:,} installations,"
            f" {len(r.errors):,} errors, {len(r.warnings):,} warnings (input repaired)",
            highlight=False,
        )
    _ENDING.immediate = True  # the report is written and closed, the workers reaped
    raise typer.Exit(exit_code(done.result, done.worst_risk, fail_on, done.rules.defaults.min_coverage))


def _check_tenants(request: FileScanRequest) -> None:
    """`--tenant` must name tenants the manifests have (checked before any report is written)."""
    if not request.tenants:
        return
    unknown = sorted(request.tenants - known_tenants(request.manifests, request.tenants))
    if unknown:
        err.print(
            f"[red]error:[/red] no manifest in {request.manifests} names tenant"
            f" {', '.join(map(repr, unknown))} (by tenant_uuid or tenant_key); nothing was scanned",
            markup=True,
            highlight=False,
        )
        raise typer.Exit(ExitCode.USAGE)


def _stream_scan(
    request: FileScanRequest, fmt: ReportFormat, output: Path | None, *, limit: int | None, workers: int
) -> StreamedScan:
    """Scan, writing the report as it is produced: to `output`, or to stdout (a table to the terminal)."""
    with contextlib.ExitStack() as stack:
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            out: BinaryIO = stack.enter_context(open_report(output))
        else:
            out = sys.stdout.buffer
        console = stdout_console() if output is None and fmt is ReportFormat.TABLE else None
        writer = stack.enter_context(report_writer(fmt, out, console=console, limit=limit))
        progress = stack.enter_context(_progress())
        task = progress.add_task("scan", total=None)
        hook = None if progress.disable else lambda n: progress.update(task, completed=n)
        return stream_file_scan(request, writer, on_tenant=hook, workers=workers)

"""`powerx`: Typer commands stay thin (parse, call a service, render); exit codes live in ExitCode."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from powerx_governance.audit.cli import audit_app
from powerx_governance.auth.tables import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.catalog.cli import pushes_app
from powerx_governance.cli.consoles import stdout_console
from powerx_governance.cli.exit_codes import ExitCode
from powerx_governance.cli.service_commands import serve, serve_command, token_app
from powerx_governance.db.session import transaction
from powerx_governance.decisions.cli import decide_command
from powerx_governance.domain import Severity
from powerx_governance.errors import InputError
from powerx_governance.events.cli import events_app
from powerx_governance.flags.cli import flags_app
from powerx_governance.policy_versions.cli import policy_app
from powerx_governance.reports import ReportFormat, print_table, render
from powerx_governance.scans.report import build_report
from powerx_governance.scans.scanner import ScanResult
from powerx_governance.scans.service import FileScanRequest, run_file_scan, worst_risk
from powerx_governance.scans.store_report import stored_report
from powerx_governance.scans.tables import ScanKind, ScanRow, ScanTrigger
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings
from powerx_governance.workflows.cli import metrics_command, reconcile_command, smoke_command

app = typer.Typer(
    name="powerx", help="PowerX platform tools.", no_args_is_help=True, pretty_exceptions_enable=False
)
version_app = typer.Typer(help="Plugin version governance.", no_args_is_help=True)
app.add_typer(version_app, name="version")
err = Console(stderr=True)


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


def exit_code(result: ScanResult, fail_on: FailOn, min_coverage: float) -> ExitCode:
    if not result.complete(min_coverage):
        return ExitCode.INCOMPLETE
    if fail_on is not FailOn.NONE and worst_risk(result).rank >= Severity(fail_on.value).rank:
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
    fail_on: Annotated[
        FailOn, typer.Option(help="Exit 1 when a finding's risk is at or above this.")
    ] = FailOn.NONE,
    now: Annotated[str | None, typer.Option(help="Evaluation time, RFC 3339 (default: now).")] = None,
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
    )
    try:
        with _progress() as progress:
            task = progress.add_task("scan", total=None)
            done = run_file_scan(request, on_tenant=lambda n: progress.update(task, completed=n))
    except InputError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc
    report = build_report(done.result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render(report, fmt), encoding="utf-8")
        err.print(f"report written to {output} ({len(report['findings'])} findings)", highlight=False)
    elif fmt is ReportFormat.TABLE:
        print_table(report, stdout_console())
    else:
        sys.stdout.write(render(report, fmt))
    raise typer.Exit(exit_code(done.result, fail_on, done.rules.defaults.min_coverage))


_RECOMMENDATIONS = "/internal/version/governance/recommendations"


def _project_root() -> Path:
    return Path(__file__).resolve().parents[3]


def _demo_environment(root: Path) -> dict[str, str]:
    """The example fleet as the service's sources, unless the environment says otherwise."""
    defaults = {
        "POWERX_TENANT_SOURCE": str(root / "examples" / "manifests"),
        "POWERX_CATALOG_SOURCE": str(root / "examples" / "catalog.yaml"),
        "POWERX_COMPAT": str(root / "config" / "version" / "compat_matrix.yaml"),
        "POWERX_RULES": str(root / "config" / "version" / "governance_rules.yaml"),
    }
    return {**defaults, **os.environ}


@version_app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Where to write the first scan's report in every format.")] = Path(
        "var/reports"
    ),
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after the first scan.")
    ] = True,
) -> None:
    """Start the service on the example fleet (SQLite), run a first scan, print where everything is."""
    service = GovernanceService.create(load_settings(_demo_environment(_project_root())))
    scan_id = service.request_scan(ScanKind.FULL, ScanTrigger.CLI, requested_by="demo")
    service.run_pending()
    with transaction(service.factory) as session:
        report = stored_report(session, session.get_one(ScanRow, scan_id), tenant_uuid=None)
        _, token = create_token(
            session, name="demo operator", role=Role.OPERATOR, tenant=None, now=service.clock()
        )
    print_table(report, stdout_console(), limit=25)
    _write_reports(report, out)
    base = f"http://{service.settings.host}:{service.settings.port}"
    err.print(
        f"\nconsole: {base}/console  (sign in with the operator token below)\n"
        f"API: {base}/docs  (OpenAPI: {base}/openapi.json, metrics: {base}/metrics)\n"
        f"operator token for this demo: {token}\n"
        f"try: curl -H 'Authorization: Bearer {token}' '{base}{_RECOMMENDATIONS}?limit=5'",
        highlight=False,
        soft_wrap=True,
    )
    if serve_after:
        serve(service)


def _write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suffix = {
        ReportFormat.JSON: "json",
        ReportFormat.CSV: "csv",
        ReportFormat.MARKDOWN: "md",
        ReportFormat.SARIF: "sarif.json",
        ReportFormat.TABLE: "txt",
    }
    for fmt, ext in suffix.items():
        (out / f"scan-report.{ext}").write_text(render(report, fmt), encoding="utf-8")
    err.print(f"reports written to {out}/scan-report.{{json,csv,md,sarif.json,txt}}", highlight=False)


version_app.command("serve")(serve_command)
version_app.command("decide")(decide_command)
version_app.command("smoke")(smoke_command)
version_app.command("reconcile")(reconcile_command)
version_app.command("metrics")(metrics_command)
version_app.add_typer(token_app, name="token")
version_app.add_typer(flags_app, name="flags")
version_app.add_typer(policy_app, name="policy")
version_app.add_typer(events_app, name="events")
version_app.add_typer(pushes_app, name="pushes")
app.add_typer(audit_app, name="audit")

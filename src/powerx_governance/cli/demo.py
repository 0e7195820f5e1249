"""`powerx version demo` (what `make demo` runs): the service on the example fleet, a first scan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from powerx_governance.auth.model import Role
from powerx_governance.auth.tokens import create_token
from powerx_governance.cli.service_commands import serve
from powerx_governance.db.session import transaction
from powerx_governance.reports import ReportFormat, print_table, render
from powerx_governance.scans.model import ScanKind, ScanTrigger
from powerx_governance.scans.store_report import stored_report
from powerx_governance.scans.tables import ScanRow
from powerx_governance.service import GovernanceService
from powerx_governance.settings import load_settings
from powerx_governance.terminal.consoles import stdout_console

err = Console(stderr=True)

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
    report, token = _first_report(service, scan_id)
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


def _first_report(service: GovernanceService, scan_id: str) -> tuple[dict[str, Any], str]:
    """The demo scan's report from the store, and an operator token to try the API with."""
    with transaction(service.factory) as session:
        report = stored_report(session, session.get_one(ScanRow, scan_id), tenant_uuid=None)
        _, token = create_token(
            session, name="demo operator", role=Role.OPERATOR, tenant=None, now=service.clock()
        )
    return report, token


def _write_reports(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suffix = {
        ReportFormat.JSON: "json",
        ReportFormat.JSONL: "jsonl",
        ReportFormat.CSV: "csv",
        ReportFormat.MARKDOWN: "md",
        ReportFormat.SARIF: "sarif.json",
        ReportFormat.TABLE: "txt",
    }
    for fmt, ext in suffix.items():
        (out / f"scan-report.{ext}").write_text(render(report, fmt), encoding="utf-8")
    err.print(f"reports written to {out}/scan-report.{{json,jsonl,csv,md,sarif.json,txt}}", highlight=False)

"""Terminal table of a scan report, drawn with Rich."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Column, Table
from rich.text import Text

from powerx_governance.reports.csv_report import max_cvss
from powerx_governance.reports.markdown_report import (
    MISSING,
    NO_FINDINGS,
    RISK_ORDER,
    count_by,
    coverage_text,
    error_text,
    tenant_label,
)

WIDTH: Final = 160
_RISK_STYLES: Final = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "none": "green",
}
_COLUMNS: Final = (
    "Priority",
    "Risk",
    "Tenant",
    "Plugin",
    "Current",
    "Target",
    "Latest",
    "Action",
    "CVSS",
    "Advisories",
    "SLA",
)
_NUMERIC_COLUMNS: Final = ("Priority", "CVSS")
# A tenant UUID folds onto two lines so that plugin ids, which matter more, fit on one.
_MAX_WIDTHS: Final = {"Tenant": 18}


def render(report: Mapping[str, Any], *, limit: int | None = None) -> str:
    """Render the report table as plain text, 160 columns wide, without colour."""
    console = Console(file=io.StringIO(), record=True, width=WIDTH, color_system=None, highlight=False)
    print_table(report, console, limit=limit)
    return console.export_text()


def print_table(report: Mapping[str, Any], console: Console, *, limit: int | None = None) -> None:
    """Print the summary, up to `limit` findings (all when None) and the scan errors to a console."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be zero or more, got {limit}")
    findings: Sequence[Mapping[str, Any]] = report.get("findings") or []
    shown = findings[:limit]
    console.print(_summary(report, findings))
    if shown:
        console.print(_table(shown))
    elif not findings:
        console.print(Text(NO_FINDINGS))
    if len(findings) > len(shown):
        console.print(Text(f"… and {len(findings) - len(shown)} more"))
    _print_errors(console, report.get("errors") or [])
    _print_warnings(console, report.get("warnings") or [])


def _summary(report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> Text:
    # Text, never str: catalog and tenant data must not be parsed as Rich markup.
    heading = Text(
        f"Scan {report.get('scan_id', MISSING)} at {report.get('generated_at', MISSING)}"
        f" · coverage: {coverage_text(report.get('coverage') or {})}\nFindings by risk level: "
    )
    counts = count_by(findings, "risk_level", RISK_ORDER)
    return heading + Text(" · ").join(_risk_text(f"{level} {n}", level) for level, n in counts.items())


def _table(findings: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(
        *map(_column, _COLUMNS), box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False, highlight=False
    )
    for finding in findings:
        table.add_row(*_row(finding))
    return table


def _column(name: str) -> Column:
    # fold, never ellipsis: a clipped plugin id or tenant UUID would name the wrong thing.
    justify: JustifyMethod = "right" if name in _NUMERIC_COLUMNS else "left"
    return Column(name, justify=justify, overflow="fold", max_width=_MAX_WIDTHS.get(name))


def _row(finding: Mapping[str, Any]) -> list[Text]:
    risk = str(finding.get("risk_level") or MISSING)
    priority = Text(str(finding.get("priority", MISSING)))
    return [priority, _risk_text(risk, risk), *(Text(cell) for cell in _plain_cells(finding))]


def _plain_cells(finding: Mapping[str, Any]) -> list[str]:
    cvss = max_cvss(finding)
    return [
        tenant_label(finding),
        *(
            str(finding.get(key) or MISSING)
            for key in ("plugin_id", "current_version", "target_version", "latest_version", "action")
        ),
        MISSING if cvss is None else f"{cvss:.1f}",
        "\n".join(str(advisory["id"]) for advisory in finding.get("advisories") or []) or MISSING,
        str(finding.get("sla_deadline") or MISSING),
    ]


def _risk_text(text: str, level: str) -> Text:
    return Text(text, style=_RISK_STYLES.get(level, ""))


def _print_warnings(console: Console, warnings: Sequence[Mapping[str, Any]], shown: int = 10) -> None:
    """Repairs of input: counted, the first few listed (every one is in the json/jsonl report)."""
    if not warnings:
        return
    console.print(Text(f"Warnings: input repaired ({len(warnings)}):", style="yellow"))
    for warning in warnings[:shown]:
        console.print(Text(f"  {error_text(warning)}", style="yellow"))
    if len(warnings) > shown:
        console.print(Text(f"  … and {len(warnings) - shown} more (--format json lists them all)"))


def _print_errors(console: Console, errors: Sequence[Mapping[str, Any]]) -> None:
    if not errors:
        return
    console.print(Text(f"Errors ({len(errors)}):", style="bold red"))
    for error in errors:
        console.print(Text(f"  {error_text(error)}", style="red"))

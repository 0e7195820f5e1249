"""Terminal table of a scan report, drawn with Rich."""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Column, Table
from rich.text import Text

from powerx_governance.reports.csv_report import max_cvss
from powerx_governance.reports.markdown_report import (
    ACTION_ORDER,
    MISSING,
    NO_FINDINGS,
    RISK_ORDER,
    coverage_text,
    error_text,
    ordered,
    tenant_label,
)
from powerx_governance.reports.stream import (
    Document,
    DocumentItem,
    PartItem,
    ReportItem,
    Tally,
    TenantFindings,
    write_report,
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


TOP: Final = 50  # findings a person reads on screen; --all shows every one
_ALL_CHUNK: Final = 500  # rows per drawn table with --all, so a huge fleet never waits on one layout


@dataclass(frozen=True, slots=True)
class TableHandoff:
    """A later part's counts and its top findings: (priority, minus the finding's number, document)."""

    tally: Tally
    top: list[tuple[int, int, Document]]


class TableWriter:
    """A summary a person can read: coverage, counts by risk and action, the `limit` findings of
    highest priority (all with `limit=None`), how to get the rest, then errors and warnings.

    Only the top findings are kept (a heap), so a fleet of any size prints in constant memory.
    """

    def __init__(self, console: Console, *, limit: int | None = TOP) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be zero or more, got {limit}")
        self._console, self._limit = console, limit
        self._top: list[tuple[int, int, ReportItem]] = []
        self._header: Mapping[str, Any] = {}
        self.tally = Tally()

    def start(self, header: Mapping[str, Any]) -> None:
        self._header = header

    def add_tenant(self, batch: TenantFindings) -> None:
        seen = self.tally.findings
        self.tally.count_parts(batch.parts)
        for n, part in enumerate(batch.parts, start=seen + 1):
            if not self._keep((part.priority, -n, PartItem(batch, part))):
                return  # the rest of the tenant's findings rank lower still

    def add(self, items: Iterable[ReportItem]) -> None:
        for item in items:
            self.tally.count(item)
            self._keep((item.priority, -self.tally.findings, item))

    def _keep(self, entry: tuple[int, int, ReportItem]) -> bool:
        """Keep a finding if it ranks among the top ones so far (ties: first seen first)."""
        if self._limit is None or len(self._top) < self._limit:
            heapq.heappush(self._top, entry)
        elif self._limit and entry[:2] > self._top[0][:2]:
            heapq.heapreplace(self._top, entry)
        else:
            return False
        return True

    def continuation(self, out: BinaryIO) -> TableWriter:
        """A later part's writer: it keeps its own top findings and counts (`out` stays empty)."""
        return TableWriter(self._console, limit=self._limit)

    def handoff(self) -> TableHandoff:
        self.tally.settle()
        return TableHandoff(self.tally, [(priority, n, item.document()) for priority, n, item in self._top])

    def join(self, handoff: TableHandoff, body: BinaryIO) -> None:
        before = self.tally.findings  # the part's findings are numbered after every one so far
        for priority, n, document in handoff.top:
            self._keep((priority, n - before, DocumentItem(document)))
        self.tally.merge(handoff.tally)

    def finish(self, summary: Mapping[str, Any]) -> None:
        self.tally.settle()
        console = self._console
        console.print(self._summary(summary))
        shown = [item.document() for _, _, item in sorted(self._top, key=lambda e: e[:2], reverse=True)]
        for start in range(0, len(shown), _ALL_CHUNK):
            console.print(_table(shown[start : start + _ALL_CHUNK]))
        if not self.tally.findings:
            console.print(Text(NO_FINDINGS))
        elif self.tally.findings > len(shown):
            console.print(
                Text(
                    f"Showing the {len(shown)} findings of highest priority of {self.tally.findings:,}."
                    " The rest: --all, or --format json | jsonl | csv | markdown | sarif (--output FILE)."
                )
            )
        _print_errors(console, summary.get("errors") or [])
        _print_warnings(console, summary.get("warnings") or [])

    def _summary(self, summary: Mapping[str, Any]) -> Text:
        # Text, never str: catalog and tenant data must not be parsed as Rich markup.
        text = Text(
            f"Scan {self._header.get('scan_id') or MISSING} at {self._header.get('generated_at') or MISSING}"
            f" · coverage: {coverage_text(summary.get('coverage') or {})}\n"
            f"Findings: {self.tally.findings:,} · by risk level: "
        )
        risks = ordered(self.tally.by_risk, RISK_ORDER)
        text += Text(" · ").join(_risk_text(f"{level} {n:,}", level) for level, n in risks.items())
        actions = ordered(self.tally.by_action, ACTION_ORDER)
        return text + Text("\nBy action: " + " · ".join(f"{action} {n:,}" for action, n in actions.items()))


def render(report: Mapping[str, Any], *, limit: int | None = None) -> str:
    """Render the report table as plain text, 160 columns wide, without colour."""
    console = Console(file=io.StringIO(), record=True, width=WIDTH, color_system=None, highlight=False)
    print_table(report, console, limit=limit)
    return console.export_text()


def print_table(report: Mapping[str, Any], console: Console, *, limit: int | None = None) -> None:
    """Print the summary, up to `limit` findings (all when None) and the scan errors to a console."""
    write_report(report, TableWriter(console, limit=limit))


def _table(findings: Sequence[Mapping[str, Any]]) -> Table:
    widest_plugin = max((len(str(f.get("plugin_id") or "")) for f in findings), default=0)
    table = Table(
        *(_column(name, widest_plugin) for name in _COLUMNS),
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        highlight=False,
    )
    for finding in findings:
        table.add_row(*_row(finding))
    return table


def _column(name: str, widest_plugin: int) -> Column:
    justify: JustifyMethod = "right" if name in _NUMERIC_COLUMNS else "left"
    if name == "Plugin":  # a plugin id is never wrapped: the other columns give way
        return Column(name, justify=justify, no_wrap=True, min_width=widest_plugin)
    # fold, never ellipsis: a clipped tenant UUID or advisory id would name the wrong thing.
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

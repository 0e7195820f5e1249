"""Scan report renderers (DESIGN §4): one module per output format."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final

from powerx_governance.reports import csv_report, json_report, markdown_report, sarif_report, table_report
from powerx_governance.reports.table_report import print_table


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    MARKDOWN = "markdown"
    SARIF = "sarif"


_RENDERERS: Final[dict[ReportFormat, Callable[[Mapping[str, Any]], str]]] = {
    ReportFormat.TABLE: table_report.render,
    ReportFormat.JSON: json_report.render,
    ReportFormat.CSV: csv_report.render,
    ReportFormat.MARKDOWN: markdown_report.render,
    ReportFormat.SARIF: sarif_report.render,
}


def render(report: Mapping[str, Any], fmt: ReportFormat) -> str:
    """Render a scan report dict in the given format."""
    return _RENDERERS[fmt](report)


__all__ = ["ReportFormat", "print_table", "render"]

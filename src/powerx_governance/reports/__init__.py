"""Scan report renderers (DESIGN §4): one module per output format, each a streaming writer."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from typing import Any, BinaryIO, Final

from rich.console import Console

from powerx_governance.reports import (
    csv_report,
    json_report,
    jsonl_report,
    markdown_report,
    sarif_report,
    table_report,
)
from powerx_governance.reports.stream import ReportWriter
from powerx_governance.reports.table_report import TOP, print_table


class ReportFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    MARKDOWN = "markdown"
    SARIF = "sarif"


_RENDERERS: Final[dict[ReportFormat, Callable[[Mapping[str, Any]], str]]] = {
    ReportFormat.TABLE: table_report.render,
    ReportFormat.JSON: json_report.render,
    ReportFormat.JSONL: jsonl_report.render,
    ReportFormat.CSV: csv_report.render,
    ReportFormat.MARKDOWN: markdown_report.render,
    ReportFormat.SARIF: sarif_report.render,
}


def render(report: Mapping[str, Any], fmt: ReportFormat) -> str:
    """Render a whole report dict in the given format (the same writers a streamed scan uses)."""
    return _RENDERERS[fmt](report)


_BINARY_WRITERS: Final[dict[ReportFormat, Callable[[BinaryIO], ReportWriter]]] = {
    ReportFormat.JSON: json_report.JsonWriter,
    ReportFormat.JSONL: jsonl_report.JsonlWriter,
    ReportFormat.CSV: csv_report.CsvWriter,
    ReportFormat.MARKDOWN: markdown_report.MarkdownWriter,
    ReportFormat.SARIF: sarif_report.SarifWriter,
}


@contextmanager
def report_writer(
    fmt: ReportFormat, out: BinaryIO, *, console: Console | None = None, limit: int | None = TOP
) -> Iterator[ReportWriter]:
    """A writer of `fmt` onto a binary stream (a table goes to `console` when given)."""
    if fmt is ReportFormat.TABLE:
        text = io.TextIOWrapper(out, encoding="utf-8")
        try:
            yield table_report.TableWriter(
                console or Console(file=text, width=table_report.WIDTH, color_system=None, highlight=False),
                limit=limit,
            )
        finally:
            text.flush()
            text.detach()  # the caller owns `out`
    else:
        yield _BINARY_WRITERS[fmt](out)


__all__ = ["TOP", "ReportFormat", "print_table", "render", "report_writer"]

"""CSV scan report: one row per finding, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, BinaryIO, Final

from powerx_governance.reports.stream import (
    OUTCOME,
    Rendered,
    ReportItem,
    SharedOutcome,
    TenantFindings,
    append_file,
    file_place,
    resume_at,
    write_report,
)

COLUMNS: Final = (
    "tenant_uuid",
    "tenant_key",
    "plugin_id",
    "current_version",
    "target_version",
    "latest_version",
    "update_type",
    "risk_level",
    "priority",
    "action",
    "critical_patch",
    "partial",
    "sla_deadline",
    "advisories",
    "max_cvss",
    "rule_ids",
    "reasons",
)

_TENANT_COLUMNS: Final = 2  # tenant_uuid, tenant_key: the rest is the same for every tenant with the verdict
# Leading characters that make Excel, LibreOffice or Sheets evaluate a cell (OWASP "CSV Injection").
_FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float


class CsvWriter:
    """RFC 4180 CSV (CRLF rows, UTF-8), one row per finding."""

    def __init__(self, out: BinaryIO, lines: Rendered[SharedOutcome, bytes] | None = None) -> None:
        self._out = out
        # the rest of the line after the tenant, per outcome
        self._lines: Rendered[SharedOutcome, bytes] = (
            Rendered(lambda o: _verdict_line(o.document()).encode()) if lines is None else lines
        )

    def start(self, header: Mapping[str, Any]) -> None:
        self._out.write(_line(COLUMNS).encode())

    def add_tenant(self, batch: TenantFindings) -> None:
        if batch.parts:
            prefix = _tenant_prefix(batch.tenant_uuid, batch.tenant_key).encode()
            self._out.write(prefix)
            self._out.write(prefix.join(map(self._lines.__getitem__, map(OUTCOME, batch.parts))))

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        return sum(
            len(batch.parts) * len(_tenant_prefix(batch.tenant_uuid, batch.tenant_key).encode())
            + sum(map(len, map(self._lines.__getitem__, map(OUTCOME, batch.parts))))
            for batch in batches
        )

    def place(self) -> tuple[int, int] | None:
        return file_place(self._out)

    def placed(self, out: BinaryIO, before: int) -> CsvWriter:
        return CsvWriter(out, self._lines)

    def resume(self, handoff: None, end: int) -> None:
        resume_at(self._out, end)

    def add(self, items: Iterable[ReportItem]) -> None:
        self._out.write("".join(_line(_row(item.document())) for item in items).encode())

    def continuation(self, out: BinaryIO) -> CsvWriter:
        return CsvWriter(out)

    def handoff(self) -> None:
        return None

    def join(self, handoff: None, body: BinaryIO) -> None:
        append_file(self._out, body)

    def finish(self, summary: Mapping[str, Any]) -> None:
        """CSV carries findings only: coverage, errors and warnings are in every other format."""


def render(report: Mapping[str, Any]) -> str:
    """Render the findings as CSV text."""
    buffer = io.BytesIO()
    write_report(report, CsvWriter(buffer))
    return buffer.getvalue().decode("utf-8")


def _line(cells: Iterable[Cell]) -> str:
    """One CSV record with its CRLF, quoted as the csv module does."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def _tenant_prefix(tenant_uuid: str, tenant_key: str | None) -> str:
    """The tenant's cells of a line, with the comma after them."""
    return _line([_cell(tenant_uuid), _cell(tenant_key)])[:-2] + ","


def _verdict_line(finding: Mapping[str, Any]) -> str:
    return _line(_row(finding)[_TENANT_COLUMNS:])


def neutralise(text: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with a single quote."""
    return f"'{text}" if text.startswith(_FORMULA_TRIGGERS) else text


def max_cvss(finding: Mapping[str, Any]) -> float | None:
    """Highest known CVSS score among the finding's advisories."""
    scores = [
        advisory["cvss"] for advisory in finding.get("advisories") or [] if advisory.get("cvss") is not None
    ]
    return max(scores, default=None)


def _row(finding: Mapping[str, Any]) -> list[Cell]:
    derived: dict[str, object] = {
        "advisories": " ".join(str(advisory["id"]) for advisory in finding.get("advisories") or []),
        "max_cvss": max_cvss(finding),
        "rule_ids": " ".join(map(str, finding.get("rule_ids") or [])),
        "reasons": " | ".join(map(str, finding.get("reasons") or [])),
    }
    return [_cell(derived[column] if column in derived else finding.get(column)) for column in COLUMNS]


def _cell(value: object) -> Cell:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    return neutralise(str(value))

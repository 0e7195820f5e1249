"""CSV scan report: one row per finding, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any, Final

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

# Leading characters that make Excel, LibreOffice or Sheets evaluate a cell (OWASP "CSV Injection").
_FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int | float


def render(report: Mapping[str, Any]) -> str:
    """Render the findings as RFC 4180 CSV (CRLF rows); write it to files opened with newline=""."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    writer.writerows(_row(finding) for finding in report.get("findings") or [])
    return buffer.getvalue()


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

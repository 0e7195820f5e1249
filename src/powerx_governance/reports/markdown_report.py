"""Markdown scan report: a summary, the findings table and the scan errors."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final

from powerx_governance.domain import Action, Severity

TITLE: Final = "PowerX plugin version scan report"
NO_FINDINGS: Final = "No findings: every scanned installation is up to date and clean."
RISK_ORDER: Final = tuple(reversed(Severity))
ACTION_ORDER: Final = tuple(Action)
MISSING: Final = "—"

_COLUMNS: Final = (
    "Priority",
    "Risk",
    "Tenant",
    "Plugin",
    "Current",
    "Target",
    "Latest",
    "Action",
    "Flags",
    "Advisories",
    "SLA deadline",
    "Reasons",
)
_FLAGS: Final = (("critical_patch", "critical patch"), ("partial", "partial"))
_RIGHT_ALIGNED: Final = frozenset({"Priority"})
# Characters that would end a table cell or turn catalog text into links, HTML, code or emphasis;
# "_" is left alone: it never emphasises inside a word (snake_case actions, plugin ids).
_MARKDOWN_SPECIALS: Final = re.compile(r"([\\`*\[\]<>|])")
_LINE_BREAKS: Final = re.compile(r"\r\n|\r|\n")


def render(report: Mapping[str, Any]) -> str:
    """Render the report as GitHub-flavoured Markdown."""
    findings: Sequence[Mapping[str, Any]] = report.get("findings") or []
    sections = [
        f"# {TITLE}",
        "## Summary",
        _summary(report, findings),
        "## Findings",
        _findings_table(findings) if findings else NO_FINDINGS,
        "## Errors",
        _errors(report.get("errors") or []),
        "## Warnings (input repaired)",
        _errors(report.get("warnings") or [], empty="No repairs."),
    ]
    return "\n\n".join(sections) + "\n"


def count_by(findings: Iterable[Mapping[str, Any]], key: str, order: Iterable[str]) -> dict[str, int]:
    """Count findings by a field, known values in the given order (zeros kept), unknown ones after."""
    counts = Counter(str(finding.get(key) or "unknown") for finding in findings)
    known = {value: counts.pop(value, 0) for value in order}
    return known | dict(sorted(counts.items()))


def coverage_text(coverage: Mapping[str, Any]) -> str:
    """Describe scan coverage: tenants scanned of total, rate, installations."""
    rate = coverage.get("rate")
    share = MISSING if rate is None else percent(rate)
    return (
        f"{coverage.get('tenants_scanned', 0)} of {coverage.get('tenants_total', 0)} tenants scanned"
        f" ({share}), {coverage.get('installations', 0)} installations"
    )


def percent(rate: float) -> str:
    """Format a 0..1 rate as a percentage, truncated so that an incomplete scan never reads 100 %."""
    share = Decimal(str(rate)).quantize(Decimal("0.001"), rounding=ROUND_DOWN) * 100
    return f"{share:.1f} %"


def tenant_label(finding: Mapping[str, Any]) -> str:
    """The tenant's short key when known, else its UUID."""
    return str(finding.get("tenant_key") or finding.get("tenant_uuid") or MISSING)


def error_text(error: Mapping[str, Any]) -> str:
    """One line describing a scan error: source, tenant when known, message."""
    tenant = error.get("tenant_uuid")
    where = f"{error.get('source', 'unknown source')}" + (f" (tenant {tenant})" if tenant else "")
    return f"{where}: {error.get('error', '')}"


def escape(text: str) -> str:
    """Escape text for a Markdown table cell: no cell breaks, no markup, line breaks as <br>."""
    return _LINE_BREAKS.sub("<br>", _MARKDOWN_SPECIALS.sub(r"\\\1", text))


def _summary(report: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> str:
    items = {
        "Scan id": report.get("scan_id", MISSING),
        "Generated at": report.get("generated_at", MISSING),
        "Coverage": coverage_text(report.get("coverage") or {}),
        "Findings by risk level": _counts_text(count_by(findings, "risk_level", RISK_ORDER)),
        "Findings by action": _counts_text(count_by(findings, "action", ACTION_ORDER)),
        "Errors": len(report.get("errors") or []),
        "Warnings (input repaired)": len(report.get("warnings") or []),
    }
    return "\n".join(f"- **{label}:** {escape(str(value))}" for label, value in items.items())


def _counts_text(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{value} {count}" for value, count in counts.items())


def _findings_table(findings: Iterable[Mapping[str, Any]]) -> str:
    header = _table_line(_COLUMNS)
    rule = _table_line("---:" if column in _RIGHT_ALIGNED else "---" for column in _COLUMNS)
    rows = (_table_line(escape(cell) for cell in _finding_cells(finding)) for finding in findings)
    return "\n".join([header, rule, *rows])


def _table_line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _finding_cells(finding: Mapping[str, Any]) -> list[str]:
    return [
        str(finding.get("priority", MISSING)),
        str(finding.get("risk_level") or MISSING),
        tenant_label(finding),
        str(finding.get("plugin_id") or MISSING),
        *(
            str(finding.get(key) or MISSING)
            for key in ("current_version", "target_version", "latest_version")
        ),
        str(finding.get("action") or MISSING),
        ", ".join(label for key, label in _FLAGS if finding.get(key)),
        "\n".join(_advisory_text(advisory) for advisory in finding.get("advisories") or []) or MISSING,
        str(finding.get("sla_deadline") or MISSING),
        "\n".join(map(str, finding.get("reasons") or [])),
    ]


def _advisory_text(advisory: Mapping[str, Any]) -> str:
    cvss = advisory.get("cvss")
    return str(advisory["id"]) if cvss is None else f"{advisory['id']} (CVSS {cvss:.1f})"


def _errors(errors: Iterable[Mapping[str, Any]], empty: str = "No errors.") -> str:
    lines = [f"- {escape(error_text(error))}" for error in errors]
    return "\n".join(lines) if lines else empty

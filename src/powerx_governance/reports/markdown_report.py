"""Markdown scan report: a summary, the findings table and the scan errors."""

from __future__ import annotations

import io
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import IO, Any, BinaryIO, Final

from powerx_governance.domain import Action, Severity
from powerx_governance.reports.stream import (
    OUTCOME,
    Rendered,
    ReportItem,
    SharedOutcome,
    Tally,
    TenantFindings,
    append_file,
    file_place,
    resume_at,
    write_report,
)

TITLE: Final = "PowerX plugin version scan report"
NO_FINDINGS: Final = "No findings: every scanned installation is up to date and clean."
RISK_ORDER: Final = tuple(reversed(Severity))
ACTION_ORDER: Final = tuple(Action)
MISSING: Final = "—"
_SPOOL_BYTES: Final = 8 * 1024 * 1024
_TENANT_CELL: Final = 2  # index of the Tenant column

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
_TO_ESCAPE: Final = re.compile(r"[\\`*\[\]<>|\r\n]")  # what either of the two above would change


class MarkdownWriter:
    """Summary first, as people read it: the findings table is spooled (to disk past a few MB)
    while the scan runs, then written after the summary it waits for. In a split scan to a file
    (`HeadedWriter`), nothing is spooled: the head is written once every part is surveyed, and
    each part's rows go straight to their place after it."""

    def __init__(self, out: BinaryIO, *, rows: BinaryIO | None = None) -> None:
        self._out = out
        # A later part of a report (`continuation`) writes its rows straight to its own file; else
        # they are spooled, in a spool made for the first rows (`_spool`).
        self._rows: IO[bytes] | None = rows
        self._parts: list[BinaryIO] = []  # later parts' rows (`join`), written after this writer's own
        self._header: Mapping[str, Any] = {}
        self.tally = Tally()
        # the table line around the tenant cell (UTF-8), per outcome
        self._cells: Rendered[SharedOutcome, tuple[bytes, bytes]] = Rendered(
            lambda o: _verdict_row_parts(o.document())
        )
        # the bytes of those two pieces, per outcome (`survey`)
        self._lengths: Rendered[SharedOutcome, int] = Rendered(lambda o: sum(map(len, self._cells[o])))
        self._headed = False  # the head is written (`write_head`): rows go straight to the report

    def _spool(self) -> IO[bytes]:
        if self._rows is None:
            # Closed in finish(): the spool lives across the add() calls of a whole scan; none is
            # made when the rows go straight to the report (a split scan's `write_rows`).
            self._rows = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        return self._rows

    def _row_bytes(self, batch: TenantFindings) -> bytes:
        tenant = _tenant_cell(batch)
        pieces: list[bytes] = []
        extend = pieces.extend
        for before, after in map(self._cells.__getitem__, map(OUTCOME, batch.parts)):
            extend((before, tenant, after))  # one copy of each piece, in the join
        return b"".join(pieces)

    def start(self, header: Mapping[str, Any]) -> None:
        self._header = header

    def add_tenant(self, batch: TenantFindings) -> None:
        self.tally.count_parts(batch.parts)
        self._spool().write(self._row_bytes(batch))

    def add(self, items: Iterable[ReportItem]) -> None:
        lines = []
        for item in items:
            self.tally.count(item)
            before, after = _verdict_row_parts(item.document())
            lines.append(before + _tenant_cell(item) + after)
        self._spool().write(b"".join(lines))

    def continuation(self, out: BinaryIO) -> MarkdownWriter:
        return MarkdownWriter(out, rows=out)

    def handoff(self) -> Tally:
        self.tally.settle()
        return self.tally

    def join(self, handoff: Tally, body: BinaryIO) -> None:
        self.tally.merge(handoff)
        self._parts.append(body)  # the caller keeps it open until finish()

    def place(self) -> tuple[int, int] | None:
        return file_place(self._out)

    def survey(self, batches: Sequence[TenantFindings]) -> tuple[int, Tally]:
        tally, size, lengths = Tally(), 0, self._lengths
        for batch in batches:
            if batch.parts:
                tally.count_parts(batch.parts)
                size += len(_tenant_cell(batch)) * len(batch.parts)
                size += sum(map(lengths.__getitem__, map(OUTCOME, batch.parts)))
        tally.settle()
        return size, tally

    def write_head(self, summary: Mapping[str, Any], tally: Tally) -> None:
        self.tally = tally
        self._out.write(self._head(summary))
        self._headed = True

    def placed_rows(self, out: BinaryIO) -> MarkdownWriter:
        part = MarkdownWriter(out, rows=out)
        part._cells, part._lengths, part._headed = self._cells, self._lengths, True
        return part

    def write_rows(self, batches: Sequence[TenantFindings]) -> None:
        for batch in batches:
            if batch.parts:
                self._out.write(self._row_bytes(batch))

    def resume(self, handoff: Tally, end: int) -> None:
        """A later part's rows are written at their place (its counts were in the head): go on at `end`."""
        del handoff
        resume_at(self._out, end)

    def finish(self, summary: Mapping[str, Any]) -> None:
        if not self._headed:
            self.tally.settle()
            self._out.write(self._head(summary))
            if self.tally.findings:
                if self._rows is not None:
                    append_file(self._out, self._rows)
                for part in self._parts:
                    append_file(self._out, part)
        if self._rows is not None:
            self._rows.close()
        errors = _errors(summary.get("errors") or [])
        warnings = _errors(summary.get("warnings") or [], empty="No repairs.")
        self._out.write(f"\n## Errors\n\n{errors}\n\n## Warnings (input repaired)\n\n{warnings}\n".encode())

    def _head(self, summary: Mapping[str, Any]) -> bytes:
        """Title, summary and the findings table's heading (or the line saying there are none)."""
        text = "\n\n".join([f"# {TITLE}", "## Summary", self._summary(summary), "## Findings"]) + "\n\n"
        if not self.tally.findings:
            return (text + NO_FINDINGS + "\n").encode()
        text += _table_line(_COLUMNS) + "\n"
        text += _table_line("---:" if c in _RIGHT_ALIGNED else "---" for c in _COLUMNS) + "\n"
        return text.encode()

    def _summary(self, summary: Mapping[str, Any]) -> str:
        items = {
            "Scan id": self._header.get("scan_id") or MISSING,
            "Generated at": self._header.get("generated_at") or MISSING,
            "Coverage": coverage_text(summary.get("coverage") or {}),
            "Findings by risk level": _counts_text(ordered(self.tally.by_risk, RISK_ORDER)),
            "Findings by action": _counts_text(ordered(self.tally.by_action, ACTION_ORDER)),
            "Errors": len(summary.get("errors") or []),
            "Warnings (input repaired)": len(summary.get("warnings") or []),
        }
        return "\n".join(f"- **{label}:** {escape(str(value))}" for label, value in items.items())


def render(report: Mapping[str, Any]) -> str:
    """Render the report as GitHub-flavoured Markdown."""
    buffer = io.BytesIO()
    write_report(report, MarkdownWriter(buffer))
    return buffer.getvalue().decode("utf-8")


def count_by(findings: Iterable[Mapping[str, Any]], key: str, order: Iterable[str]) -> dict[str, int]:
    """Count findings by a field, known values in the given order (zeros kept), unknown ones after."""
    return ordered(Counter(str(finding.get(key) or "unknown") for finding in findings), order)


def ordered(counts: Mapping[str, int], order: Iterable[str]) -> dict[str, int]:
    """Counts with the known values first, in order (zeros kept), unknown ones after."""
    rest = dict(counts)
    known = {value: rest.pop(value, 0) for value in order}
    return known | dict(sorted(rest.items()))


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
    if _TO_ESCAPE.search(text) is None:
        return text  # most cells: one scan of the text instead of two substitutions
    return _LINE_BREAKS.sub("<br>", _MARKDOWN_SPECIALS.sub(r"\\\1", text))


def _counts_text(counts: Mapping[str, int]) -> str:
    return " · ".join(f"{value} {count}" for value, count in counts.items())


def _tenant_cell(found: TenantFindings | ReportItem) -> bytes:
    """The tenant's cell (UTF-8): its short key when known, else its UUID."""
    return escape(found.tenant_key or found.tenant_uuid or MISSING).encode()


def _table_line(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _verdict_row_parts(finding: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The table line (UTF-8) around the tenant cell, the only cell that differs between tenants."""
    cells = [escape(cell) for cell in _finding_cells(finding)]
    before, after = cells[:_TENANT_CELL], cells[_TENANT_CELL + 1 :]
    return ("| " + " | ".join(before) + " | ").encode(), (" | " + " | ".join(after) + " |\n").encode()


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

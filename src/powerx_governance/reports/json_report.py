"""JSON scan report (DESIGN §4), streamed: header, findings one per line as they come, summary last."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from typing import Any, BinaryIO, Final

from powerx_governance.reports.stream import (
    HEADER_KEYS,
    SUMMARY_KEYS,
    Rendered,
    ReportItem,
    SharedOutcome,
    SharedPart,
    TenantFindings,
    append_file,
    encode,
    file_place,
    members,
    resume_at,
    write_report,
)

_SEPARATOR: Final = b",\n    "


class SplicedFindings:
    """Findings as JSON objects spliced from members encoded once: per tenant its head and tail,
    per distinct part its outcome and context (member for member what encoding the document gives)."""

    def __init__(self) -> None:
        self._outcomes: Rendered[SharedOutcome, bytes] = Rendered(lambda o: members(o.document()))
        self._parts: Rendered[SharedPart, bytes] = Rendered(
            lambda p: self._outcomes[p.outcome] + b"," + members(p.context_document())
        )

    def size(self, batch: TenantFindings, separator: bytes, *, lead: bytes = b"") -> int:
        """The bytes `write` writes."""
        head = len(members(batch.head())) + 2
        tail = len(members(batch.tail())) + 2
        parts = batch.parts
        return (
            len(lead)
            + sum(map(len, map(self._parts.__getitem__, parts)))
            + len(parts) * (head + tail)
            + (len(parts) - 1) * len(separator)
        )

    def write(self, out: BinaryIO, batch: TenantFindings, separator: bytes, *, lead: bytes = b"") -> None:
        """Write the tenant's findings as JSON objects, `separator` between them and `lead` before
        them (the findings in one piece: a large write goes straight through the file's buffer)."""
        head = b"{" + members(batch.head()) + b","
        tail = b"," + members(batch.tail()) + b"}"
        out.write(lead + head)
        out.write((tail + separator + head).join(map(self._parts.__getitem__, batch.parts)))
        out.write(tail)


class JsonWriter:
    """`{"schema", "scan_id", "generated_at", "findings": [...], "coverage", "errors", "warnings"}`.

    JSON objects are unordered: the summary comes after the findings because it is only known
    once every tenant has been read, and the report is written as it is produced.
    """

    def __init__(
        self, out: BinaryIO, *, continued: bool = False, spliced: SplicedFindings | None = None
    ) -> None:
        self._out = out
        self._written = 0
        self._continued = continued  # a later part of a report: findings came before
        self._spliced = SplicedFindings() if spliced is None else spliced

    def start(self, header: Mapping[str, Any]) -> None:
        lines = [b"{"] + [b'  "%s": %s,' % (key.encode(), encode(header.get(key))) for key in HEADER_KEYS]
        self._out.write(b"\n".join(lines) + b'\n  "findings": [')

    def add_tenant(self, batch: TenantFindings) -> None:
        if batch.parts:
            lead = b",\n    " if self._written or self._continued else b"\n    "
            self._spliced.write(self._out, batch, _SEPARATOR, lead=lead)
            self._written += len(batch.parts)

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        total, written = 0, bool(before or self._written or self._continued)
        for batch in batches:
            if batch.parts:
                lead = b",\n    " if written else b"\n    "
                total += self._spliced.size(batch, _SEPARATOR, lead=lead)
                written = True
        return total

    def place(self) -> tuple[int, int] | None:
        return file_place(self._out)

    def placed(self, out: BinaryIO, before: int) -> JsonWriter:
        return JsonWriter(out, continued=before > 0, spliced=self._spliced)

    def resume(self, handoff: int, end: int) -> None:
        self._written += handoff
        resume_at(self._out, end)

    def add(self, items: Iterable[ReportItem]) -> None:
        chunk = []
        for item in items:
            first = self._written == 0 and not self._continued
            chunk.append((b"\n    " if first else b",\n    ") + encode(item.document()))
            self._written += 1
        self._out.write(b"".join(chunk))

    def continuation(self, out: BinaryIO) -> JsonWriter:
        return JsonWriter(out, continued=True)

    def handoff(self) -> int:
        return self._written

    def join(self, handoff: int, body: BinaryIO) -> None:
        if handoff:  # the part's first finding is the report's first: no comma before it
            append_file(self._out, body, skip=0 if self._written else len(b","))
            self._written += handoff

    def finish(self, summary: Mapping[str, Any]) -> None:
        closing = b"\n  ],\n" if self._written else b"],\n"
        fields = b",\n".join(b'  "%s": %s' % (key.encode(), encode(summary.get(key))) for key in SUMMARY_KEYS)
        self._out.write(closing + fields + b"\n}\n")


def render(report: Mapping[str, Any]) -> str:
    """The report as JSON text."""
    buffer = BytesIO()
    write_report(report, JsonWriter(buffer))
    return buffer.getvalue().decode("utf-8")

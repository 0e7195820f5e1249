"""JSON-lines scan report: one finding per line, then one `powerx.scan-summary/v1` line (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from io import BytesIO
from typing import Any, BinaryIO, Final

from powerx_governance.reports.json_report import SplicedFindings
from powerx_governance.reports.stream import (
    HEADER_KEYS,
    SUMMARY_KEYS,
    ReportItem,
    TenantFindings,
    append_file,
    encode,
    file_place,
    resume_at,
    write_report,
)

SUMMARY_SCHEMA: Final = "powerx.scan-summary/v1"


class JsonlWriter:
    """Handy for pipelines: `jq -c 'select(.critical_patch)'` reads findings as they arrive."""

    def __init__(self, out: BinaryIO, spliced: SplicedFindings | None = None) -> None:
        self._out = out
        self._header: Mapping[str, Any] = {}
        self._spliced = SplicedFindings() if spliced is None else spliced

    def start(self, header: Mapping[str, Any]) -> None:
        self._header = header

    def add_tenant(self, batch: TenantFindings) -> None:
        if batch.parts:
            self._spliced.write(self._out, batch, b"\n")
            self._out.write(b"\n")

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        return sum(self._spliced.size(batch, b"\n") + 1 for batch in batches if batch.parts)

    def place(self) -> tuple[int, int] | None:
        return file_place(self._out)

    def placed(self, out: BinaryIO, before: int) -> JsonlWriter:
        return JsonlWriter(out, self._spliced)

    def resume(self, handoff: None, end: int) -> None:
        resume_at(self._out, end)

    def add(self, items: Iterable[ReportItem]) -> None:
        self._out.write(b"".join(encode(item.document()) + b"\n" for item in items))

    def continuation(self, out: BinaryIO) -> JsonlWriter:
        return JsonlWriter(out)

    def handoff(self) -> None:
        return None

    def join(self, handoff: None, body: BinaryIO) -> None:
        append_file(self._out, body)

    def finish(self, summary: Mapping[str, Any]) -> None:
        line = {
            "schema": SUMMARY_SCHEMA,
            **{key: self._header.get(key) for key in HEADER_KEYS if key != "schema"},
            **{key: summary.get(key) for key in SUMMARY_KEYS},
        }
        self._out.write(encode(line) + b"\n")


def render(report: Mapping[str, Any]) -> str:
    buffer = BytesIO()
    write_report(report, JsonlWriter(buffer))
    return buffer.getvalue().decode("utf-8")

"""Exporting records of a time range as JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.model import StoredEvent
from powerx_governance.audit.queries import record_view
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.audit.walk import next_seq
from powerx_governance.reports.csv_report import neutralise

EXPORT_FORMATS: Final = ("jsonl", "csv")
EXPORT_FIELDS: Final = (
    "seq",
    "event_id",
    "occurred_at",
    "recorded_at",
    "tenant_uuid",
    "correlation_id",
    "source",
    "operation",
    "resource_type",
    "resource_id",
    "outcome",
    "severity",
    "actor",
    "changes",
    "meta",
    "prev_hash",
    "hash",
)

ExportFormat = Literal["jsonl", "csv"]


def _in_range(
    session: Session, start: datetime, end: datetime, tenant_uuid: str | None, batch: int
) -> Iterator[StoredEvent]:
    """The matching records in seq order, read in windows of `batch` seq numbers (see `pages`)."""
    wanted = [AuditEventRow.occurred_at >= start, AuditEventRow.occurred_at < end]
    if tenant_uuid is not None:
        wanted.append(AuditEventRow.tenant_uuid == tenant_uuid)
    low, high = session.execute(
        select(func.min(AuditEventRow.seq), func.max(AuditEventRow.seq)).where(*wanted)
    ).one()
    if low is None:
        return
    page = select(*AuditEventRow.__table__.columns).where(*wanted).order_by(AuditEventRow.seq)
    after = int(low) - 1
    while after < high:
        upto = min(int(high), after + batch)
        rows = session.execute(page.where(AuditEventRow.seq > after, AuditEventRow.seq <= upto)).all()
        yield from rows
        following = upto if rows else next_seq(session, upto)
        after = upto if following is None else max(upto, following - 1)


def _json_line(view: dict[str, Any]) -> str:
    return json.dumps(view, ensure_ascii=False, separators=(",", ":")) + "\n"


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return neutralise(str(value))


def _csv_line(cells: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def export(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    tenant_uuid: str | None = None,
    fmt: ExportFormat = "jsonl",
    batch: int = 5_000,
) -> Iterator[str]:
    """Records with start <= occurred_at < end (of one tenant), in seq order, as lines (with newline).

    CSV has a header row and CRLF line ends (write it to a file opened with newline=""); cells
    a spreadsheet would run as a formula are prefixed with a single quote.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (jsonl or csv)")
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("export needs time-zone aware start and end times")
    render: Callable[[dict[str, Any]], str] = (
        _json_line if fmt == "jsonl" else lambda view: _csv_line([_csv_cell(view[f]) for f in EXPORT_FIELDS])
    )
    if fmt == "csv":
        yield _csv_line(EXPORT_FIELDS)
    for row in _in_range(session, start, end, tenant_uuid, batch):
        yield render(record_view(row))

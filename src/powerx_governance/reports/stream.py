"""Streamed scan reports: findings are written as they are produced, tenant by tenant.

A report is a header (schema, scan id, time), findings in batches, then a summary (coverage,
errors, warnings) once everything has been read. Every format is a `ReportWriter`; none holds
the whole fleet's findings, so memory does not grow with the fleet (DESIGN §8). A scan feeds a
writer one tenant at a time (`TenantFindings`); rendering a report that is already a dict (the
service's stored reports, tests) goes through the same writers, finding by finding.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import stat
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import IO, Any, BinaryIO, Final, Protocol, TypeVar, runtime_checkable

import msgspec

from powerx_governance.memo import Memo

Document = Mapping[str, Any]
K = TypeVar("K")
V = TypeVar("V")

HEADER_KEYS: Final = ("schema", "scan_id", "generated_at")
SUMMARY_KEYS: Final = ("coverage", "errors", "warnings")
_ENCODE: Final = msgspec.json.Encoder().encode
OUTCOME: Final = attrgetter("outcome")
_PLACED_BUFFER: Final = 1 << 20


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON (msgspec: no NaN, no ASCII escaping of names people write in their language)."""
    return _ENCODE(value)


def members(document: Document) -> bytes:
    """A JSON object's members without its braces (for splicing documents encoded once)."""
    return encode(document)[1:-1]


class ReportItem(Protocol):
    """One finding of a report that is already a document."""

    @property
    def priority(self) -> int: ...
    @property
    def risk_level(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def tenant_uuid(self) -> str: ...
    @property
    def tenant_key(self) -> str | None: ...

    def document(self) -> Document:
        """The finding as DESIGN §4 has it."""
        ...


class SharedOutcome(Protocol):
    """The part of findings that depends on their verdict alone, one object (hashed by identity) for
    every installation with that verdict: a fleet of a million installations has a few thousand."""

    @property
    def risk_level(self) -> str: ...
    @property
    def action(self) -> str: ...

    def document(self) -> Document:
        """Its members of the finding, in report order."""
        ...


class SharedPart(Protocol):
    """A finding without its tenant (hashed by identity): its outcome and the installation's context."""

    @property
    def priority(self) -> int: ...
    @property
    def outcome(self) -> SharedOutcome: ...

    def context_document(self) -> Document:
        """The members after the outcome's, in report order."""
        ...


class TenantFindings(Protocol):
    """One tenant's findings as a scan produces them, highest priority first.

    A finding's document is `head()`, its part's outcome document, its part's context document,
    then `tail()`: writers render each distinct outcome and part once and splice the tenant in.
    """

    @property
    def tenant_uuid(self) -> str: ...
    @property
    def tenant_key(self) -> str | None: ...
    @property
    def parts(self) -> Sequence[SharedPart]: ...

    def head(self) -> Document:
        """The members before the outcome's (the tenant's identity)."""
        ...

    def tail(self) -> Document:
        """The members after the context's (how fresh the tenant's manifest is)."""
        ...


def finding_document(batch: TenantFindings, part: SharedPart) -> dict[str, Any]:
    """One finding of a tenant's batch as DESIGN §4 has it."""
    return {**batch.head(), **part.outcome.document(), **part.context_document(), **batch.tail()}


class DocumentItem:
    """A finding that is already a document (a stored report, a test's)."""

    __slots__ = ("_doc",)

    def __init__(self, doc: Document) -> None:
        self._doc = doc

    @property
    def priority(self) -> int:
        value = self._doc.get("priority")
        return value if isinstance(value, int) else 0

    @property
    def risk_level(self) -> str:
        return str(self._doc.get("risk_level") or "unknown")

    @property
    def action(self) -> str:
        return str(self._doc.get("action") or "unknown")

    @property
    def tenant_uuid(self) -> str:
        return str(self._doc.get("tenant_uuid") or "")

    @property
    def tenant_key(self) -> str | None:
        key = self._doc.get("tenant_key")
        return None if key is None else str(key)

    def document(self) -> Document:
        return self._doc


class PartItem:
    """A finding of a tenant's batch as a `ReportItem` (for the few findings a writer keeps)."""

    __slots__ = ("_batch", "_part")

    def __init__(self, batch: TenantFindings, part: SharedPart) -> None:
        self._batch, self._part = batch, part

    @property
    def priority(self) -> int:
        return self._part.priority

    @property
    def risk_level(self) -> str:
        return self._part.outcome.risk_level

    @property
    def action(self) -> str:
        return self._part.outcome.action

    @property
    def tenant_uuid(self) -> str:
        return self._batch.tenant_uuid

    @property
    def tenant_key(self) -> str | None:
        return self._batch.tenant_key

    def document(self) -> Document:
        return finding_document(self._batch, self._part)


class ReportWriter(Protocol):
    """One output format, fed in three steps (findings either tenant by tenant, or as documents)."""

    def start(self, header: Mapping[str, Any]) -> None:
        """Schema, scan id and time: known before the first finding."""

    def add_tenant(self, batch: TenantFindings) -> None:
        """One tenant's findings, as a scan produces them."""

    def add(self, items: Iterable[ReportItem]) -> None:
        """Findings that are documents already, in the order to write them."""

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Coverage, errors and warnings: known once every tenant has been read."""


@runtime_checkable
class PartWriter(ReportWriter, Protocol):
    """A writer whose report can be written in parts, each by its own process (a split scan).

    The writer of the whole report writes the first part; `continuation` makes, for a later part,
    a writer of the same format that writes only findings, as they would follow the ones before;
    its `handoff` (picklable) and the bytes it wrote are given back to the first writer, part by
    part in report order, through `join`, before `finish`. The report is then byte for byte what
    one writer fed every tenant in order writes.
    """

    def continuation(self, out: BinaryIO) -> PartWriter:
        """A writer of a later part of this report onto `out`: findings only, no header or summary."""
        ...

    def handoff(self) -> Any:
        """What the report's end needs of this (continuation) writer's part, picklable."""
        ...

    def join(self, handoff: Any, body: BinaryIO) -> None:
        """A later part, in report order: its `handoff` and the file its continuation wrote."""
        ...


@runtime_checkable
class PlacedWriter(PartWriter, Protocol):
    """A part writer whose later parts are written straight to their place in the report file by the
    process that scanned them, instead of into a file of their own that is then copied: the size of
    a part is known from its findings before any is written, so each part learns from the parts
    before it where it starts (and sends on where the next one starts).
    """

    def place(self) -> tuple[int, int] | None:
        """The report file's descriptor and the offset its next byte goes to; None when a part cannot
        be written at its place (a pipe, a terminal, a file opened for appending)."""
        ...

    def size(self, batches: Sequence[TenantFindings], before: int) -> int:
        """The bytes `add_tenant` writes for `batches`, in order, after `before` findings of the report:
        the sum of each batch's size after the findings before it, which depends on their number only
        through whether it is 0 (a later part sizes itself before the parts before it say `before`)."""
        ...

    def placed(self, out: BinaryIO, before: int) -> PlacedWriter:
        """A writer of a later part onto `out`, a stream at the part's place, after `before` findings;
        it shares what this writer rendered (sizing renders: nothing is rendered twice)."""
        ...

    def resume(self, handoff: Any, end: int) -> None:
        """A later part is written (its writer's `handoff`, in report order): the report goes on at `end`."""
        ...


@runtime_checkable
class HeadedWriter(PartWriter, Protocol):
    """A part writer whose report opens with what only the whole scan knows (markdown: the summary's
    counts, above the findings table), whose rows' sizes depend on nothing before them. In a split
    scan every part is scanned and surveyed first; the first process, told every part's survey and
    result, writes the head, then tells each part where it starts; each process writes its rows
    straight to their place in the report file, as `PlacedWriter`s do.
    """

    def place(self) -> tuple[int, int] | None:
        """As `PlacedWriter.place`."""
        ...

    def survey(self, batches: Sequence[TenantFindings]) -> tuple[int, Tally]:
        """The bytes `write_rows` writes for `batches`, and their counts (settled)."""
        ...

    def write_head(self, summary: Mapping[str, Any], tally: Tally) -> None:
        """The report's head, for the whole scan's summary and counts; `finish` then writes its end only."""
        ...

    def placed_rows(self, out: BinaryIO) -> HeadedWriter:
        """A writer of a later part's rows onto `out`, a stream at their place, sharing what this
        writer rendered (surveying renders: nothing is rendered twice)."""
        ...

    def write_rows(self, batches: Sequence[TenantFindings]) -> None:
        """Rows only, after the head (their counts are in it already)."""
        ...

    def resume(self, handoff: Any, end: int) -> None:
        """As `PlacedWriter.resume`."""
        ...


def file_place(out: BinaryIO) -> tuple[int, int] | None:
    """`PlacedWriter.place` of a writer writing to `out`."""
    try:
        descriptor = out.fileno()
        regular = stat.S_ISREG(os.fstat(descriptor).st_mode)
        appending = fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_APPEND
    except (OSError, ValueError):  # a stream without a file (BytesIO), a closed one
        return None
    return (descriptor, out.tell()) if regular and not appending else None


def resume_at(out: BinaryIO, end: int) -> None:
    """Go on writing `out` at byte `end` (later parts of the report were written before it)."""
    out.flush()
    out.seek(end)


class _PlacedFile(io.RawIOBase):
    """A file descriptor written from an offset on with pwrite, leaving the descriptor's own position
    (shared with the process that opened it) alone."""

    def __init__(self, descriptor: int, offset: int) -> None:
        super().__init__()
        self._descriptor, self.offset = descriptor, offset

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        written = os.pwrite(self._descriptor, data, self.offset)
        self.offset += written
        return written


class PlacedStream(io.BufferedWriter):
    """A buffered stream writing into the file `descriptor` from byte `offset` on."""

    def __init__(self, descriptor: int, offset: int) -> None:
        self._placed = _PlacedFile(descriptor, offset)
        super().__init__(self._placed, buffer_size=_PLACED_BUFFER)

    @property
    def offset(self) -> int:
        """The offset after the last byte written to the file (all of them, once flushed)."""
        return self._placed.offset


def append_file(out: BinaryIO, body: IO[bytes], skip: int = 0) -> None:
    """Append `body` from byte `skip` on to `out`: in the kernel (sendfile) when both are files."""
    size = body.seek(0, os.SEEK_END)
    out.flush()
    if _send(out, body, skip, size):
        if out.seekable():
            out.seek(0, os.SEEK_END)  # the buffered stream learns where the file now ends
        return
    body.seek(skip)
    shutil.copyfileobj(body, out)


def _send(out: BinaryIO, body: IO[bytes], offset: int, size: int) -> bool:
    """Copy body[offset:size] to out with sendfile; False when it cannot (nothing copied then)."""
    try:
        target, source = out.fileno(), body.fileno()
    except (OSError, ValueError):  # a stream without a file (BytesIO)
        return False
    first = offset
    while offset < size:
        try:
            sent = os.sendfile(target, source, offset, size - offset)
        except OSError:
            if offset == first:  # e.g. a target sendfile cannot write to
                return False
            raise
        if sent == 0:
            raise OSError(f"sendfile stopped at byte {offset} of {size}")
        offset += sent
    return True


class Rendered(Memo[K, V]):
    """What a writer renders from a shared object, made the first time the object is met.

    Keys are the scan's shared outcomes and parts, which live as long as the scan: their
    identities are never reused while the writer runs.
    """


@dataclass
class Tally:
    """Counts a summary needs, kept while findings stream past."""

    findings: int = 0
    by_risk: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    _outcomes: Counter[SharedOutcome] = field(default_factory=Counter)

    def count(self, item: ReportItem) -> None:
        self.findings += 1
        self.by_risk[item.risk_level] += 1
        self.by_action[item.action] += 1

    def count_parts(self, parts: Sequence[SharedPart]) -> None:
        """A tenant's findings, counted by outcome (folded into risks and actions by `settle`)."""
        self.findings += len(parts)
        self._outcomes.update(map(OUTCOME, parts))

    def merge(self, other: Tally) -> None:
        """Add the counts of another (settled) tally: a later part of the same report."""
        self.findings += other.findings
        self.by_risk.update(other.by_risk)
        self.by_action.update(other.by_action)

    def settle(self) -> None:
        """Fold the counts by outcome into the counts by risk level and action."""
        for outcome, n in self._outcomes.items():
            self.by_risk[outcome.risk_level] += n
            self.by_action[outcome.action] += n
        self._outcomes.clear()


def write_report(report: Mapping[str, Any], writer: ReportWriter) -> None:
    """Feed a whole report dict through a writer."""
    writer.start({key: report.get(key) for key in HEADER_KEYS})
    writer.add(DocumentItem(doc) for doc in report.get("findings") or [])
    writer.finish({key: report.get(key) or ([] if key != "coverage" else {}) for key in SUMMARY_KEYS})

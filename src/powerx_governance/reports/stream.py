"""Streamed scan reports: findings are written as they are produced, tenant by tenant.

A report is a header (schema, scan id, time), findings in batches, then a summary (coverage,
errors, warnings) once everything has been read. Every format is a `ReportWriter`; none holds
the whole fleet's findings, so memory does not grow with the fleet (DESIGN §8). Rendering a
report that is already a dict (the service's stored reports) goes through the same writers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

import msgspec

Document = Mapping[str, Any]
T = TypeVar("T")

HEADER_KEYS: Final = ("schema", "scan_id", "generated_at")
SUMMARY_KEYS: Final = ("coverage", "errors", "warnings")
_ENCODE: Final = msgspec.json.Encoder().encode


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON (msgspec: no NaN, no ASCII escaping of names people write in their language)."""
    return _ENCODE(value)


class ReportItem(Protocol):
    """One finding on its way into a report.

    `shared` is the tenant-independent part of the finding (its verdict's document), the same
    object for every tenant with the same verdict, or None when unknown: writers may cache what
    they render from it. Rendering a million findings then costs a few thousand verdicts.
    """

    @property
    def priority(self) -> int: ...
    @property
    def risk_level(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def shared(self) -> Document | None: ...

    @property
    def tenant_uuid(self) -> str: ...
    @property
    def tenant_key(self) -> str | None: ...

    def document(self) -> Document:
        """The finding as DESIGN §4 has it."""
        ...

    def json(self) -> bytes:
        """`document()` encoded as JSON."""
        ...


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
    def shared(self) -> Document | None:
        return None

    @property
    def tenant_uuid(self) -> str:
        return str(self._doc.get("tenant_uuid") or "")

    @property
    def tenant_key(self) -> str | None:
        key = self._doc.get("tenant_key")
        return None if key is None else str(key)

    def document(self) -> Document:
        return self._doc

    def json(self) -> bytes:
        return encode(self._doc)


class ReportWriter(Protocol):
    """One output format, fed in three steps."""

    def start(self, header: Mapping[str, Any]) -> None:
        """Schema, scan id and time: known before the first finding."""

    def add(self, items: Iterable[ReportItem]) -> None:
        """A batch of findings (one tenant's, in the scan), in the order to write them."""

    def finish(self, summary: Mapping[str, Any]) -> None:
        """Coverage, errors and warnings: known once every tenant has been read."""


@dataclass
class Tally:
    """Counts a summary needs, kept while findings stream past."""

    findings: int = 0
    by_risk: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)

    def count(self, item: ReportItem) -> None:
        self.findings += 1
        self.by_risk[item.risk_level] += 1
        self.by_action[item.action] += 1


class SharedCache(Generic[T]):
    """What a writer renders from a finding's shared part, kept per shared part (None: not cached)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Document, T]] = {}

    def get(self, item: ReportItem, make: Callable[[Document], T]) -> T:
        """`make(shared part)`, once per shared part; `make(document)` for an item without one."""
        shared = item.shared
        if shared is None:
            return make(item.document())
        hit = self._cache.get(id(shared))
        if hit is None:  # the part is kept beside its rendering, so its id is never reused
            hit = self._cache[id(shared)] = (shared, make(shared))
        return hit[1]


def write_report(report: Mapping[str, Any], writer: ReportWriter) -> None:
    """Feed a whole report dict through a writer."""
    writer.start({key: report.get(key) for key in HEADER_KEYS})
    writer.add(DocumentItem(doc) for doc in report.get("findings") or [])
    writer.finish({key: report.get(key) or ([] if key != "coverage" else {}) for key in SUMMARY_KEYS})

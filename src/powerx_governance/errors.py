"""Errors shared by components: bad input (naming file, record and field), failing outside systems."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One bad record: where it is, which field, what was expected."""

    source: str
    record: str | None
    field: str | None
    error: str
    tenant_uuid: str | None = None

    def __str__(self) -> str:
        where = self.source
        if self.record:
            where += f" [{self.record}]"
        if self.field:
            where += f" field {self.field!r}"
        return f"{where}: {self.error}"

    def as_report_error(self) -> dict[str, str | None]:
        """The `errors[]` entry of the scan report (DESIGN §4)."""
        detail = self.error if not self.field else f"{self.field}: {self.error}"
        if self.record and not self.tenant_uuid:
            detail = f"{self.record}: {detail}"
        return {"source": self.source, "tenant_uuid": self.tenant_uuid, "error": detail}


class InputError(Exception):
    """A whole input could not be used (missing file, unreadable document, wrong schema)."""

    def __init__(self, problem: InputProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class SourceError(Exception):
    """Base of every source failure; carries the source name."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message

"""Errors shared by components: bad input (naming file, record and field), failing outside systems,
and the kinds of domain refusal the API maps to statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


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


class DomainError(Exception):
    """A refusal in domain terms. Services raise these and never speak HTTP: `api.problems` maps
    each kind below to one status, in one place (the console answers with the same).

    `title` is the answer's title; a `field` attribute, when an error has one, names the field at
    fault; `problem_extra` adds members to the problem details (e.g. the unknown names).
    """

    title: ClassVar[str] = "Invalid request"

    def problem_extra(self) -> dict[str, Any]:
        return {}


class NotFoundError(DomainError):
    """Nothing by that name or id (for this caller: another tenant's records do not exist for it)."""

    title = "Not found"


class ConflictError(DomainError):
    """The request conflicts with the current state (a newer revision, a name taken, a key reused)."""

    title = "Conflict"


class DeniedError(DomainError):
    """The policy or the caller's role refuses it."""

    title = "Refused by policy"


class InvalidError(DomainError):
    """The request cannot be carried out as given."""

    title = "Invalid request"

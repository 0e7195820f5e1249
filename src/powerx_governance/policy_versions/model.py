"""The policy a scan evaluates with (plain data, shared by the scan runner and the registry)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from powerx_governance.errors import ConflictError, NotFoundError
from powerx_governance.policy.rules import GovernanceRules


class PolicySource(StrEnum):
    BUILTIN = "builtin"  # the built-in defaults (no rules file configured)
    FILE = "file"  # read from the rules file (at start or on a reload)
    API = "api"  # submitted by an operator over the API or CLI


@dataclass(frozen=True, slots=True)
class CurrentPolicy:
    """The rules a scan evaluates with, the version they are, and whether the upgrade policy is off."""

    version: int | None
    rules: GovernanceRules
    plain: bool = False


class PolicyVersionError(ConflictError):
    """A policy version operation that cannot be done (unknown version, nothing to roll back to)."""

    title = "Policy version conflict"


class UnknownPolicyVersionError(PolicyVersionError, NotFoundError):
    title = "Not found"

    def __init__(self, number: int) -> None:
        super().__init__(f"there is no policy version {number}")
        self.number = number

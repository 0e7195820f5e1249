"""Domain types of groups and baselines: group definitions, baselines, conflicts, drift, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import msgspec

from powerx_governance.errors import ConflictError, InvalidError, NotFoundError

GROUPS_SCHEMA: Final = "powerx.groups/v1"
DRIFT_ALERT: Final = "plugin_version_drift"


class GroupSource(StrEnum):
    FILE = "file"  # config/version/groups.yaml: read-only at run time
    API = "api"  # created by an operator through the API or the CLI (audited)


class BaselineMode(StrEnum):
    DERIVED = "derived"  # the highest release eligible and clean for every member
    EXPLICIT = "explicit"  # an operator's version or constraint


class BaselineStatus(StrEnum):
    SET = "set"  # one version or constraint the group should run
    CONFLICT = "conflict"  # no release fits every member: an operator must decide
    UNKNOWN = "unknown"  # the plugin is not in the catalog (nothing to derive from)


class DriftStatus(StrEnum):
    BEHIND = "behind"
    AHEAD = "ahead"
    MISSING = "missing"


class DriftState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Selector(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which tenants a group selects: every condition given must hold (tags: any of them)."""

    tags: tuple[str, ...] = ()
    plans: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.tags and not self.plans


class GroupSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tenant group: a selector and/or an explicit tenant list (uuids or keys), and a route."""

    id: str
    name: str | None = None
    route: str | None = None  # notification route of drift (a name in the routes file)
    select: Selector = Selector()
    tenants: tuple[str, ...] = ()  # always members, by tenant_uuid or tenant_key
    source: GroupSource = GroupSource.FILE

    def selects(self, tenant_uuid: str, tenant_key: str | None, plan: str | None, tags: list[Any]) -> bool:
        """Whether a tenant with these facts is a member."""
        if tenant_uuid in self.tenants or (tenant_key is not None and tenant_key in self.tenants):
            return True
        if self.select.empty:
            return False
        tag_ok = not self.select.tags or bool(set(self.select.tags) & set(tags))
        return tag_ok and (not self.select.plans or plan in self.select.plans)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name or self.id,
            "route": self.route,
            "select": {"tags": list(self.select.tags), "plans": list(self.select.plans)},
            "tenants": list(self.tenants),
            "source": self.source.value,
        }


class GroupsFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    schema: str
    groups: tuple[GroupSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class ExplicitBaseline:
    """An operator's baseline: a version or a constraint, with a reason (one revision of it)."""

    spec: str
    reason: str
    revision: int
    actor: str


@dataclass(frozen=True, slots=True)
class Subgroup:
    """Members that one release fits (the highest release eligible and clean for all of them)."""

    version: str | None
    members: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "members": list(self.members)}


@dataclass(frozen=True, slots=True)
class Split:
    """Why a release does not fit some members: the constraint that splits the group."""

    version: str
    constraint: str
    members: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "constraint": self.constraint, "members": list(self.members)}


@dataclass(frozen=True, slots=True)
class Baseline:
    """What one group should run of one plugin, as last evaluated."""

    plugin_id: str
    mode: BaselineMode
    status: BaselineStatus
    spec: str | None  # the version (derived, explicit) or constraint (explicit)
    reason: str
    subgroups: tuple[Subgroup, ...] = ()
    splits: tuple[Split, ...] = ()
    revision: int | None = None  # the explicit baseline's revision

    def conflict_dict(self) -> dict[str, Any]:
        return {
            "subgroups": [s.as_dict() for s in self.subgroups],
            "splits": [s.as_dict() for s in self.splits],
        }


@dataclass(frozen=True, slots=True)
class Drift:
    """A member whose installed version differs from its group's baseline."""

    group_id: str
    tenant_uuid: str
    plugin_id: str
    status: DriftStatus
    installed: str | None
    baseline: str
    reason: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group_id, self.tenant_uuid, self.plugin_id)


@dataclass(frozen=True, slots=True)
class GroupEvaluation:
    """One group's baselines and drift at one time."""

    group: GroupSpec
    members: tuple[str, ...]
    baselines: tuple[Baseline, ...]
    drift: tuple[Drift, ...] = field(default_factory=tuple)
    scope: frozenset[str] | None = None  # the plugins evaluated (None: every plugin)


class UnknownGroupError(NotFoundError):
    def __init__(self, group_id: str) -> None:
        super().__init__(f"no tenant group {group_id!r}")
        self.group_id = group_id


class GroupExistsError(ConflictError):
    def __init__(self, group_id: str, source: GroupSource) -> None:
        where = "in the groups file" if source is GroupSource.FILE else "already"
        super().__init__(f"tenant group {group_id!r} exists {where}")
        self.group_id = group_id


class FileGroupError(ConflictError):
    """File groups change in config/version/groups.yaml, not through the API."""

    def __init__(self, group_id: str) -> None:
        super().__init__(f"tenant group {group_id!r} is defined in the groups file; change it there")
        self.group_id = group_id


class BaselineSpecError(InvalidError):
    """A baseline that is neither a version nor a constraint, or a group definition that is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name

    def problem_extra(self) -> dict[str, Any]:
        return {"errors": [{"field": self.field, "error": str(self)}]}

"""The baselines' settings section: the groups file (`POWERX_GROUPS`), read once at start.

`config/version/groups.yaml` (schema `powerx.groups/v1`) defines tenant groups by tag selector,
plan and explicit tenant list; a tenant may be in several groups. Groups created through the API
or the CLI live in the store beside them (and are audited); an id is used by one group only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from powerx_governance.baselines.model import GROUPS_SCHEMA, GroupsFile, GroupSource, GroupSpec
from powerx_governance.errors import InputError, InputProblem
from powerx_governance.records import split_validation_error
from powerx_governance.safe_yaml import load_document

if TYPE_CHECKING:
    from powerx_governance.settings import Settings

GROUPS_ENV: Final = "POWERX_GROUPS"
GROUP_ID: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class BaselineSettings:
    """The groups file's path and the groups it defines."""

    groups_path: Path | None  # POWERX_GROUPS
    file_groups: tuple[GroupSpec, ...]

    def file_group(self, group_id: str) -> GroupSpec | None:
        return next((g for g in self.file_groups if g.id == group_id), None)


def check_group_id(group_id: str, source: str, field: str) -> None:
    """InputError naming the field when an id is not lowercase letters, digits, `.`, `_`, `-`."""
    if not GROUP_ID.match(group_id):
        raise InputError(
            InputProblem(source, group_id, field, "a group id is 1-64 of a-z 0-9 . _ - (first: a-z 0-9)")
        )


def load_groups(path: Path) -> tuple[GroupSpec, ...]:
    """The groups of one groups file; InputError naming the file and field when it is wrong."""
    raw = load_document(path)
    try:
        document = msgspec.convert(raw, GroupsFile)
    except msgspec.ValidationError as exc:
        field, message = split_validation_error(exc)
        raise InputError(InputProblem(str(path), None, field, message)) from exc
    if document.schema != GROUPS_SCHEMA:
        raise InputError(InputProblem(str(path), None, "schema", f"expected {GROUPS_SCHEMA!r}"))
    seen: set[str] = set()
    for index, group in enumerate(document.groups):
        check_group_id(group.id, str(path), f"groups[{index}].id")
        if group.id in seen:
            raise InputError(InputProblem(str(path), group.id, f"groups[{index}].id", "defined twice"))
        if group.select.empty and not group.tenants:
            problem = "selects nobody: give select.tags, select.plans or tenants"
            raise InputError(InputProblem(str(path), group.id, f"groups[{index}]", problem))
        seen.add(group.id)
    return tuple(msgspec.structs.replace(g, source=GroupSource.FILE) for g in document.groups)


def load_settings(env: Mapping[str, str]) -> BaselineSettings:
    """`POWERX_GROUPS`: the groups file (absent: groups come from the API and the CLI only)."""
    text = env.get(GROUPS_ENV)
    if not text:
        return BaselineSettings(None, ())
    path = Path(text)
    try:
        return BaselineSettings(path, load_groups(path))
    except InputError as exc:
        raise ValueError(f"{GROUPS_ENV}: {exc}") from exc


def read_settings(settings: Settings) -> BaselineSettings:
    return load_settings(settings.environ)

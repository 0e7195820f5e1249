"""The component kernel: what a component declares, and what the running service gives it back.

Each domain package declares itself once, in its `component.py` (`COMPONENT = Component(...)`),
the way Pyramid's `includeme` does: its tables, API and console routers, CLI commands, its
settings section and an `install` function. `install` receives the running service, the
component's own typed settings and the collaborators earlier components provide, and returns
what the component contributes at run time: tasks, periodic jobs, its change hook, and the
collaborators it offers to the components after it. The composition root (`components.py`)
lists the components in order and does nothing else; `service.py` builds them.

A declaration names code as "module:attribute" strings, so declaring a component imports
nothing heavy (`powerx version scan` must not load FastAPI, and the CLI lists commands without
importing them). `resolve` imports one reference and checks what it finds, so a wrong
reference fails at start, naming the component and the reference.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:  # type names only: declaring components must not load SQLAlchemy or the service
    from sqlalchemy.orm import Session

    from powerx_governance.service import GovernanceService
    from powerx_governance.settings import Settings

T = TypeVar("T")
Task = Callable[[dict[str, Any]], None]
"""A job function: runs one job's payload (in-process, or on a queue worker at scale)."""


@dataclass(frozen=True, slots=True)
class Mergeable:
    """Jobs of a task that a worker may run as one when several wait: `merge` joins their payloads
    (the task then runs once for all of them), `size` weighs a payload, and the jobs run together
    weigh at most `most` (a job heavier than that runs alone, as it always may). The local queue
    merges them (`jobs.local`); procrastinate's workers run each job alone, as before."""

    merge: Callable[[Sequence[dict[str, Any]]], dict[str, Any]]
    size: Callable[[dict[str, Any]], int]
    most: int


Periodic = Callable[["GovernanceService"], None]
"""A follow-up run on every scheduler tick; idempotent per period across instances."""
ChangeHook = Callable[["Session", Any, datetime, datetime], None]
"""Runs in the transaction of a scan's changes: (session, ChangeSet, now, triggered_at)."""
Rescan = Callable[["Session", str, datetime], str]
"""Queue a full re-scan for a policy change in the caller's transaction: (session, actor, now) -> scan id.

The service provides it (`GovernanceService.rescan`) to policy versions and flags, which must not
depend on scans (scans depend on them).
"""
SettingsReader = Callable[["Settings"], object]
"""Reads a component's section from the settings' environment snapshot; ValueError names the variable."""


@dataclass
class Throttled:
    """A periodic follow-up that runs `run(service, now)` at most once per `every` in this process.

    For housekeeping (pruning) that is cheap to skip and wasteful to repeat on every tick; `run`
    must be idempotent across instances, as every periodic follow-up is.
    """

    every: timedelta
    run: Callable[[GovernanceService, datetime], None]
    last_run: datetime | None = None

    def __call__(self, service: GovernanceService) -> None:
        now = service.clock()
        if self.last_run is not None and now - self.last_run < self.every:
            return
        self.run(service, now)
        self.last_run = now


class ChangeStage(IntEnum):
    """When a change hook runs in the transaction of a scan's changes (then in component order)."""

    DECIDE = 1  # decision bookkeeping: fulfil, supersede or break decisions first
    ANNOUNCE = 2  # notifications: what is announced sees the decisions' outcome
    PUBLISH = 3  # events: recorded after the audit records (the events log's lock order)


class ComponentError(RuntimeError):
    """A component cannot be built: a wrong reference, a missing collaborator, a duplicate task."""


@dataclass(frozen=True, slots=True)
class Contribution:
    """What an installed component adds to the running service."""

    tasks: Mapping[str, Task] = field(default_factory=dict)
    periodic: tuple[Periodic, ...] = ()
    # run even while the governance flag is off (audit shipping): the rest waits for the flag
    always_on_tasks: frozenset[str] = frozenset()
    # tasks whose waiting jobs may run as one (a burst of decisions queues a small delivery job each)
    mergeable: Mapping[str, Mergeable] = field(default_factory=dict)
    always_on_periodic: tuple[Periodic, ...] = ()
    change_hook: ChangeHook | None = None
    change_stage: ChangeStage = ChangeStage.PUBLISH
    provides: tuple[object, ...] = ()  # collaborators for later components, found by their type


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What earlier components provide, by type; `require` fails at start when one is missing."""

    found: Mapping[type, object] = field(default_factory=dict)

    def require(self, kind: type[T], needed_by: str) -> T:
        value = self.found.get(kind)
        if not isinstance(value, kind):
            raise ComponentError(
                f"component {needed_by!r} needs a {kind.__name__}, no component listed before it provides one"
            )
        return value

    def get(self, kind: type[T]) -> T | None:
        value = self.found.get(kind)
        return value if isinstance(value, kind) else None

    def adding(self, provided: tuple[object, ...], by: str) -> Collaborators:
        found = dict(self.found)
        for value in provided:
            if type(value) in found:
                raise ComponentError(f"component {by!r} provides a {type(value).__name__} already provided")
            found[type(value)] = value
        return Collaborators(found)


@dataclass(frozen=True, slots=True)
class InstallContext:
    """What `install` gets: the running service, this component's settings, earlier collaborators."""

    host: GovernanceService
    settings: Any  # the component's own section (the type its `settings` reader returns), or None
    collaborators: Collaborators
    name: str

    def require(self, kind: type[T]) -> T:
        return self.collaborators.require(kind, self.name)


Install = Callable[[InstallContext], Contribution]


@dataclass(frozen=True, slots=True)
class NavEntry:
    """A console page in the main navigation: `key` is what the page passes as its `nav`."""

    key: str
    label: str
    href: str
    fleet_wide: bool = False  # shown only to roles that see the whole fleet


@dataclass(frozen=True, slots=True)
class Component:
    """One domain package's declaration. References are "module:attribute" strings."""

    name: str
    summary: str
    tables: tuple[str, ...] = ()  # modules whose tables belong to the store's metadata
    routers: tuple[str, ...] = ()  # FastAPI routers of the API
    console_routers: tuple[str, ...] = ()  # FastAPI routers of the web console (served after the API)
    console_nav: tuple[NavEntry, ...] = ()  # its console pages in the main navigation
    commands: Mapping[str, str] = field(default_factory=dict)  # `powerx version <name>` -> Typer app/command
    root_commands: Mapping[str, str] = field(default_factory=dict)  # `powerx <name>` -> Typer app/command
    settings: str | None = None  # a SettingsReader of this component's environment section
    install: str | None = None  # an Install function

    def references(self) -> tuple[str, ...]:
        named = (*self.routers, *self.console_routers, *self.commands.values(), *self.root_commands.values())
        return (*named, *(ref for ref in (self.settings, self.install) if ref is not None))


REFERENCE_SEPARATOR: Final = ":"


def resolve(reference: str, owner: str) -> Any:
    """Import "module:attribute"; ComponentError naming the component when it is not there."""
    module_name, _, attribute = reference.partition(REFERENCE_SEPARATOR)
    if not module_name or not attribute:
        raise ComponentError(f"component {owner!r}: {reference!r} is not a 'module:attribute' reference")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ComponentError(f"component {owner!r}: cannot import {module_name} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise ComponentError(f"component {owner!r}: {module_name} has no {attribute!r}") from exc


def replacing(components: tuple[Component, ...], name: str, **changes: Any) -> tuple[Component, ...]:
    """The list with component `name` changed (e.g. another settings reader); ComponentError if absent."""
    if name not in {c.name for c in components}:
        raise ComponentError(f"no component {name!r} to replace")
    return tuple(dataclasses.replace(c, **changes) if c.name == name else c for c in components)

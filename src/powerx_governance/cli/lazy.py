"""Subcommands imported when they are used, so `powerx version scan` does not load the service.

The service's commands pull in FastAPI, SQLAlchemy, Alembic and every component (seconds of
imports); a file scan needs none of them. A group lists every subcommand in its help, and
imports one only when it is run or its help is shown (Click's lazy-group pattern).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

from powerx_governance.components import COMPONENTS
from powerx_governance.kernel import Component, ComponentError


class LazyTyperGroup(TyperGroup):
    """A Typer group with subcommands named by "module:attribute" (a Typer app or a command function)."""

    lazy: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: Any) -> list[str]:  # ctx: a Click context (Typer's own copy of Click)
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        target = self.lazy.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        return _load(target, cmd_name)


def lazy_group(commands: dict[str, str]) -> type[LazyTyperGroup]:
    """A group class that knows `commands` (name → "module:attribute") without importing them."""
    return type("LazyGroup", (LazyTyperGroup,), {"lazy": dict(commands)})


def _load(target: str, name: str) -> Any:
    module, attribute = target.split(":")
    found: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        command: Any = typer.main.get_group(found)
    else:
        single = typer.Typer()
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command


def version_commands() -> dict[str, str]:
    """`powerx version <name>` commands, as the components declare them (nothing is imported)."""
    return _commands(lambda component: component.commands)


def root_commands() -> dict[str, str]:
    """`powerx <name>` commands, as the components declare them."""
    return _commands(lambda component: component.root_commands)


def _commands(of: Callable[[Component], Mapping[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for component in COMPONENTS:
        for name, reference in of(component).items():
            if name in found:
                raise ComponentError(f"component {component.name!r} declares command {name!r} again")
            found[name] = reference
    return found
